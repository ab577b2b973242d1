import Crypto
import Foundation

/// An API key: `hk-` and 43 base64url characters (256 random bits), shown once when it is made.
///
/// Handoff stores only its SHA-256 digest and looks keys up by it. Digests are what Postgres compares, never keys:
/// an attacker timing the lookup learns at most a prefix of a digest, and a digest does not lead back to a key of
/// 256 random bits — which is why a random key needs no slow, salted hash.
package struct APIKey: Sendable, Equatable {
    package static let prefix = "hk-"
    private static let randomBytes = 32

    package let text: String

    /// A new random key.
    package static func generate() -> APIKey {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<randomBytes).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        return APIKey(text: prefix + Base64URL.encode(Data(bytes)))
    }

    /// The key in `Authorization: Bearer <key>`; `nil` when the header is absent, has another scheme, or holds
    /// something that cannot be one of our keys (so it never reaches the database).
    package init?(authorization: String?) {
        guard let authorization else { return nil }
        let parts = authorization.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        let key = parts[1].trimmingCharacters(in: .whitespaces)
        guard key.hasPrefix(Self.prefix), key.utf8.count == Self.prefix.utf8.count + 43,
            key.utf8.dropFirst(Self.prefix.utf8.count).allSatisfy(Base64URL.isAlphabet)
        else { return nil }
        self.text = key
    }

    private init(text: String) {
        self.text = text
    }

    /// What the database holds and compares: the lowercase hex SHA-256 of the key.
    package var digest: String {
        Hex.encode(SHA256.hash(data: Data(text.utf8)))
    }

    /// Enough of the key for a person to tell keys apart (`hk-…abcd`), too little to matter.
    package var hint: String {
        "\(Self.prefix)…\(text.suffix(4))"
    }
}
