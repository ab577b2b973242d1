import Foundation
import HandoffWire

/// An upstream server's failure, normalised to the OpenAI error a client sees, with what the failover needs:
/// whether another server may do better, and for how long this one is to be left alone.
///
/// Upstream errors come in several shapes — OpenAI's and vLLM's `{"error":{…,"code":<int or string>}}`, older
/// vLLM's flat `{"object":"error",…}`, llama.cpp's `{"error":{"code":400,"type":"exceed_context_size_error",
/// "n_ctx":…}}` (also in-band, as a stream event), plain-text pages from proxies. A client's error never carries
/// the upstream's URL, addresses, API key or a stack trace: messages keep their first line, with URLs and
/// addresses blanked, and plain-text bodies are not forwarded at all.
struct UpstreamFailure: Error {
    var error: OpenAIError
    /// Before the first token, another server (or this one later) may answer: connection failures, timeouts,
    /// 5xx, 429. A request the upstream refused as invalid (4xx) fails the same way everywhere.
    var retryable: Bool
    /// A 429's `Retry-After`: the server is passed over until then.
    var retryAfter: Duration? = nil

    static func unreachable() -> UpstreamFailure {
        UpstreamFailure(error: .upstreamUnavailable, retryable: true)
    }

    static func timeout(firstToken: Bool) -> UpstreamFailure {
        UpstreamFailure(
            error: .upstreamTimeout(
                firstToken
                    ? "The model's server did not start its reply in time."
                    : "The model's server stopped sending its reply."),
            retryable: true)
    }

    static func broken(_ message: String) -> UpstreamFailure {
        UpstreamFailure(error: .upstreamFailed(message), retryable: true)
    }

    /// The server's reply broke a bound of the catalogue (`max_line_bytes`, `max_reply_bytes`): not a server to
    /// read on, nor to try again for this request.
    static func oversized(_ bound: ServerSentEventDecoder.Oversized) -> UpstreamFailure {
        let message =
            switch bound {
            case .line(let limit): "The model's server sent a line or an event longer than \(limit) bytes."
            case .stream(let limit): "The model's server sent a reply longer than \(limit) bytes."
            }
        return UpstreamFailure(error: .upstreamFailed(message), retryable: false)
    }

    /// A non-200 answer; `body` is what came with it.
    static func rejected(status: Int, body: Data, retryAfter: Duration?, secrets: [String]) -> UpstreamFailure {
        let text = String(decoding: body, as: UTF8.self)
        let members = (try? JSONText.members(text[...])) ?? []
        // `{"error":{…}}`, or older vLLM's flat `{"object":"error","message":…}`.
        let error =
            members.first { $0.key == "error" }?.value ?? (members.contains { $0.key == "message" } ? text[...] : nil)
        var failure = reported(status: status, error: error, secrets: secrets)
        failure.retryAfter = retryAfter
        return failure
    }

    /// An error the upstream described: `error` is its error object (or message string), `status` the HTTP status
    /// when it came as an answer — in-band errors carry theirs in `code`, when at all.
    static func reported(status: Int?, error: Substring?, secrets: [String]) -> UpstreamFailure {
        let fields = Dictionary(((error.flatMap { try? JSONText.members($0) }) ?? []).map { ($0.key, $0.value) }) {
            first, _ in first
        }
        let message = (fields["message"].flatMap(JSONText.string) ?? error.flatMap(JSONText.string)).map {
            sanitise($0, secrets: secrets)
        }
        let type = fields["type"].flatMap(JSONText.string)
        let code = fields["code"].map { JSONText.string($0) ?? String($0) }
        let status = status ?? code.flatMap { Int($0) }.flatMap { (400...599).contains($0) ? $0 : nil } ?? 500

        if isContextOverflow(type: type, code: code, message: message) {
            let limit = fields["n_ctx"].flatMap { Int($0) }
            let prompt = fields["n_prompt_tokens"].flatMap { Int($0) }
            var text =
                limit.map { "This model's maximum context length is \($0) tokens" }
                ?? "The request does not fit the model's context window"
            if let prompt { text += ", but the request has \(prompt) prompt tokens" }
            text += ". Shorten the messages or lower max_tokens."
            if limit == nil, let message { text += " (\(message))" }
            return UpstreamFailure(
                error: OpenAIError(
                    status: 400, message: text, type: "invalid_request_error", param: "messages",
                    code: "context_length_exceeded"),
                retryable: false)
        }
        switch status {
        case 429:
            return UpstreamFailure(error: .upstreamOverloaded, retryable: true)
        case 401, 403:
            return UpstreamFailure(
                error: .upstreamFailed("The model's server refused this deployment's credentials."), retryable: true)
        case 408:
            return .timeout(firstToken: true)
        case 400..<500:
            let openAITypes: Set = [
                "invalid_request_error", "not_found_error", "permission_error", "authentication_error",
            ]
            return UpstreamFailure(
                error: OpenAIError(
                    status: status == 404 ? 404 : 400,
                    message: message ?? "The model's server refused the request (\(status)).",
                    type: type.flatMap { openAITypes.contains($0) ? $0 : nil } ?? "invalid_request_error",
                    param: fields["param"].flatMap(JSONText.string), code: code),
                retryable: false)
        default:
            let detail = message.map { ": \($0)" } ?? " (\(status))."
            return UpstreamFailure(error: .upstreamFailed("The model's server failed\(detail)"), retryable: true)
        }
    }

    private static func isContextOverflow(type: String?, code: String?, message: String?) -> Bool {
        if type == "exceed_context_size_error" || code == "context_length_exceeded" { return true }
        let text = message?.lowercased() ?? ""
        return ["maximum context length", "context size", "context window", "context length"].contains {
            text.contains($0)
        }
    }

    /// The first line, at most 300 characters, with URLs, network addresses and secrets blanked.
    static func sanitise(_ message: String, secrets: [String]) -> String {
        var text = String(message.split(whereSeparator: \.isNewline).first ?? "")
        for secret in secrets where !secret.isEmpty { text = text.replacingOccurrences(of: secret, with: "[redacted]") }
        for pattern in [
            #"[A-Za-z][A-Za-z0-9+.-]*://\S+"#, #"\b\d{1,3}(\.\d{1,3}){3}(:\d+)?\b"#, #"\[[0-9A-Fa-f:]+\](:\d+)?"#,
        ] {
            text = text.replacingOccurrences(of: pattern, with: "[address]", options: .regularExpression)
        }
        return text.count > 300 ? String(text.prefix(300)) + "…" : text
    }
}
