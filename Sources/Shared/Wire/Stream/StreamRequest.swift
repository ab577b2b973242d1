import Foundation

/// What a request to an SSE server asks for, checked before any I/O: the health probe, or a stream whose
/// token is valid for the task its path names (and whose owner is the request's API key, if it names one), with
/// the cursor it resumes from. Pure, over the request line and two headers, so it is fuzzed as it runs.
package enum StreamRequest: Equatable, Sendable {
    case health
    case readiness
    case metrics
    case stream(task: UUID, start: StreamCursor)
    /// A Responses task, rendered as Responses events (or, without `streaming`, as the Response once it ended);
    /// events up to `startingAfter` are left out.
    case responses(task: UUID, streaming: Bool, startingAfter: Int)

    /// `method` is the request's (`GET`); `header` looks a request header up by name.
    package init(method: String, uri: String, header: (String) -> String?, secret: StreamSecret) throws(OpenAIError) {
        let (path, query) = Self.split(uri)
        switch path {
        case OperationsRoute.health:
            self = .health
            return
        case OperationsRoute.readiness:
            self = .readiness
            return
        case OperationsRoute.metrics:
            self = .metrics
            return
        default: break
        }
        let chat = Self.task(in: path, under: StreamRoute.pathPrefix)
        let responses = Self.task(in: path, under: ResponsesRoute.ssePrefix)
        guard let task = chat ?? responses else {
            throw .notFound("Unknown URL. Streams live at the Location of POST /v1/chat/completions.")
        }
        // POST too: `curl -X POST -L` keeps the method (and body) across the 302, as many type it out of habit. The
        // URL's token is the capability; the body is ignored.
        guard method == "GET" || method == "POST" else {
            throw OpenAIError(
                status: 405, message: "Streams are read with GET (or POST).", type: "invalid_request_error",
                code: "method_not_allowed")
        }
        try StreamToken.authorize(
            query[StreamRoute.tokenParameter], taskID: task, kind: chat == nil ? .responses : .chat,
            authorization: header("Authorization"), secret: secret)
        guard chat == nil else {
            self = .stream(
                task: task, start: try Self.startCursor(header: header(StreamRoute.lastEventIDHeader), query: query))
            return
        }
        let after = query[ResponsesRoute.startingAfterParameter] ?? "-1"
        guard let startingAfter = ResponsesRoute.startingAfter(after) else {
            throw .invalidRequest("'\(after)' is not a sequence number.", param: ResponsesRoute.startingAfterParameter)
        }
        self = .responses(
            task: task, streaming: query[ResponsesRoute.streamParameter] == "true", startingAfter: startingAfter)
    }

    /// The route pattern for `handoff_http_requests_total`: never the path itself, which names a task.
    package var route: String {
        switch self {
        case .health: OperationsRoute.health
        case .readiness: OperationsRoute.readiness
        case .metrics: OperationsRoute.metrics
        case .stream: "\(StreamRoute.pathPrefix)/:id"
        case .responses: "\(ResponsesRoute.ssePrefix)/:id"
        }
    }

    private static func task(in path: String, under prefix: String) -> UUID? {
        guard path.hasPrefix(prefix + "/") else { return nil }
        return UUID(uuidString: String(path.dropFirst(prefix.count + 1)))
    }

    /// Where to start: `Last-Event-ID` (a reconnecting EventSource) or `last_event_id` (a first connect).
    private static func startCursor(header: String?, query: [String: String]) throws(OpenAIError) -> StreamCursor {
        guard let text = header ?? query[StreamRoute.lastEventIDParameter] else { return .start }
        guard let cursor = StreamCursor(eventID: text) else {
            throw .invalidRequest(
                "'\(text)' is not an event id of this stream.", param: StreamRoute.lastEventIDParameter)
        }
        return cursor
    }

    /// The path and the decoded query parameters of a request target (the first value of a repeated name wins).
    package static func split(_ uri: String) -> (path: String, query: [String: String]) {
        guard let mark = uri.firstIndex(of: "?") else { return (uri, [:]) }
        var query: [String: String] = [:]
        for pair in uri[uri.index(after: mark)...].split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let decode = { (text: Substring) in
                String(text).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(text)
            }
            let name = decode(parts[0])
            if query[name] == nil { query[name] = parts.count > 1 ? decode(parts[1]) : "" }
        }
        return (String(uri[..<mark]), query)
    }
}
