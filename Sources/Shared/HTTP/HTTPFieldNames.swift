import HTTPTypes
import HandoffWire

/// The header names Handoff reads and writes beyond HTTPTypes' own, made once (each is a valid field name).
extension HTTPField.Name {
    package static let requestID = Self("X-Request-Id")!
    /// openai-python honours it before `Retry-After`.
    package static let retryAfterMilliseconds = Self("retry-after-ms")!
    package static let idempotencyKey = Self(IdempotencyKey.header)!
    package static let streamToken = Self(CompletionsRoute.tokenHeader)!
}
