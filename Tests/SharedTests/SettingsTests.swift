import Foundation
import Shared
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
        #expect(throws: SettingsError.self) { try Settings(environment: ["HANDOFF_FLUSH_MS": "-5"]).int(.flushWindowMilliseconds) }
    }

    @Test func databaseURLIsParsed() throws {
        let database = try DatabaseSettings(settings: Settings(environment: ["DATABASE_URL": "postgres://u:p@db.local:6000/app"]))
        #expect(database.host == "db.local")
        #expect(database.port == 6000)
        #expect(database.username == "u")
        #expect(database.password == "p")
        #expect(database.database == "app")
        #expect(throws: SettingsError.self) { try DatabaseSettings(settings: Settings(environment: ["DATABASE_URL": "mysql://x/y"])) }
    }

    /// The README's settings table is the user's reference: every key must be in it, with its default.
    @Test(arguments: ConfigKey.allCases)
    func everyKeyIsDocumentedInTheReadme(key: ConfigKey) throws {
        let readme = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../README.md")
        let text = try String(contentsOf: readme, encoding: .utf8)
        let row = try #require(text.split(separator: "\n").first { $0.hasPrefix("| `\(key.rawValue)`") }, "README lacks \(key.rawValue)")
        #expect(row.contains(key.defaultValue.map { "`\($0)`" } ?? "none"))
    }
}
