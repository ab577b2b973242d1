import Foundation
import HTTPTypes
import HandoffHTTP
import HandoffStore
import HandoffWire
import Hummingbird

/// The Responses API under `/v1` and `/api`: `POST /responses` queues a task like a chat completion (and hands off
/// to the SSE server, or answers `queued` at once in background mode); `GET /responses/<id>` answers the Response
/// as it stands, or hands off to its event stream; `POST …/cancel` and `DELETE` act on the task.
///
/// A Response belongs to the key that created it: to any other key it does not exist (404, as OpenAI answers).
struct ResponsesController: Sendable {
    let admission: TaskAdmission
    let validation: RequestValidation
    let log: StreamLog
    let tokenTTL: Duration

    private var queue: TaskQueue { admission.queue }
    private var authentication: Authentication { admission.authentication }

    func addRoutes(to router: Router<BasicRequestContext>) {
        for prefix in CompletionsRoute.prefixes {
            let path = "\(prefix)\(ResponsesRoute.path)"
            router.post(RouterPath(path)) { request, context in try await create(request, context: context) }
            router.get(RouterPath("\(path)/:id")) { request, context in
                try await retrieve(request, id: context.parameters.get("id") ?? "")
            }
            router.post(RouterPath("\(path)/:id\(ResponsesRoute.cancelSuffix)")) { request, context in
                try await cancel(request, id: context.parameters.get("id") ?? "")
            }
            router.delete(RouterPath("\(path)/:id")) { request, context in
                try await delete(request, id: context.parameters.get("id") ?? "")
            }
        }
    }

    func create(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let caller = try authentication.caller(request)
        let responses: ResponsesRequest
        switch try await admission.checked(
            request, { try ResponsesRequest(try await admission.body(of: request), validation: validation) })
        {
        case .answered(let response): return response
        case .valid(let read): responses = read
        }
        let submission = TaskSubmission(
            id: UUID(), request: responses.chat, body: responses.chatBody, caller: caller,
            tokenCap: validation.tokenCap(of: responses.chat), reservationCeiling: admission.reservationCeiling,
            response: responses.settings.stored)
        switch try await admission.admit(
            submission, request: request, context: context, maxTokensParam: "max_output_tokens")
        {
        case .refused(let response):
            return response
        case .admitted(let task, let limits, let counted):
            var response: Response
            if responses.settings.background, !responses.stream {
                // Background without a stream: the Response, queued, at once; the client polls or streams it later.
                response = ResponseRenderer(
                    task: task, created: Int64(Date().timeIntervalSince1970), settings: responses.settings
                )
                .response.response()
            } else {
                response = handoff(task, caller: caller, stream: responses.stream, startingAfter: nil)
            }
            response.addRateLimitHeaders(limits, admitted: counted)
            return response
        }
    }

    /// `GET …/responses/<id>`: the Response as it stands, or (`?stream=true`) a hand-off to its events after
    /// `starting_after`.
    func retrieve(_ request: Request, id: String) async throws -> Response {
        let (task, record, standing) = try await owned(request, id: id)
        let query = request.uri.queryParameters
        var response: Response
        if query.get(ResponsesRoute.streamParameter) == "true" {
            var startingAfter: Int?
            if let text = query.get(ResponsesRoute.startingAfterParameter) {
                guard let value = ResponsesRoute.startingAfter(text) else {
                    throw OpenAIError.invalidRequest(
                        "'starting_after' must be a sequence number.", param: ResponsesRoute.startingAfterParameter)
                }
                startingAfter = value
            }
            response = handoff(
                task, caller: try authentication.caller(request), stream: true, startingAfter: startingAfter)
        } else {
            response = Self.current(try await rendered(task, record), status: record.status).response()
        }
        response.addRateLimitHeaders(standing, admitted: false)
        return response
    }

    /// `POST …/responses/<id>/cancel`: only a background response can be cancelled; one that already ended is
    /// answered as it is.
    func cancel(_ request: Request, id: String) async throws -> Response {
        let (task, record, standing) = try await owned(request, id: id)
        guard record.settings.background else {
            throw OpenAIError.invalidRequest(
                "Only a response created with 'background': true can be cancelled.", param: nil)
        }
        // Marked before it is read: a worker that ends the task in between only makes the answer say how it ended.
        let status = try await queue.requestCancel(task) ?? record.status
        let json = Self.current(try await rendered(task, record), status: status.isTerminal ? status : .cancelled)
        var response = json.response()
        response.addRateLimitHeaders(standing, admitted: false)
        return response
    }

    func delete(_ request: Request, id: String) async throws -> Response {
        let (task, _, standing) = try await owned(request, id: id)
        guard try await queue.delete(task) else { throw Self.notFound(id) }
        var response = JSONValue.object([
            ("id", .string(ResponseID.response(for: task))), ("object", .string("response")), ("deleted", .bool(true)),
        ]).response()
        response.addRateLimitHeaders(standing, admitted: false)
        return response
    }

    /// The caller's Responses task `id`: 401 without a valid key (auth on), 404 when there is none or another key
    /// owns it.
    private func owned(_ request: Request, id: String) async throws -> (
        UUID, TaskQueue.ResponseRecord, RateLimitReport?
    ) {
        let standing = try await authentication.authenticate(request)
        guard let task = ResponseID.task(from: id), let record = try await queue.responseRecord(task) else {
            throw Self.notFound(id)
        }
        if let owner = record.ownerDigest, authentication.mode == .required, try authentication.caller(request) != owner
        {
            throw Self.notFound(id)
        }
        return (task, record, standing)
    }

    /// Every event the task has streamed so far, rendered.
    private func rendered(_ task: UUID, _ record: TaskQueue.ResponseRecord) async throws -> ResponseRenderer {
        var renderer = ResponseRenderer(task: task, created: record.created, settings: record.settings)
        _ = renderer.opening()
        // Read as an opening: its header is what the stored events are rendered with.
        guard let catchUp = try await log.catchUp([(task, .start, true)], pageSize: Int(Int32.max)).first else {
            return renderer
        }
        let frame = catchUp.frame(of: task)
        for batch in catchUp.batches {
            for event in batch.events(after: .start) {
                _ = renderer.render(frame.rendered(event.data), committed: batch.committedSeconds)
            }
        }
        return renderer
    }

    /// The Response as it stands: its stream says how it ended; before the end, the task's status says where it is.
    private static func current(_ renderer: ResponseRenderer, status: TaskStatus) -> JSONValue {
        guard !renderer.ended else { return renderer.response }
        switch status {
        case .queued: return renderer.response(status: .queued)
        case .cancelled: return renderer.response(status: .cancelled)
        default: return renderer.response(status: .inProgress)
        }
    }

    private func handoff(_ task: UUID, caller: String, stream: Bool, startingAfter: Int?) -> Response {
        let location = ResponsesRoute.location(
            task: task, token: admission.token(for: task, kind: .responses, caller: caller, ttl: tokenTTL),
            stream: stream, startingAfter: startingAfter)
        return JSONValue.object([("id", .string(ResponseID.response(for: task))), ("stream_url", .string(location))])
            .response(status: .found, headers: [.location: location])
    }

    private static func notFound(_ id: String) -> OpenAIError {
        OpenAIError(
            status: 404, message: "No response has the id '\(id)'.", type: "invalid_request_error",
            param: "response_id", code: "not_found")
    }
}
