import Foundation
import HandoffStore
import HandoffWire
import PostgresNIO
import Testing

struct MigratorTests {
    /// Processes that start together on an empty database apply every migration exactly once between them.
    @Test func concurrentFirstStartUpsApplyEachMigrationOnce() async throws {
        try await TestDatabase.with(migrated: false) { database in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<4 {
                    group.addTask { try await Migrator().migrate(database: database.settings, logger: database.logger) }
                }
                try await group.waitForAll()
            }
            let rows = try await database.client.query(
                "SELECT count(*), count(DISTINCT version) FROM handoff_schema_migrations", logger: database.logger)
            for try await (total, distinct) in rows.decode((Int, Int).self) {
                #expect(total == Migrations.all.count)
                #expect(distinct == Migrations.all.count)
            }
            // The schema is usable: a task goes in and comes back out.
            let id = UUID()
            let queue = TaskQueue(client: database.client, logger: database.logger)
            try await queue.enqueue(
                id: id,
                request: ChatCompletionRequest(model: "demo", messages: [ChatMessage(role: "user", content: "x")]))
            #expect(try await queue.status(of: id) == .queued)
        }
    }

    @Test func migratingAgainChangesNothing() async throws {
        try await TestDatabase.with { database in
            try await Migrator().migrate(database: database.settings, logger: database.logger)
            let rows = try await database.client.query(
                "SELECT count(*) FROM handoff_schema_migrations", logger: database.logger)
            for try await count in rows.decode(Int.self) { #expect(count == Migrations.all.count) }
        }
    }
}
