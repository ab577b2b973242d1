/// OpenAI's error envelope, `{"error":{"message","type","param","code"}}`, with the HTTP status it travels with.
///
/// Every error any Handoff process sends — as a response body or as an SSE `data:` event — is one of these.
package struct OpenAIError: Error, Sendable, Equatable, Decodable {
    package var status: Int
    package var message: String
    package var type: String
    package var param: String?
    package var code: String?

    package init(status: Int, message: String, type: String, param: String? = nil, code: String? = nil) {
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
    }

    package static func invalidRequest(_ message: String, param: String?, code: String? = nil) -> OpenAIError {
        OpenAIError(status: 400, message: message, type: "invalid_request_error", param: param, code: code)
    }

    package static func modelNotFound(_ model: String) -> OpenAIError {
        OpenAIError(
            status: 404, message: "The model `\(model)` does not exist or you do not have access to it.",
            type: "invalid_request_error", param: "model", code: "model_not_found")
    }

    package static func notFound(_ message: String) -> OpenAIError {
        OpenAIError(status: 404, message: message, type: "invalid_request_error", code: "not_found")
    }

    package static func bodyTooLarge(limit: Int) -> OpenAIError {
        OpenAIError(
            status: 413, message: "The request body is larger than \(limit) bytes.", type: "invalid_request_error",
            code: "request_too_large")
    }

    package static let unsupportedMediaType = OpenAIError(
        status: 415, message: "The request body must be JSON: send 'Content-Type: application/json'.",
        type: "invalid_request_error", code: "unsupported_media_type")

    package static func unauthorized(_ message: String) -> OpenAIError {
        OpenAIError(status: 401, message: message, type: "authentication_error", code: "invalid_stream_token")
    }

    /// Every API request without a valid key — none, malformed, unknown, revoked or expired — gets this same answer,
    /// so it tells nobody which keys exist.
    package static let invalidAPIKey = OpenAIError(
        status: 401,
        message:
            "Incorrect or missing API key. Send 'Authorization: Bearer <key>' with a key made by 'handoff-api keys create'.",
        type: "invalid_request_error", code: "invalid_api_key")

    package static func forbidden(_ message: String) -> OpenAIError {
        OpenAIError(status: 403, message: message, type: "permission_error", code: "invalid_stream_token")
    }

    package static let databaseUnavailable = OpenAIError(
        status: 503,
        message: "The service is temporarily unavailable: its database did not answer in time. Retry shortly.",
        type: "server_error", code: "service_unavailable")

    /// The queue holds `HANDOFF_MAX_QUEUED` tasks: refused before anything is stored.
    package static let overloaded = OpenAIError(
        status: 503, message: "The service is overloaded: its queue is full. Please try again shortly.",
        type: "server_error",
        code: "overloaded")

    /// The key that created a task was revoked or has expired: its stream is no longer served, open or not.
    package static let ownerLapsed = OpenAIError(
        status: 401, message: "The API key that created this completion has been revoked or has expired.",
        type: "invalid_request_error", code: "invalid_api_key")

    /// One task's streams on one SSE replica are capped: a token alone must not open any number of replays.
    package static func tooManyStreams(limit: Int) -> OpenAIError {
        OpenAIError(
            status: 429, message: "This completion already has \(limit) open streams here; close one first.",
            type: "requests", code: "too_many_streams")
    }

    /// An SSE replica at its connection cap: the client retries, and Caddy sends new streams elsewhere.
    package static let tooManyConnections = OpenAIError(
        status: 503, message: "This stream server holds as many connections as it may. Retry shortly.",
        type: "server_error", code: "overloaded")

    /// Ends the stream of a task whose worker stopped renewing its lease after streaming part of the reply.
    package static let workerLost = OpenAIError(
        status: 500,
        message: "The worker generating this completion stopped; the reply is incomplete. Retry the request.",
        type: "server_error", code: "worker_lost")

    /// Ends the stream of a task whose worker shut down before finishing it, after streaming part of the reply.
    package static let workerShutdown = OpenAIError(
        status: 503,
        message: "The worker generating this completion shut down; the reply is incomplete. Retry the request.",
        type: "server_error", code: "worker_shutdown")

    /// Sent by an SSE replica that stops a stream it cannot finish (its drain time is over). The completion goes
    /// on: a client that reconnects with `Last-Event-ID` resumes where it was.
    package static let streamInterrupted = OpenAIError(
        status: 503,
        message: "This stream's server is shutting down. Reconnect with Last-Event-ID to resume where you left off.",
        type: "server_error", code: "stream_interrupted")

    /// No upstream server of the model could be reached (connection refused, or none left to try).
    package static let upstreamUnavailable = OpenAIError(
        status: 503, message: "The model's server could not be reached. Retry shortly.", type: "server_error",
        code: "upstream_unavailable")

    /// Every upstream server of the model is over its rate limit.
    package static let upstreamOverloaded = OpenAIError(
        status: 503, message: "The model's servers are overloaded. Retry shortly.", type: "server_error",
        code: "upstream_overloaded")

    /// The upstream server failed; `message` says how, in words safe for a client (no URL, key or trace).
    package static func upstreamFailed(_ message: String) -> OpenAIError {
        OpenAIError(status: 502, message: message, type: "server_error", code: "upstream_error")
    }

    /// The upstream server went silent: no first token, or no next one, in time.
    package static func upstreamTimeout(_ message: String) -> OpenAIError {
        OpenAIError(status: 504, message: message, type: "server_error", code: "upstream_timeout")
    }

    /// The HTTP status of an error that travelled in-band (as a stream event, which has none): known codes keep
    /// their own, the rest follow their type.
    package static func status(code: String?, type: String) -> Int {
        let known: [OpenAIError] = [
            .workerLost, .workerShutdown, .streamInterrupted, .modelNotFound(""), .upstreamUnavailable,
            .upstreamOverloaded, .upstreamFailed(""), .upstreamTimeout(""),
        ]
        if let status = known.first(where: { $0.code == code })?.status { return status }
        switch type {
        case "server_error": return 500
        case "not_found_error": return 404
        default: return 400
        }
    }

    package static func server(_ message: String) -> OpenAIError {
        OpenAIError(status: 500, message: message, type: "server_error", code: "internal_error")
    }

    // MARK: JSON — the status is transport, not part of the body.

    private enum EnvelopeKeys: String, CodingKey { case error }
    private enum BodyKeys: String, CodingKey { case message, type, param, code }

    package init(from decoder: any Decoder) throws {
        let body = try decoder.container(keyedBy: EnvelopeKeys.self).nestedContainer(
            keyedBy: BodyKeys.self, forKey: .error)
        self.status = 0
        self.message = try body.decode(String.self, forKey: .message)
        self.type = try body.decode(String.self, forKey: .type)
        self.param = try body.decodeIfPresent(String.self, forKey: .param)
        self.code = try body.decodeIfPresent(String.self, forKey: .code)
    }

    /// `{"error":{"message","type","param","code"}}`, in that order, nulls included.
    package var json: JSONValue {
        .object([
            (
                "error",
                .object([
                    ("message", .string(message)), ("type", .string(type)), ("param", .optional(param)),
                    ("code", .optional(code)),
                ])
            )
        ])
    }

    package static func == (lhs: OpenAIError, rhs: OpenAIError) -> Bool {
        lhs.message == rhs.message && lhs.type == rhs.type && lhs.param == rhs.param && lhs.code == rhs.code
    }
}
