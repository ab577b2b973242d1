import HandoffRuntime
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import Synchronization

/// The SSE replica's HTTP/1 server, and its graceful drain.
///
/// On shutdown it stops accepting at once (so Caddy's health checks fail and new streams go to other replicas),
/// closes idle connections, lets streams in flight run to their end for up to `drainTime`, then interrupts the
/// rest with an error event (`StreamDelivery.interrupt`) — never a clean end that looks complete.
final class SSEServer: Service {
    private let host: String
    private let port: Int
    private let drainTime: Duration
    private let environment: StreamEnvironment
    private let logger: Logger
    private let connections = Mutex<[ObjectIdentifier: any Channel]>([:])
    private let onBound: @Sendable (Int) -> Void

    /// `onBound` receives the port actually bound (tests bind port 0).
    init(
        host: String, port: Int, drainTime: Duration, environment: StreamEnvironment, logger: Logger,
        onBound: @escaping @Sendable (Int) -> Void = { _ in }
    ) {
        self.host = host
        self.port = port
        self.drainTime = drainTime
        self.environment = environment
        self.logger = logger
        self.onBound = onBound
    }

    func run() async throws {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 4096)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [environment] channel in
                channel.eventLoop.makeCompletedFuture {
                    let open = environment.connections.opened()
                    channel.closeFuture.whenComplete { _ in environment.connections.closed() }
                    try channel.pipeline.syncOperations.addHandler(
                        RequestHeadTimeout(timeout: environment.limits.headerTimeout))
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withPipeliningAssistance: false)
                    try channel.pipeline.syncOperations.addHandler(
                        SSEConnectionHandler(
                            environment: environment, overLimit: open > environment.limits.maxConnections))
                    self.track(channel)
                }
            }
            .bind(host: host, port: port).get()
        let bound = server.localAddress?.port ?? port
        logger.info("SSE server listening", metadata: ["address": "\(host):\(bound)"])
        onBound(bound)

        try? await gracefulShutdown()
        try? await server.close()
        await drain()
    }

    private func track(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        connections.withLock { $0[id] = channel }
        channel.closeFuture.whenComplete { _ in self.connections.withLock { _ = $0.removeValue(forKey: id) } }
    }

    private func drain() async {
        let clock = ContinuousClock()
        let deadline = clock.now + drainTime
        let open = connections.withLock { Array($0.values) }
        logger.notice(
            "draining",
            metadata: ["connections": "\(open.count)", "streams": "\(environment.notifier.subscriberCount)"])
        for channel in open { channel.pipeline.fireUserInboundEventTriggered(DrainEvent.started) }
        while clock.now < deadline, !connections.withLock({ $0.isEmpty }), !Task.isCancelled {
            try? await LoopTimer.sleep(for: .milliseconds(50))
        }
        let left = connections.withLock { Array($0.values) }
        guard !left.isEmpty else { return }
        logger.notice("drain time over; interrupting streams", metadata: ["connections": "\(left.count)"])
        for channel in left { channel.pipeline.fireUserInboundEventTriggered(DrainEvent.timeIsUp) }
        // The interruptions are written and their connections closed; anything that stalls is closed regardless.
        try? await LoopTimer.sleep(for: .milliseconds(200))
        for channel in connections.withLock({ Array($0.values) }) { channel.close(promise: nil) }
    }
}
