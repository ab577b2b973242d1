import Foundation
import HandoffStore
import PostgresNIO
import Testing

/// A statement whose preparation failed for a passing reason must work again once the reason is gone: PostgresNIO
/// keeps a failed preparation as failed on its connection, answering every later call with the same error.
struct PreparedQueryTests {
    struct CountTasks: HandoffStore.PreparedQuery {
        static let sql = "SELECT count(*) FROM handoff_tasks"
        let query: PostgresQuery = "SELECT count(*) FROM handoff_tasks"
    }

    @Test func aPreparationCutOffByALockDoesNotPoisonItsConnection() async throws {
        // One pooled connection, so the second call meets the connection the first one's preparation failed on.
        try await TestDatabase.with(poolSize: 1, statementTimeout: .milliseconds(400)) { database in
            try await database.withSecondClient(applicationName: "migration") { migration in
                try await migration.withConnection { connection in
                    // A migration's lock: parsing the statement waits for it until the statement timeout.
                    _ = try await connection.query("BEGIN", logger: database.logger)
                    _ = try await connection.query(
                        "LOCK TABLE handoff_tasks IN ACCESS EXCLUSIVE MODE", logger: database.logger)
                    await #expect(throws: (any Error).self) {
                        try await database.client.perform(CountTasks(), timeout: .seconds(2), logger: database.logger)
                    }
                    _ = try await connection.query("ROLLBACK", logger: database.logger)
                }
            }
            let rows = try await database.client.perform(CountTasks(), timeout: .seconds(2), logger: database.logger)
            #expect(try rows.first?.decode(Int.self) == 0)
        }
    }
}
