import Foundation
import HTTPTypes
import HandoffHTTP
import HandoffRuntime
import HandoffStore
import HandoffWire
import Hummingbird
import PostgresNIO

/// The part of the hand-off every API that queues a task shares (chat completions, responses): reading the JSON
/// body, and admission — batched with other requests, or alone when the request carries an `Idempotency-Key` (it
/// needs its own answer: queued, or its first attempt's task) — with the answer to a refusal.
struct TaskAdmission: Sendable {
    let batcher: EnqueueBatcher
    let queue: TaskQueue
    let authentication: Authentication
    let maxBodyBytes: Int
    let idempotencyWindow: Duration
    /// `HANDOFF_RESERVE_MAX_TOKENS`: the most reply tokens one request reserves.
    let reservationCeiling: Int

    enum Outcome {
        /// `task` is queued (or, for a retry, was queued by the first attempt: then `counted` is false).
        case admitted(task: UUID, limits: RateLimitReport?, counted: Bool)
        /// Refused: the answer, with the key's headers.
        case refused(Response)
    }

    /// The JSON body, or the 4xx that says what is wrong with it.
    func body(of request: Request) async throws -> Data {
        guard let contentType = request.headers[.contentType], contentType.lowercased().hasPrefix("application/json")
        else {
            throw OpenAIError.unsupportedMediaType
        }
        do {
            return Data(buffer: try await request.body.collect(upTo: maxBodyBytes))
        } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            throw OpenAIError.bodyTooLarge(limit: maxBodyBytes)
        }
    }

    /// Reads and checks a request with `read`; a bad one is answered as OpenAI does — 401 if its key is not valid,
    /// else the error with the key's x-ratelimit headers. Only bad requests pay for this lookup; good ones get it
    /// with their admission.
    func checked<Value>(_ request: Request, _ read: () async throws -> Value) async throws -> Checked<Value> {
        do {
            return .valid(try await read())
        } catch let error as OpenAIError {
            var response = error.response
            response.addRateLimitHeaders(try await authentication.authenticate(request), admitted: false)
            return .answered(response)
        }
    }

    enum Checked<Value> {
        case valid(Value)
        case answered(Response)
    }

    /// Admits `submission` (reserving its tokens) and queues it, in one statement.
    /// Logs the task of an admitted request on the request's logger (which carries its `X-Request-Id`): the line that
    /// ties a request to its task.
    func admit(_ submission: TaskSubmission, request: Request, context: some RequestContext, maxTokensParam: String)
        async throws -> Outcome
    {
        let outcome: Outcome
        do {
            outcome = try await enqueue(submission, request: request, maxTokensParam: maxTokensParam)
        } catch let error as PSQLError where error.meansInvalidValue {
            // What the decoder accepts and jsonb does not (1e999999, "\ud800"). The batcher ran this request alone
            // before failing it, so its neighbours were queued.
            throw OpenAIError.invalidRequest(
                "The request holds a value that cannot be stored: a number out of range or an unpaired surrogate escape.",
                param: nil, code: "invalid_value")
        }
        if case .admitted(let task, _, let counted) = outcome {
            context.logger.info(counted ? "queued" : "idempotent retry", metadata: ["task": .task(task)])
        }
        return outcome
    }

    private func enqueue(_ submission: TaskSubmission, request: Request, maxTokensParam: String) async throws -> Outcome
    {
        let key = try IdempotencyKey(
            request.headers[.idempotencyKey], authorization: request.headers[.authorization])
        guard let key else {
            let admission = try await batcher.enqueue(submission)
            guard admission.verdict == .admitted else {
                return .refused(OpenAIError.refusal(admission, param: maxTokensParam))
            }
            return .admitted(task: submission.id, limits: admission.limits, counted: true)
        }
        let (outcome, admission) = try await queue.enqueue(submission, scope: key.scope, window: idempotencyWindow)
        switch outcome {
        case .queued:
            return .admitted(task: submission.id, limits: admission.limits, counted: true)
        case .existing(let first):
            return .admitted(task: first, limits: admission.limits, counted: false)
        case .keyReused:
            var response = IdempotencyKey.reused.response
            response.addRateLimitHeaders(admission.limits, admitted: false)
            return .refused(response)
        case .refused:
            return .refused(OpenAIError.refusal(admission, param: maxTokensParam))
        }
    }

    /// A stream token for `task`, bound to its creator's key, for the routes of `kind`.
    func token(for task: UUID, kind: StreamToken.Kind, caller: String, ttl: Duration) -> String {
        let expiresAt = Int64(Date().timeIntervalSince1970) + Int64(ttl.components.seconds)
        return StreamToken(taskID: task, expiresAt: expiresAt, owner: authentication.owner(of: caller), kind: kind)
            .encoded(secret: authentication.secret)
    }
}
