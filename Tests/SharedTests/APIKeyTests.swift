import Foundation
import Testing

@testable import HandoffWire

struct APIKeyTests {
    @Test func keysAreRandomAndWellFormed() throws {
        let keys = (0..<100).map { _ in APIKey.generate() }
        #expect(Set(keys.map(\.text)).count == 100)
        for key in keys {
            #expect(key.text.hasPrefix("hk-") && key.text.count == 46)
            #expect(try #require(Base64URL.decode(key.text.dropFirst(3))).count == 32, "256 random bits")
            #expect(APIKey(authorization: "Bearer \(key.text)") == key)
            #expect(key.digest.count == 64 && !key.digest.contains(key.text))
            #expect(key.hint == "hk-…\(key.text.suffix(4))")
        }
    }

    @Test func onlyABearerKeyOfOurShapeIsRead() {
        let key = APIKey.generate().text
        #expect(APIKey(authorization: "bearer \(key)")?.text == key)
        for header in [
            nil, "", key, "Basic \(key)", "Bearer", "Bearer sk-\(key.dropFirst(3))", "Bearer \(key)x",
            "Bearer \(key.dropLast())=",
            "Bearer \(key.dropLast())+",
        ] {
            #expect(APIKey(authorization: header) == nil, "\(header ?? "nil")")
        }
    }

    @Test func authOffIsRefusedOffLoopbackUnlessAllowed() throws {
        let off = Settings(environment: ["HANDOFF_AUTH": "off"])
        #expect(try AuthMode(settings: off, host: "127.0.0.1") == .off)
        #expect(throws: SettingsError.self) { try AuthMode(settings: off, host: "0.0.0.0") }
        #expect(
            try AuthMode(
                settings: Settings(environment: ["HANDOFF_AUTH": "off", "HANDOFF_AUTH_OFF_ALLOW_NETWORK": "1"]),
                host: "0.0.0.0") == .off)
        #expect(try AuthMode(settings: Settings(environment: [:]), host: "0.0.0.0") == .required)
        #expect(throws: SettingsError.self) {
            try AuthMode(settings: Settings(environment: ["HANDOFF_AUTH": "maybe"]), host: "127.0.0.1")
        }
    }
}
