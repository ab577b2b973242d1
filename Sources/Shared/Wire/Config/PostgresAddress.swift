import Foundation

/// A Postgres server, user and database, as a `postgres://user[:password]@host[:port]/database` URL names them.
package struct PostgresAddress: Sendable, Equatable {
    package var host: String
    package var port: Int
    package var username: String
    package var password: String?
    package var database: String

    /// `key`: the setting the URL came from, named by the error when it does not parse.
    package init(url text: String, key: ConfigKey) throws(SettingsError) {
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
