import Foundation
import HandoffWire
import Testing

/// The byte-level spellings agree with Foundation's, which they replace on the request path.
struct TextEncodingsTests {
    @Test func hexAndCompactUUIDsSpellWhatFoundationSpells() {
        for _ in 0..<200 {
            let id = UUID()
            #expect(id.compactHex == id.uuidString.lowercased().filter { $0 != "-" })
            let bytes = withUnsafeBytes(of: id.uuid) { Array($0) }
            #expect(Hex.encode(bytes) == bytes.map { String(format: "%02x", $0) }.joined())
        }
        #expect(Hex.encode([0x00, 0x0f, 0xf0, 0xff]) == "000ff0ff")
    }

    @Test func canonicalUUIDsAreReadInEitherCaseAndNothingElseIs() {
        for _ in 0..<200 {
            let id = UUID()
            #expect(UUID(canonical: id.uuidString.utf8) == id)
            #expect(UUID(canonical: id.uuidString.lowercased().utf8) == id)
        }
        let valid = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
        #expect(UUID(canonical: valid.utf8) == UUID(uuidString: valid))
        for invalid in [
            "", String(valid.dropLast()), valid + "0", valid.replacingOccurrences(of: "-", with: "0"),
            "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1fg", "0f1e2d3c4-b5a-6978-8796-a5b4c3d2e1f0",
        ] {
            #expect(UUID(canonical: invalid.utf8) == nil, "\(invalid)")
        }
    }

    @Test func base64URLIsFoundationsBase64WithTheURLAlphabetUnpadded() {
        var generator = SystemRandomNumberGenerator()
        for length in 0..<48 {
            let data = Data((0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) })
            let encoded = Base64URL.encode(data)
            let foundation = data.base64EncodedString().replacingOccurrences(of: "+", with: "-")
                .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
            #expect(encoded == foundation)
            #expect(Base64URL.decode(Substring(encoded)) == data)
        }
        #expect(Base64URL.decode("not base64!") == nil)
    }
}
