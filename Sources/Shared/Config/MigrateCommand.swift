import ArgumentParser

/// `<any handoff binary> migrate`: applies the schema and exits. Servers also do this at start-up.
public struct MigrateCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "migrate", abstract: "Apply pending database migrations and exit.")

    public init() {}

    public func run() async throws {
        let settings = Settings()
        let logger = try ProcessRuntime.bootstrapLogging(label: "handoff.migrate", settings: settings)
        let database = try DatabaseSettings(settings: settings)
        try await ProcessRuntime.migrate(database: database, logger: logger)
    }
}
