import ArgumentParser
import HandoffHTTP
import HandoffProcess
import HandoffRuntime
import HandoffStore
import HandoffWire
import Logging
import PostgresNIO

@main
struct APICommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "handoff-api",
        abstract: "Accepts OpenAI chat completion requests, queues them in Postgres and redirects to the SSE server.",
        subcommands: [Serve.self, MigrateCommand.self, KeysCommand.self, TasksCommand.self, QueueCommand.self],
        defaultSubcommand: Serve.self)

    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run the API server (default).")

        @Option(help: "Port to bind (\(ConfigKey.apiPort.rawValue)).")
        var port: Int?

        func run() async throws {
            let startup = try ServeStartup(label: "handoff.api", listens: false)
            let (settings, logger, database) = (startup.settings, startup.logger, startup.database)
            let host = settings.string(.apiHost) ?? "127.0.0.1"
            let mode = try AuthMode(settings: settings, host: host)
            try await startup.migrate()

            let client = database.makeClient(applicationName: "handoff-api")
            let queue = TaskQueue(
                client: client, timeout: database.timeout, maxQueued: try settings.int(.maxQueued), logger: logger)
            let secret = try StreamSecret.load(settings: settings)
            let catalogue = try ModelCatalogue(settings: settings)
            let authentication = Authentication(
                mode: mode, keys: APIKeyStore(client: client, timeout: database.timeout, logger: logger), secret: secret
            )
            if mode == .off {
                logger.warning(
                    "HANDOFF_AUTH=off: no API keys and no limits; anyone who reaches \(host) may use every model")
            }
            let batcher = EnqueueBatcher(queue: queue, logger: logger)
            let admission = TaskAdmission(
                batcher: batcher, queue: queue, authentication: authentication,
                maxBodyBytes: try settings.int(.maxBodyBytes),
                idempotencyWindow: try settings.seconds(.idempotencySeconds),
                reservationCeiling: try settings.int(.reserveMaxTokens))
            let validation = try RequestValidation(catalogue: catalogue, settings: settings)
            let tokenTTL = try settings.seconds(.tokenTTLSeconds)
            let completions = CompletionsController(admission: admission, validation: validation, tokenTTL: tokenTTL)
            let responses = ResponsesController(
                admission: admission, validation: validation,
                log: StreamLog(client: client, timeout: database.timeout, logger: logger),
                tokenTTL: tokenTTL)

            let app = HTTPService.make(
                name: "handoff-api", host: host,
                port: try settings.int(.apiPort, override: port), logger: logger, operations: startup.operations,
                routes: { router in
                    completions.addRoutes(to: router)
                    responses.addRoutes(to: router)
                    CancellationController(queue: queue, authentication: authentication, secret: secret).addRoutes(
                        to: router)
                    ModelsController(models: catalogue.names, authentication: authentication).addRoutes(to: router)
                })
            // Shut down in reverse: readiness fails, the HTTP server finishes its requests, then the batcher commits theirs.
            try await startup.run([client, batcher, app], probing: client)
        }
    }
}
