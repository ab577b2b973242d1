import Foundation
import Shared
import Testing

@Suite(.serialized) struct MigratorTests {
    @Test func concurrentStartUpsApplyEachMigrationOnce() async throws {
        try await TestDatabase.with { database in
            // TestDatabase already migrated once; now several "processes" start at the same moment.
            let applied = try await withThrowingTaskGroup(of: [Int].self) { group in
                for _ in 0..<4 { group.addTask { try await Migrator().migrate(database: database.settings, logger: database.logger) } }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            #expect(applied.isEmpty)
            let rows = try await database.client.query("SELECT count(*) FROM handoff_schema_migrations", logger: database.logger)
            for try await count in rows.decode(Int.self) { #expect(count == Migrations.all.count) }
        }
    }
}
