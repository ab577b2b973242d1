import HandoffRuntime
import HandoffStore
import HandoffWire
import Logging
import PostgresNIO
import ServiceLifecycle

/// What every Handoff executable does before serving: logging, settings, the schema.
package enum ProcessRuntime {
    /// Bootstraps swift-log once for the process at `HANDOFF_LOG_LEVEL`, as text or as JSON lines (`HANDOFF_LOG_FORMAT`).
    package static func bootstrapLogging(label: String, settings: Settings) throws(SettingsError) -> Logger {
        let level = settings.string(.logLevel).flatMap(Logger.Level.init(rawValue:)) ?? .info
        switch settings.string(.logFormat) {
        case "json":
            LoggingSystem.bootstrap { label in
                var handler = JSONLogHandler(label: label)
                handler.logLevel = level
                return handler
            }
        case "text", nil:
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
        case let format?:
            throw .invalid(.logFormat, format)
        }
        return Logger(label: label)
    }

    /// Applies pending migrations, retrying while Postgres is not up yet (processes start together with it
    /// under honcho), for at most `patience`.
    package static func migrate(database: DatabaseSettings, logger: Logger, patience: Duration = .seconds(60))
        async throws
    {
        let deadline = ContinuousClock.now + patience
        while true {
            do {
                try await Migrator().migrate(database: database, logger: logger)
                return
            } catch {
                guard ContinuousClock.now < deadline else { throw error }
                logger.notice("waiting for Postgres", metadata: ["error": "\(String(reflecting: error))"])
                try await LoopTimer.sleep(for: .milliseconds(500))
            }
        }
    }

    /// Runs `services` until SIGTERM or SIGINT, then shuts them down gracefully in reverse order, within 15 s.
    package static func run(_ services: [any Service], logger: Logger) async throws {
        var configuration = ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        // A graceful shutdown that cannot finish (Postgres gone while work is in flight) becomes a cancellation.
        configuration.maximumGracefulShutdownDuration = .seconds(15)
        let group = ServiceGroup(configuration: configuration)
        try await group.run()
    }
}
