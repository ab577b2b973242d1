import Logging
import PostgresNIO

/// Applies `Migrations.all` that the database has not seen yet.
///
/// Runs under a transaction-scoped advisory lock, so processes that start at the same moment apply each
/// migration exactly once; the others wait, then find nothing left to do.
public struct Migrator: Sendable {
    static let advisoryLockKey: Int64 = 0x68616e646f6666  // "handoff"

    let migrations: [Migrations.Migration]

    public init(migrations: [Migrations.Migration] = Migrations.all) {
        self.migrations = migrations
    }

    /// Returns the versions it applied.
    @discardableResult
    public func migrate(database: DatabaseSettings, logger: Logger) async throws -> [Int] {
        let connection = try await PostgresConnection.connect(
            configuration: database.connectionConfiguration(applicationName: "handoff-migrate"), id: 0, logger: logger)
        do {
            let applied = try await migrate(connection: connection, logger: logger)
            try await connection.close()
            return applied
        } catch {
            try? await connection.close()
            throw error
        }
    }

    public func migrate(connection: PostgresConnection, logger: Logger) async throws -> [Int] {
        try await connection.withTransaction(logger: logger) { connection in
            try await connection.perform("SELECT pg_advisory_xact_lock(\(Self.advisoryLockKey))", logger: logger)
            try await connection.perform(
                """
                CREATE TABLE IF NOT EXISTS handoff_schema_migrations (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """, logger: logger)
            var done = Set<Int>()
            for try await version in try await connection.query(
                "SELECT version FROM handoff_schema_migrations", logger: logger
            ).decode(Int.self) {
                done.insert(version)
            }
            var applied: [Int] = []
            for migration in migrations where !done.contains(migration.version) {
                logger.info("applying migration", metadata: ["version": "\(migration.version)", "name": "\(migration.name)"])
                for statement in migration.statements {
                    try await connection.perform(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await connection.perform(
                    "INSERT INTO handoff_schema_migrations (version, name) VALUES (\(migration.version), \(migration.name))",
                    logger: logger)
                applied.append(migration.version)
            }
            return applied
        }
    }
}
