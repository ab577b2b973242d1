import HandoffRuntime
import HandoffWire
import Logging
import Metrics
import PostgresNIO

/// The query pool's metrics. Static, so made at their first use, after the process bootstrapped swift-metrics.
enum PostgresMetrics {
    /// Every statement holds one pooled connection while it runs, so statements running are connections in use.
    static let connectionsInUse = Meter(label: MetricName.connectionsInUse.rawValue)
    static let poolSize = Gauge(label: MetricName.poolSize.rawValue)
    static let deadlineMisses = Counter(label: MetricName.deadlineMisses.rawValue)
}

/// Running a statement to its end, within a deadline.
///
/// PostgresNIO hands back a row sequence as soon as a statement is bound, before it has run; a caller that
/// drops the sequence never learns of the statement's errors nor waits for its (auto)commit. So every statement
/// goes through `perform`, which drains the rows — under `withDeadline`, because a statement on a connection the
/// server has just closed never completes.
extension PostgresClient {
    @discardableResult
    package func perform(_ query: PostgresQuery, timeout: Duration, logger: Logger) async throws -> [PostgresRow] {
        try await measured(timeout: timeout) { try await self.query(query, logger: logger).collect() }
    }

    /// Runs `rows` within the deadline, counted as a connection in use (and a deadline miss when it runs out).
    func measured(timeout: Duration, _ rows: @escaping @Sendable () async throws -> [PostgresRow]) async throws
        -> [PostgresRow]
    {
        PostgresMetrics.connectionsInUse.increment()
        defer { PostgresMetrics.connectionsInUse.decrement() }
        do {
            return try await withDeadline(timeout, rows)
        } catch let error as DeadlineExceeded {
            PostgresMetrics.deadlineMisses.increment()
            throw error
        }
    }
}

extension [PostgresRow] {
    package func decode<each Column: PostgresDecodable>(_ columns: (repeat each Column).Type) throws -> [(
        repeat each Column
    )] {
        try map { try $0.decode(columns) }
    }
}

extension PostgresConnection {
    @discardableResult
    package func perform(_ query: PostgresQuery, logger: Logger) async throws -> [PostgresRow] {
        try await self.query(query, logger: logger).collect()
    }
}

extension PSQLError {
    /// Postgres did not answer, or is shutting down or refusing connections — as opposed to a statement it ran
    /// and rejected (our bug or bad data) or a client-side failure (decoding).
    package var meansDatabaseUnavailable: Bool {
        if let sqlState = serverInfo?[.sqlState] {
            // 08: connection exception, 57: operator intervention (shutdown, statement_timeout), 53300: too many connections.
            return sqlState.hasPrefix("08") || sqlState.hasPrefix("57") || sqlState == "53300"
        }
        return [.connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .poolClosed]
            .contains(code)
    }

    /// Postgres refused a value the statement carried (class 22, data exception): a number `jsonb` cannot hold, an
    /// unpaired surrogate escape. Said of a statement that carries one request alone, it is that request's fault.
    package var meansInvalidValue: Bool {
        serverInfo?[.sqlState]?.hasPrefix("22") == true
    }

    /// A row the statement inserted has a key already taken (23505, unique violation).
    package var meansDuplicateKey: Bool {
        serverInfo?[.sqlState] == "23505"
    }

    /// The server refused the statement for a reason other than its data (classes 22, data exception, and 23,
    /// integrity violation, would refuse it again): a timeout, a lock, a cancelled backend.
    var mayPassIfAskedAgain: Bool {
        code == .server && !meansInvalidValue && serverInfo?[.sqlState]?.hasPrefix("23") == false
    }
}
