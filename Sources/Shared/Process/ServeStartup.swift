import HandoffRuntime
import HandoffStore
import HandoffWire
import Logging
import PostgresNIO
import ServiceLifecycle

/// The start and the end of every Handoff command's `serve`: settings, logging, the operations registry and the
/// database settings first; the schema once the command has checked its own settings; and at the end its services,
/// with the readiness probe last, under one service group.
package struct ServeStartup: Sendable {
    package let settings: Settings
    package let logger: Logger
    package let operations: Operations
    package let database: DatabaseSettings

    /// `listens`: whether the process holds a LISTEN connection, which readiness then waits for.
    package init(label: String, listens: Bool) throws {
        settings = Settings()
        logger = try ProcessRuntime.bootstrapLogging(label: label, settings: settings)
        operations = try Operations.bootstrap(settings: settings, listens: listens)
        database = try DatabaseSettings(settings: settings)
    }

    /// Applies pending migrations, waiting for Postgres to come up.
    package func migrate() async throws {
        try await ProcessRuntime.migrate(database: database, logger: logger)
    }

    /// Runs `services` and a readiness probe on `client` until SIGTERM or SIGINT; they shut down in reverse, the
    /// probe first, so readiness fails before anything stops serving.
    package func run(_ services: [any Service], probing client: PostgresClient) async throws {
        let probe = ReadinessProbe(
            client: client, readiness: operations.readiness,
            deadline: try settings.milliseconds(.readyDeadlineMilliseconds), logger: logger)
        try await ProcessRuntime.run(services + [probe], logger: logger)
    }
}
