import Logging
import PostgresNIO
import Synchronization

/// A statement Postgres parses once per connection, not on every call, and plans as it sees fit: a plan per call
/// for its first five, then one generic plan if that promises to cost no more.
///
/// Parsing and planning cost more than running our statements: the server's log showed the enqueue statement
/// parsed in 1.05 ms, planned in 1.7 ms and run in 0.5 ms; a stream's first read 0.5, 0.6 and 0.15. A statement
/// whose generic plan is unsound runs on a pool that forces custom plans: the flush (`StreamLog.append` says why).
/// A conforming type names one statement; its SQL is the text of a query built by the same interpolation as every
/// call's (`query`), so text and binds cannot drift apart, and each call sends only binds.
package protocol PreparedQuery: PostgresPreparedStatement where Row == PostgresRow {
    /// This call's query: `Self.sql` with this call's binds.
    var query: PostgresQuery { get }
}

extension PreparedQuery {
    package func makeBindings() throws -> PostgresBindings { query.binds }
    package func decodeRow(_ row: PostgresRow) throws -> PostgresRow { row }
}

/// Whether this process prepares its statements (`HANDOFF_DB_PREPARE`). Off behind a PgBouncer in transaction
/// mode older than 1.21, which cannot follow a named statement from one server connection to the next; every
/// statement then goes unnamed, as a `PostgresQuery`.
package enum PreparedQueries {
    static let enabled = Atomic<Bool>(true)

    package static func prepare(_ enabled: Bool) {
        self.enabled.store(enabled, ordering: .relaxed)
    }
}

extension PostgresClient {
    /// `perform` for a prepared statement.
    @discardableResult
    package func perform(_ statement: some PreparedQuery, timeout: Duration, logger: Logger) async throws
        -> [PostgresRow]
    {
        assert(statement.query.sql == type(of: statement).sql, "\(type(of: statement)) built a different text")
        guard PreparedQueries.enabled.load(ordering: .relaxed) else {
            return try await perform(statement.query, timeout: timeout, logger: logger)
        }
        do {
            return try await measured(timeout: timeout) {
                var rows: [PostgresRow] = []
                for try await row in try await self.execute(statement, logger: logger) { rows.append(row) }
                return rows
            }
        } catch let error as PSQLError where error.mayPassIfAskedAgain {
            // PostgresNIO (1.33) keeps a statement whose preparation failed as failed on its connection for good:
            // every later call there gets that error without asking Postgres. A preparation cut off for a passing
            // reason (its statement timeout, while a migration of a rolling deploy held the table's lock) would fail
            // that statement on that connection until the connection closed. So a call the server refused runs once
            // more, unnamed: the server rolled the refused one back, and a poisoned connection still serves.
            logger.debug(
                "prepared statement refused; running it unnamed",
                metadata: ["statement": "\(type(of: statement))", "error": "\(String(reflecting: error))"])
            return try await perform(statement.query, timeout: timeout, logger: logger)
        }
    }
}
