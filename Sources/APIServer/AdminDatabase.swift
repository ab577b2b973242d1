import ArgumentParser
import Foundation
import HandoffProcess
import HandoffStore
import HandoffWire
import Logging
import PostgresNIO

/// What every admin subcommand of `handoff-api` (`keys`, `tasks`, `queue`) shares: the configured database
/// (`DATABASE_URL`), migrated first so a fresh one works, for the length of one command — and how values print.
enum AdminDatabase {
    static func with<Result: Sendable>(
        _ body: @Sendable (_ client: PostgresClient, _ timeout: Duration, _ logger: Logger) async throws -> Result
    ) async throws -> Result {
        let settings = Settings()
        let logger = try ProcessRuntime.bootstrapLogging(label: "handoff.admin", settings: settings)
        let database = try DatabaseSettings(settings: settings)
        try await ProcessRuntime.migrate(database: database, logger: logger, patience: .seconds(10))
        let client = database.makeClient(applicationName: "handoff-admin")
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            defer { group.cancelAll() }
            return try await body(client, database.timeout, logger)
        }
    }

    static func iso(_ date: Date) -> String {
        date.formatted(.iso8601)
    }

    static func json(_ value: Int?) -> JSONValue {
        value.map { .int(Int64($0)) } ?? .null
    }

    static func json(_ date: Date?) -> JSONValue {
        .optional(date.map(iso))
    }
}
