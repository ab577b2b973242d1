import Foundation

/// A Postgres server, user and database, as a `postgres://user[:password]@host[:port]/database` URL names them.
public struct PostgresAddress: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var username: String
    public var password: String?
    public var database: String

    /// `key`: the setting the URL came from, named by the error when it does not parse.
    init(url text: String, key: ConfigKey) throws(SettingsError) {
        guard let url = URLComponents(string: text), ["postgres", "postgresql"].contains(url.scheme ?? ""),
            let host = url.host, !host.isEmpty
        else { throw .invalid(key, text) }
        self.host = host
        self.port = url.port ?? 5432
        self.username = url.user ?? "postgres"
        self.password = url.password
        let path = url.path.hasPrefix("/") ? String(url.path.dropFirst()) : url.path
        self.database = path.isEmpty ? self.username : path
    }
}
