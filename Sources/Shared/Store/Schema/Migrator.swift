import Logging
import PostgresNIO

/// Applies the migrations of `Migrations.all` that the database has not seen yet.
///
/// Runs under a transaction-scoped advisory lock, so processes that start at the same moment apply each
/// migration exactly once; the others wait, then find nothing left to do.
package struct Migrator: Sendable {
    static let advisoryLockKey: Int64 = 0x68_616e_646f_6666  // "handoff"

    let migrations: [Migrations.Migration]

    package init(migrations: [Migrations.Migration] = Migrations.all) {
        self.migrations = migrations
    }

    package func migrate(database: DatabaseSettings, logger: Logger) async throws {
        let connection = try await PostgresConnection.connect(
            configuration: database.connectionConfiguration(applicationName: "handoff-migrate"), id: 0, logger: logger)
        do {
            try await connection.perform(PostgresQuery(unsafeSQL: script), logger: logger)
            try await connection.close()
        } catch {
            try? await connection.close()
            throw error
        }
    }

    /// The whole migration as ONE statement, a `DO` block, so it commits or fails as a unit. Several queries
    /// would leave gaps in which Postgres (restarting while we start) can end the connection; PostgresNIO then
    /// never completes the next query — seen here as a replica hung at start-up.
    var script: String {
        var script = """
            DO $migrate$
            BEGIN
                PERFORM pg_advisory_xact_lock(\(Self.advisoryLockKey));
                CREATE TABLE IF NOT EXISTS handoff_schema_migrations (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                );

            """
        for migration in migrations {
            script +=
                "    IF NOT EXISTS (SELECT 1 FROM handoff_schema_migrations WHERE version = \(migration.version)) THEN\n"
            for statement in migration.statements {
                precondition(!statement.contains("$sql$"), "a migration statement must not contain $sql$")
                script += "        EXECUTE $sql$\(statement)$sql$;\n"
            }
            let name = migration.name.replacingOccurrences(of: "'", with: "''")
            script +=
                "        INSERT INTO handoff_schema_migrations (version, name) VALUES (\(migration.version), '\(name)');\n"
            script += "    END IF;\n"
        }
        return script + "END\n$migrate$"
    }
}
