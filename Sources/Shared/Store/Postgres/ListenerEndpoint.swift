import HandoffWire
import Logging
import NIOCore
import NIOPosix
import PostgresNIO

#if canImport(Glibc)
    import Glibc
    /// The idle time before the first keepalive probe (Darwin calls it `TCP_KEEPALIVE`).
    private let keepIdleOption = TCP_KEEPIDLE
#elseif canImport(Darwin)
    import Darwin
    private let keepIdleOption = TCP_KEEPALIVE
#endif

/// Where and how a process opens its LISTEN connection: `HANDOFF_LISTEN_DATABASE_URL` when set (a direct, session
/// connection, for deployments whose `DATABASE_URL` goes through a transaction-mode PgBouncer, which breaks LISTEN),
/// else `DATABASE_URL`.
///
/// The connection has TCP keepalive on. It is silent while nothing is queued or streamed, so when Postgres's host
/// vanishes (power loss, a partition: no FIN, no RST) nothing would ever error on it, and the process would wait for
/// notifications that never come. With keepalive the kernel probes an idle socket after `idle`, every `interval`,
/// and gives up after `probes` unanswered ones: a dead peer is noticed within about 25 s, and the listener reconnects.
package struct ListenerEndpoint: Sendable {
    /// Seconds of silence before the first probe, seconds between probes, and unanswered probes before the
    /// kernel gives the connection up.
    package struct Keepalive: Sendable {
        package var idle = 10
        package var interval = 5
        package var probes = 3

        package init() {}
    }

    let address: PostgresAddress
    let applicationName: String
    let keepalive: Keepalive
    let connectTimeout: TimeAmount

    package init(
        address: PostgresAddress, applicationName: String, keepalive: Keepalive = Keepalive(),
        connectTimeout: TimeAmount = .seconds(2)
    ) {
        self.address = address
        self.applicationName = applicationName
        self.keepalive = keepalive
        self.connectTimeout = connectTimeout
    }

    func connect(id: Int, logger: Logger) async throws -> PostgresConnection {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelOption(Self.tcpOption(keepIdleOption), value: keepalive.idle)
            .channelOption(Self.tcpOption(TCP_KEEPINTVL), value: keepalive.interval)
            .channelOption(Self.tcpOption(TCP_KEEPCNT), value: keepalive.probes)
            .connect(host: address.host, port: address.port).get()
        var configuration = PostgresConnection.Configuration(
            establishedChannel: channel, username: address.username, password: address.password,
            database: address.database)
        configuration.options.additionalStartupParameters = [("application_name", applicationName)]
        do {
            return try await PostgresConnection.connect(
                on: channel.eventLoop, configuration: configuration, id: id, logger: logger)
        } catch {
            try? await channel.close()
            throw error
        }
    }

    private static func tcpOption(_ name: Int32) -> ChannelOptions.Types.SocketOption {
        ChannelOptions.Types.SocketOption(level: .tcp, name: NIOBSDSocket.Option(rawValue: name))
    }
}
