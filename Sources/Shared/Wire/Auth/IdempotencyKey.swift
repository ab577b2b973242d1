import Crypto
import Foundation

/// The `Idempotency-Key` header: the same key from the same caller, within the window, returns the task of the
/// first request instead of starting another.
package struct IdempotencyKey: Sendable, Equatable {
    package static let header = "Idempotency-Key"

    /// Where the key lives in the table: the caller (its `Authorization`, hashed — never stored) and the key.
    package let scope: String

    /// `nil` when the request carries no key; an error when it carries one that is not 1–255 visible ASCII characters.
    package init?(_ value: String?, authorization: String?) throws(OpenAIError) {
        guard let value else { return nil }
        guard (1...255).contains(value.utf8.count), value.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else {
            throw .invalidRequest(
                "The Idempotency-Key header must be 1 to 255 visible ASCII characters.", param: nil,
                code: "invalid_idempotency_key")
        }
        scope = Hex.encode(SHA256.hash(data: Data("\(authorization ?? "")\n\(value)".utf8)))
    }

    package static let reused = OpenAIError(
        status: 422,
        message: "This Idempotency-Key was already used for a different request. Use a new key for a new request.",
        type: "invalid_request_error", code: "idempotency_key_reused")
}
