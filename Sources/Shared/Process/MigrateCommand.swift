import ArgumentParser
import HandoffStore
import HandoffWire

/// `<any handoff binary> migrate`: applies the schema and exits. Servers also do this at start-up.
package struct MigrateCommand: AsyncParsableCommand {
    package static let configuration = CommandConfiguration(
        commandName: "migrate", abstract: "Apply pending database migrations and exit.")

    package init() {}

    package func run() async throws {
        let settings = Settings()
        let logger = try ProcessRuntime.bootstrapLogging(label: "handoff.migrate", settings: settings)
        let database = try DatabaseSettings(settings: settings)
        try await ProcessRuntime.migrate(database: database, logger: logger)
    }
}
