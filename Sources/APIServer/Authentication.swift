import HTTPTypes
import HandoffHTTP
import HandoffStore
import HandoffWire
import Hummingbird
import Metrics

/// Who is calling the API: with `HANDOFF_AUTH=required`, the holder of the valid key in `Authorization`; with
/// `off`, nobody in particular.
///
/// The enqueue path only reads the key's digest here and lets the enqueue statement look it up (with admission,
/// in the same round trip); the other routes look it up on their own.
struct Authentication: Sendable {
    let mode: AuthMode
    let keys: APIKeyStore
    let secret: StreamSecret

    /// The presented key's digest for `TaskSubmission.caller` ('' with auth off). A request with no key, or with
    /// something that cannot be a key, is refused here without touching the database.
    func caller(_ request: Request) throws(OpenAIError) -> String {
        guard mode == .required else { return "" }
        guard let key = APIKey(authorization: request.headers[.authorization]) else { throw .invalidAPIKey }
        return key.digest
    }

    /// The caller's standing for routes that do not enqueue (`nil` with auth off); 401 without a valid key.
    func authenticate(_ request: Request) async throws -> RateLimitReport? {
        let digest = try caller(request)
        guard mode == .required else { return nil }
        guard let report = try await keys.authenticate(digest: digest) else { throw OpenAIError.invalidAPIKey }
        return report
    }

    /// What the stream token of a task created by `caller` binds it to.
    func owner(of caller: String) -> String? {
        caller.isEmpty ? nil : StreamToken.ownerTag(keyDigest: caller, secret: secret)
    }
}

extension Response {
    /// Adds the `x-ratelimit-*` headers of a keyed request's answer.
    mutating func addRateLimitHeaders(_ report: RateLimitReport?, admitted: Bool) {
        for (name, value) in report?.headers(admitted: admitted) ?? [] {
            headers[HTTPField.Name(name)!] = value
        }
    }
}

extension OpenAIError {
    /// The answer to a keyed request that is refused: the error, with the key's `x-ratelimit-*` headers (and, for a
    /// limit, `Retry-After` and `retry-after-ms`, which openai-python honours before its own back-off).
    static func refusal(_ admission: Admission, param: String) -> Response {
        var error: OpenAIError
        var retryAfter: Duration?
        switch admission.verdict {
        case .admitted, .invalidAPIKey:
            error = .invalidAPIKey
        case .maxTokens:
            error = .invalidRequest(
                "'\(param)' is above this API key's cap of \(admission.keyMaxTokens ?? 0) tokens.", param: param,
                code: "invalid_value")
        case .concurrency:
            error = OpenAIError(
                status: 429,
                message:
                    "This API key already has \(admission.keyMaxConcurrentTasks ?? 0) tasks queued or running, its "
                    + "cap (--max-concurrent-tasks). Please try again when one has finished.",
                type: "concurrency", code: "rate_limit_exceeded")
            retryAfter = .seconds(1)
            Counter(label: MetricName.rateLimitRejections.rawValue, dimensions: [("kind", error.type)]).increment()
        case .overloaded:
            error = .overloaded
            retryAfter = .seconds(1)
        case .requests, .tokensPerMinute, .tokensPerDay:
            (error, retryAfter) =
                admission.limits?.refusal(admission.verdict)
                ?? (
                    OpenAIError(
                        status: 429, message: "Rate limit reached.", type: "tokens", code: "rate_limit_exceeded"),
                    .seconds(1)
                )
            Counter(label: MetricName.rateLimitRejections.rawValue, dimensions: [("kind", error.type)]).increment()
        }
        var response = error.response
        response.addRateLimitHeaders(admission.limits, admitted: false)
        if let retryAfter {
            let milliseconds = Int(retryAfter.wholeMilliseconds)
            response.headers[.retryAfter] = "\(max((milliseconds + 999) / 1000, 1))"
            response.headers[.retryAfterMilliseconds] = "\(milliseconds)"
        }
        return response
    }
}
