import ArgumentParser
import HandoffProcess
import HandoffRuntime
import HandoffStore
import HandoffWire
import Logging
import PostgresNIO

@main
struct SSECommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "handoff-sse",
        abstract: "Streams completion tasks from Postgres to clients as OpenAI server-sent events.",
        subcommands: [Serve.self, MigrateCommand.self],
        defaultSubcommand: Serve.self)

    static func main() async {
        ConcurrencyPool.useEventLoops()
        await main(nil)
    }

    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run an SSE server replica (default).")

        @Option(help: "Port to bind (\(ConfigKey.ssePort.rawValue)).")
        var port: Int?

        func run() async throws {
            let startup = try ServeStartup(label: "handoff.sse", listens: true)
            let (settings, logger, operations, database) =
                (startup.settings, startup.logger, startup.operations, startup.database)
            OpenFiles.raiseSoftLimit()
            try await startup.migrate()

            let host = settings.string(.sseHost) ?? "127.0.0.1"
            let port = try settings.int(.ssePort, override: port)
            // Named per replica, so pg_stat_activity shows what each one holds.
            let replica = "handoff-sse-\(port)"
            let client = database.makeClient(applicationName: replica)
            let log = StreamLog(client: client, timeout: database.timeout, logger: logger)
            let keepalive = try settings.seconds(.keepaliveSeconds)
            let notifier = StreamNotifier(
                configuration: .init(
                    pollInterval: try settings.milliseconds(.ssePollMilliseconds), keepaliveInterval: keepalive),
                log: log, listenerEndpoint: database.listenerEndpoint(applicationName: "\(replica)-listener"),
                readiness: operations.readiness, logger: logger)
            let reader = StreamReader(log: log, logger: logger)
            let abandoned = AbandonedTasks(
                queue: TaskQueue(client: client, timeout: database.timeout, logger: logger), logger: logger)
            let environment = StreamEnvironment(
                notifier: notifier, reader: reader, secret: try StreamSecret.load(settings: settings),
                keepaliveInterval: .seconds(Int64(try settings.int(.keepaliveSeconds))),
                commitStamps: settings.string(.benchStamps) == "1", replica: "\(host):\(port)", operations: operations,
                metrics: StreamMetrics(), limits: try ConnectionLimits(settings: settings),
                connections: ConnectionCount(), abandoned: abandoned,
                logger: logger)
            let server = SSEServer(
                host: host, port: port, drainTime: try settings.seconds(.sseDrainSeconds), environment: environment,
                logger: logger)
            // Shut down in reverse: readiness fails first, then the server drains, while the reader and the notifier
            // still serve it.
            try await startup.run([client, notifier, reader, abandoned, server], probing: client)
        }
    }
}
