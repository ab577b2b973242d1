import Foundation
import HandoffStore
import HandoffWire
import Testing

struct SettingsTests {
    @Test func defaultsApplyAndOverridesWin() throws {
        let settings = Settings(environment: ["HANDOFF_API_PORT": "9000"])
        #expect(try settings.int(.apiPort) == 9000)
        #expect(try settings.int(.apiPort, override: 7) == 7)
        #expect(try settings.int(.ssePort) == 8082)
        #expect(settings.list(.models) == ["demo"])
    }

    @Test func unparseableValueIsAnErrorNotTheDefault() {
        #expect(throws: SettingsError.self) { try Settings(environment: ["HANDOFF_API_PORT": "eighty"]).int(.apiPort) }
        #expect(throws: SettingsError.self) {
            try Settings(environment: ["HANDOFF_FLUSH_MS": "-5"]).int(.flushWindowMilliseconds)
        }
    }

    @Test func databaseURLIsParsed() throws {
        let database = try DatabaseSettings(
            settings: Settings(environment: ["DATABASE_URL": "postgres://u:p@db.local:6000/app"]))
        #expect(database.address.host == "db.local")
        #expect(database.address.port == 6000)
        #expect(database.address.username == "u")
        #expect(database.address.password == "p")
        #expect(database.address.database == "app")
        #expect(database.listenAddress == database.address, "LISTEN goes where the pool goes unless told otherwise")
        #expect(throws: SettingsError.self) {
            try DatabaseSettings(settings: Settings(environment: ["DATABASE_URL": "mysql://x/y"]))
        }
    }

    @Test func theListenerCanGoAroundAPgBouncer() throws {
        let database = try DatabaseSettings(
            settings: Settings(environment: [
                "DATABASE_URL": "postgres://u@pgbouncer:6432/app",
                "HANDOFF_LISTEN_DATABASE_URL": "postgres://u@db.local:5432/app",
            ]))
        #expect((database.address.host, database.address.port) == ("pgbouncer", 6432))
        #expect((database.listenAddress.host, database.listenAddress.port) == ("db.local", 5432))
        #expect(throws: SettingsError.self) {
            try DatabaseSettings(settings: Settings(environment: ["HANDOFF_LISTEN_DATABASE_URL": "http://db.local"]))
        }
    }

    /// The settings table (docs/settings.md) is the user's reference: every key must be in it, with its default.
    @Test(arguments: ConfigKey.allCases)
    func everyKeyIsDocumented(key: ConfigKey) throws {
        let table = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
            "../../docs/settings.md")
        let text = try String(contentsOf: table, encoding: .utf8)
        let row = try #require(
            text.split(separator: "\n").first { $0.hasPrefix("| `\(key.rawValue)`") },
            "docs/settings.md lacks \(key.rawValue)")
        #expect(row.contains(key.defaultValue.map { "`\($0)`" } ?? "none"))
    }
}
