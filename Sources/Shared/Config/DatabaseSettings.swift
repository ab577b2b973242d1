import Foundation
import PostgresNIO

/// Where Postgres is and how a process talks to it, parsed once from `DATABASE_URL`.
public struct DatabaseSettings: Sendable {
    public var host: String
    public var port: Int
    public var username: String
    public var password: String?
    public var database: String
    public var poolSize: Int
    /// Deadline for a request-path database call; past it the caller answers 503 instead of hanging.
    public var timeout: Duration

    public init(settings: Settings = Settings()) throws {
        let text = settings.string(.databaseURL) ?? ""
        guard let url = URLComponents(string: text), ["postgres", "postgresql"].contains(url.scheme ?? ""),
            let host = url.host, !host.isEmpty
        else { throw SettingsError.invalid(.databaseURL, text) }
        self.host = host
        self.port = url.port ?? 5432
        self.username = url.user ?? "postgres"
        self.password = url.password
        let path = url.path.hasPrefix("/") ? String(url.path.dropFirst()) : url.path
        self.database = path.isEmpty ? self.username : path
        self.poolSize = max(1, try settings.int(.databasePoolSize))
        self.timeout = try settings.milliseconds(.databaseTimeoutMilliseconds)
    }

    /// The process's query pool; its size is exported as `handoff_postgres_pool_size`.
    public func makeClient(applicationName: String) -> PostgresClient {
        PostgresMetrics.poolSize.record(poolSize)
        return PostgresClient(configuration: clientConfiguration(applicationName: applicationName))
    }

    /// A pool for queries. `applicationName` shows in `pg_stat_activity`, which is how tests and operators
    /// count a process's connections.
    public func clientConfiguration(applicationName: String) -> PostgresClient.Configuration {
        var configuration = PostgresClient.Configuration(
            host: host, port: port, username: username, password: password, database: database, tls: .disable
        )
        configuration.options.maximumConnections = poolSize
        configuration.options.connectTimeout = .seconds(2)
        // The server enforces the deadline too: a statement cut off by it is rolled back, not left to commit
        // after the caller has already answered 503.
        let milliseconds = timeout.wholeMilliseconds
        configuration.options.additionalStartupParameters = [
            ("application_name", applicationName), ("options", "-c statement_timeout=\(milliseconds)"),
        ]
        return configuration
    }

    /// A single connection outside the pool: the LISTEN connection and the migrator use it.
    public func connectionConfiguration(applicationName: String) -> PostgresConnection.Configuration {
        var configuration = PostgresConnection.Configuration(
            host: host, port: port, username: username, password: password, database: database, tls: .disable
        )
        configuration.options.connectTimeout = .seconds(2)
        configuration.options.additionalStartupParameters = [("application_name", applicationName)]
        return configuration
    }
}
