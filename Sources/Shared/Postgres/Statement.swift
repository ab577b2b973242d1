import Logging
import PostgresNIO

/// Running a statement to its end.
///
/// PostgresNIO hands back a row sequence as soon as a statement is bound, before it has run; a caller that
/// drops the sequence never learns of the statement's errors nor waits for its (auto)commit. Every write goes
/// through `perform`, which drains the rows.
extension PostgresClient {
    @discardableResult
    public func perform(_ query: PostgresQuery, logger: Logger) async throws -> [PostgresRow] {
        try await self.query(query, logger: logger).collect()
    }
}

extension PostgresConnection {
    @discardableResult
    public func perform(_ query: PostgresQuery, logger: Logger) async throws -> [PostgresRow] {
        try await self.query(query, logger: logger).collect()
    }
}

extension PSQLError {
    /// Postgres did not answer, or is shutting down or refusing connections — as opposed to a statement it ran
    /// and rejected (our bug or bad data) or a client-side failure (decoding).
    public var meansDatabaseUnavailable: Bool {
        if let sqlState = serverInfo?[.sqlState] {
            // 08: connection exception, 57: operator intervention (shutdown, statement_timeout), 53300: too many connections.
            return sqlState.hasPrefix("08") || sqlState.hasPrefix("57") || sqlState == "53300"
        }
        return [.connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .poolClosed].contains(code)
    }
}
