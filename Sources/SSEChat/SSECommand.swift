import ArgumentParser
import Logging
import PostgresNIO
import Shared

@main
struct SSECommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "handoff-sse",
        abstract: "Streams completion tasks from Postgres to clients as OpenAI server-sent events.",
        subcommands: [Serve.self, MigrateCommand.self],
        defaultSubcommand: Serve.self)

    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run an SSE server replica (default).")

        @Option(help: "Port to bind (\(ConfigKey.ssePort.rawValue)).")
        var port: Int?

        func run() async throws {
            let settings = Settings()
            let logger = ProcessRuntime.bootstrapLogging(label: "handoff.sse", settings: settings)
            OpenFiles.raiseSoftLimit()
            let database = try DatabaseSettings(settings: settings)
            try await ProcessRuntime.migrate(database: database, logger: logger)

            let host = settings.string(.sseHost) ?? "127.0.0.1"
            let port = try settings.int(.ssePort, override: port)
            // Named per replica, so pg_stat_activity shows what each one holds.
            let replica = "handoff-sse-\(port)"
            let client = PostgresClient(configuration: database.clientConfiguration(applicationName: replica))
            let log = StreamLog(client: client, logger: logger)
            let keepalive = try settings.seconds(.keepaliveSeconds)
            let notifier = StreamNotifier(
                configuration: .init(pollInterval: try settings.milliseconds(.ssePollMilliseconds), keepaliveInterval: keepalive),
                log: log, listenerConfiguration: database.connectionConfiguration(applicationName: "\(replica)-listener"),
                logger: logger)
            let controller = StreamController(
                queue: TaskQueue(client: client, logger: logger), log: log, notifier: notifier,
                secret: try StreamSecret.load(settings: settings), keepaliveInterval: keepalive,
                databaseTimeout: database.timeout, commitStamps: settings.string(.benchStamps) == "1", replica: "\(host):\(port)")

            let app = HTTPService.make(name: "handoff-sse", host: host, port: port, logger: logger, routes: controller.addRoutes)
            try await ProcessRuntime.run([client, notifier, app], logger: logger)
        }
    }
}
