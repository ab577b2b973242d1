import Logging
import PostgresNIO
import Synchronization

/// A statement Postgres parses and plans once per connection, not on every call.
///
/// Parsing and planning cost more than running our statements: the server's log showed the enqueue statement
/// parsed and planned in 2.7 ms and run in 0.5 ms, the flush in 1.5 ms and 0.5 ms, a stream's first read in
/// 1.1 ms and 0.15 ms. A conforming type names one statement; its SQL is the text of a query built by the same
/// interpolation as every call's (`query`), so text and binds cannot drift apart, and each call sends only binds.
public protocol PreparedQuery: PostgresPreparedStatement where Row == PostgresRow {
    /// This call's query: `Self.sql` with this call's binds.
    var query: PostgresQuery { get }
}

extension PreparedQuery {
    public func makeBindings() throws -> PostgresBindings { query.binds }
    public func decodeRow(_ row: PostgresRow) throws -> PostgresRow { row }
}

/// Whether this process prepares its statements (`HANDOFF_DB_PREPARE`). Off behind a PgBouncer in transaction
/// mode older than 1.21, which cannot follow a named statement from one server connection to the next; every
/// statement then goes unnamed, as a `PostgresQuery`.
public enum PreparedQueries {
    static let enabled = Atomic<Bool>(true)

    public static func prepare(_ enabled: Bool) {
        self.enabled.store(enabled, ordering: .relaxed)
    }
}

extension PostgresClient {
    /// `perform` for a prepared statement.
    @discardableResult
    public func perform(_ statement: some PreparedQuery, timeout: Duration, logger: Logger) async throws -> [PostgresRow] {
        assert(statement.query.sql == type(of: statement).sql, "\(type(of: statement)) built a different text")
        guard PreparedQueries.enabled.load(ordering: .relaxed) else {
            return try await perform(statement.query, timeout: timeout, logger: logger)
        }
        return try await measured(timeout: timeout) {
            var rows: [PostgresRow] = []
            for try await row in try await self.execute(statement, logger: logger) { rows.append(row) }
            return rows
        }
    }
}
