import Foundation
import HTTPTypes
import Hummingbird
import Shared

/// `POST /chat/completions` under `/api` and `/v1`: validate, enqueue, hand off.
///
/// The API server never streams. It stores the task (insert and NOTIFY in one statement) and answers
/// `302 Found` with a signed same-origin URL on the SSE servers; clients that follow redirects turn the POST
/// into a GET there.
struct CompletionsController: Sendable {
    let batcher: EnqueueBatcher
    let queue: TaskQueue
    let authentication: Authentication
    let validation: RequestValidation
    let secret: StreamSecret
    let tokenTTL: Duration
    let maxBodyBytes: Int
    let idempotencyWindow: Duration
    /// `HANDOFF_RESERVE_MAX_TOKENS`: the most reply tokens one request reserves.
    let reservationCeiling: Int

    func addRoutes(to router: Router<BasicRequestContext>) {
        for prefix in CompletionsRoute.prefixes {
            router.post("\(prefix)\(CompletionsRoute.path)") { request, context in
                try await create(request: request, context: context)
            }
        }
    }

    func create(request: Request, context: BasicRequestContext) async throws -> Response {
        let caller = try authentication.caller(request)
        let submission: TaskSubmission
        let key: IdempotencyKey?
        do {
            (submission, key) = try await read(request, caller: caller)
        } catch let error as OpenAIError {
            // A bad request with a key is answered as OpenAI does: 401 if the key is not valid, else the error with the
            // key's x-ratelimit headers. Only bad requests pay for this lookup; good ones get it with their admission.
            var response = error.response
            response.addRateLimitHeaders(try await authentication.authenticate(request), admitted: false)
            return response
        }
        let completion = submission.request

        // Admission, reservation and the task go to Postgres in one statement: batched with other requests, or
        // alone when the request carries an Idempotency-Key (it needs its own answer: queued, or its first attempt's task).
        var task = submission.id
        let admission: Admission
        var counted = true
        if let key {
            let (outcome, result) = try await queue.enqueue(submission, scope: key.scope, window: idempotencyWindow)
            admission = result
            switch outcome {
            case .queued, .refused: break
            case .existing(let first):
                task = first
                counted = false
            case .keyReused:
                var response = IdempotencyKey.reused.response
                response.addRateLimitHeaders(admission.limits, admitted: false)
                return response
            }
        } else {
            admission = try await batcher.enqueue(submission)
        }
        guard admission.verdict == .admitted || !counted else {
            return OpenAIError.refusal(admission, param: completion.maxCompletionTokens != nil ? "max_completion_tokens" : "max_tokens")
        }
        let expiresAt = Int64(Date().timeIntervalSince1970) + Int64(tokenTTL.components.seconds)
        let token = StreamToken(taskID: task, expiresAt: expiresAt, owner: authentication.owner(of: caller)).encoded(secret: secret)
        let location = StreamRoute.location(task: task, token: token)
        context.logger.debug("queued", metadata: ["task": "\(task)"])

        // A small body for clients that do not follow redirects.
        let handoff = JSONValue.object([
            ("id", .string(ClaimedTask.completionID(for: task))), ("task_id", .string(task.uuidString.lowercased())),
            ("stream_url", .string(location)),
        ])
        var response = handoff.response(status: .found, headers: [.location: location])
        response.addRateLimitHeaders(admission.limits, admitted: counted)
        return response
    }

    /// The request's submission and Idempotency-Key, or the 4xx that says what is wrong with it.
    private func read(_ request: Request, caller: String) async throws -> (TaskSubmission, IdempotencyKey?) {
        guard let contentType = request.headers[.contentType], contentType.lowercased().hasPrefix("application/json") else {
            throw OpenAIError.unsupportedMediaType
        }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: maxBodyBytes)
        } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            throw OpenAIError.bodyTooLarge(limit: maxBodyBytes)
        }
        let json = Data(buffer: body)
        let submission = TaskSubmission(
            id: UUID(), request: try validation.decode(json), body: String(decoding: json, as: UTF8.self), caller: caller,
            reservationCeiling: reservationCeiling)
        let key = try IdempotencyKey(
            request.headers[HTTPField.Name(IdempotencyKey.header)!], authorization: request.headers[.authorization])
        return (submission, key)
    }
}
