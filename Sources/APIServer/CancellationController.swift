import Foundation
import HTTPTypes
import HandoffHTTP
import HandoffStore
import HandoffWire
import Hummingbird

/// `POST /api|/v1/chat/completions/<id>/cancel`: the owner of a completion — whoever holds its stream token, and,
/// when the request names an API key, only the key that created it — stops it. The API only marks the task and notifies; the worker running it stops within a minibatch window and
/// ends the stream with `finish_reason: "cancelled"`, its usage so far, and `[DONE]`.
struct CancellationController: Sendable {
    let queue: TaskQueue
    let authentication: Authentication
    let secret: StreamSecret

    func addRoutes(to router: Router<BasicRequestContext>) {
        for prefix in CompletionsRoute.prefixes {
            router.post("\(prefix)\(CompletionsRoute.path)/:id\(CompletionsRoute.cancelSuffix)") { request, context in
                try await cancel(request: request, context: context)
            }
        }
    }

    func cancel(request: Request, context: BasicRequestContext) async throws -> Response {
        let standing = try await authentication.authenticate(request)
        let id = context.parameters.get("id") ?? ""
        guard let task = ClaimedTask.taskID(fromCompletionID: id) else {
            throw OpenAIError.notFound("No completion has the id '\(id)'.")
        }
        let token =
            request.uri.queryParameters.get(StreamRoute.tokenParameter).map { String($0) }
            ?? request.headers[.streamToken]
        try StreamToken.authorize(token, taskID: task, authorization: request.headers[.authorization], secret: secret)
        let status = try await queue.requestCancel(task)
        guard let status else { throw OpenAIError.notFound("No completion has the id '\(id)'.") }
        guard !status.isTerminal else {
            throw OpenAIError(
                status: 409, message: "The completion already ended (\(status.rawValue)); there is nothing to cancel.",
                type: "invalid_request_error", code: "completion_ended")
        }
        let body = JSONValue.object([
            ("id", .string(ClaimedTask.completionID(for: task))), ("object", .string("chat.completion.cancellation")),
            ("task_id", .string(task.uuidString.lowercased())), ("status", .string("cancelling")),
        ])
        var response = body.response()
        response.addRateLimitHeaders(standing, admitted: false)
        return response
    }
}
