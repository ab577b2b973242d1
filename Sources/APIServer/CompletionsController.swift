import Foundation
import HTTPTypes
import HandoffHTTP
import HandoffWire
import Hummingbird

/// `POST /chat/completions` under `/api` and `/v1`: validate, enqueue, hand off.
///
/// The API server never streams. It stores the task (insert and NOTIFY in one statement) and answers
/// `302 Found` with a signed same-origin URL on the SSE servers; clients that follow redirects turn the POST
/// into a GET there.
struct CompletionsController: Sendable {
    let admission: TaskAdmission
    let validation: RequestValidation
    let tokenTTL: Duration

    func addRoutes(to router: Router<BasicRequestContext>) {
        for prefix in CompletionsRoute.prefixes {
            router.post("\(prefix)\(CompletionsRoute.path)") { request, context in
                try await create(request: request, context: context)
            }
        }
    }

    func create(request: Request, context: BasicRequestContext) async throws -> Response {
        let caller = try admission.authentication.caller(request)
        let submission: TaskSubmission
        switch try await admission.checked(
            request,
            {
                let json = try await admission.body(of: request)
                let chat = try validation.decode(json)
                return TaskSubmission(
                    id: UUID(), request: chat, body: String(decoding: json, as: UTF8.self), caller: caller,
                    tokenCap: validation.tokenCap(of: chat), reservationCeiling: admission.reservationCeiling)
            })
        {
        case .answered(let response): return response
        case .valid(let read): submission = read
        }
        let param = submission.request.maxCompletionTokens != nil ? "max_completion_tokens" : "max_tokens"
        switch try await admission.admit(submission, request: request, context: context, maxTokensParam: param) {
        case .refused(let response):
            return response
        case .admitted(let task, let limits, let counted):
            let location = StreamRoute.location(
                task: task, token: admission.token(for: task, kind: .chat, caller: caller, ttl: tokenTTL))
            // A small body for clients that do not follow redirects.
            let handoff = JSONValue.object([
                ("id", .string(ClaimedTask.completionID(for: task))),
                ("task_id", .string(task.uuidString.lowercased())),
                ("stream_url", .string(location)),
            ])
            var response = handoff.response(status: .found, headers: [.location: location])
            response.addRateLimitHeaders(limits, admitted: counted)
            return response
        }
    }
}
