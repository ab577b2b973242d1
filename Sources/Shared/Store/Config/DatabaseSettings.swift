import Foundation
import HandoffWire
import PostgresNIO

/// Where Postgres is and how a process talks to it, parsed once from `DATABASE_URL` (and, for the LISTEN
/// connection, `HANDOFF_LISTEN_DATABASE_URL`).
package struct DatabaseSettings: Sendable {
    /// The pool's, the migrator's and the admin commands' Postgres.
    package var address: PostgresAddress
    /// The LISTEN connection's: the same Postgres, reached directly when the pool goes through a PgBouncer.
    package var listenAddress: PostgresAddress
    package var poolSize: Int
    /// Whether the pool prepares its hot statements (`PreparedQuery`).
    package var prepare: Bool
    /// Deadline for a request-path database call; past it the caller answers 503 instead of hanging.
    package var timeout: Duration
    /// How long opening a connection may take: an unreachable Postgres fails a request fast. The tests allow
    /// more, for a test cluster that forks backends on a loaded machine.
    package var connectTimeout = Duration.seconds(2)

    package init(settings: Settings = Settings()) throws {
        self.address = try PostgresAddress(url: settings.string(.databaseURL) ?? "", key: .databaseURL)
        self.listenAddress =
            try settings.string(.listenDatabaseURL).map { try PostgresAddress(url: $0, key: .listenDatabaseURL) }
            ?? address
        self.poolSize = max(1, try settings.int(.databasePoolSize))
        self.prepare = try settings.isOn(.databasePrepare)
        self.timeout = try settings.milliseconds(.databaseTimeoutMilliseconds)
    }

    /// The process's query pool; its size is exported as `handoff_postgres_pool_size`, and whether it prepares
    /// statements holds for the whole process.
    package func makeClient(applicationName: String) -> PostgresClient {
        PostgresMetrics.poolSize.record(poolSize)
        PreparedQueries.prepare(prepare)
        return PostgresClient(configuration: clientConfiguration(applicationName: applicationName))
    }

    /// The worker's stream writer's own pool, beside the process's: `connections` of them, whose prepared
    /// statements Postgres plans afresh on every call (`plan_cache_mode`), so the flush — whose generic plan is
    /// unsound (`StreamLog.append`) — is parsed once per connection yet planned for each flush's real arrays.
    package func makeWriterClient(applicationName: String, connections: Int) -> PostgresClient {
        var configuration = clientConfiguration(applicationName: applicationName, customPlansOnly: true)
        configuration.options.maximumConnections = connections
        return PostgresClient(configuration: configuration)
    }

    /// A pool for queries. `applicationName` shows in `pg_stat_activity`, which is how tests and operators
    /// count a process's connections.
    package func clientConfiguration(applicationName: String, customPlansOnly: Bool = false)
        -> PostgresClient.Configuration
    {
        var configuration = PostgresClient.Configuration(
            host: address.host, port: address.port, username: address.username, password: address.password,
            database: address.database, tls: .disable)
        configuration.options.maximumConnections = poolSize
        configuration.options.connectTimeout = connectTimeout
        // The server enforces the deadline too: a statement cut off by it is rolled back, not left to commit
        // after the caller has already answered 503.
        let milliseconds = timeout.wholeMilliseconds
        let planning = customPlansOnly ? " -c plan_cache_mode=force_custom_plan" : ""
        configuration.options.additionalStartupParameters = [
            ("application_name", applicationName), ("options", "-c statement_timeout=\(milliseconds)\(planning)"),
        ]
        return configuration
    }

    /// A single connection outside the pool, for the migrator.
    package func connectionConfiguration(applicationName: String) -> PostgresConnection.Configuration {
        var configuration = PostgresConnection.Configuration(
            host: address.host, port: address.port, username: address.username, password: address.password,
            database: address.database, tls: .disable)
        configuration.options.connectTimeout = .milliseconds(connectTimeout.wholeMilliseconds)
        configuration.options.additionalStartupParameters = [("application_name", applicationName)]
        return configuration
    }

    /// The LISTEN connection of a worker or an SSE replica.
    package func listenerEndpoint(applicationName: String) -> ListenerEndpoint {
        ListenerEndpoint(address: listenAddress, applicationName: applicationName)
    }
}
