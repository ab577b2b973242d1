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

    static func main() async {
        ConcurrencyPool.useEventLoops()
        await main(nil)
    }

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
            if mode == .off {
                logger.warning(
                    "HANDOFF_AUTH=off: no API keys and no limits; anyone who reaches \(host) may use every model")
            }
            let api = try APIApplication(
                settings: settings, mode: mode, client: client, timeout: database.timeout, logger: logger)
            let app = api.application(
                host: host, port: try settings.int(.apiPort, override: port), operations: startup.operations,
                logger: logger)
            // Shut down in reverse: readiness fails, the HTTP server finishes its requests, then the batcher commits theirs.
            try await startup.run([client, api.withdrawal, api.batcher, app], probing: client)
        }
    }
}
