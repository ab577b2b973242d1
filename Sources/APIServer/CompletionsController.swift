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
    let validation: RequestValidation
    let secret: StreamSecret
    let tokenTTL: Duration
    let maxBodyBytes: Int
    let idempotencyWindow: Duration

    func addRoutes(to router: Router<BasicRequestContext>) {
        for prefix in CompletionsRoute.prefixes {
            router.post("\(prefix)\(CompletionsRoute.path)") { request, context in
                try await create(request: request, context: context)
            }
        }
    }

    func create(request: Request, context: BasicRequestContext) async throws -> Response {
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
        let completion = try validation.decode(json)
        let text = String(decoding: json, as: UTF8.self)
        let key = try IdempotencyKey(
            request.headers[HTTPField.Name(IdempotencyKey.header)!], authorization: request.headers[.authorization])

        var task = UUID()
        if let key {
            // Not batched: a keyed request needs its own answer (queued, or the task of its first attempt).
            switch try await queue.enqueue(
                id: task, request: completion, body: text, scope: key.scope, window: idempotencyWindow)
            {
            case .queued: break
            case .existing(let first): task = first
            case .keyReused: throw IdempotencyKey.reused
            }
        } else {
            try await batcher.enqueue(id: task, request: completion, body: text)
        }
        let expiresAt = Int64(Date().timeIntervalSince1970) + Int64(tokenTTL.components.seconds)
        let token = StreamToken(taskID: task, expiresAt: expiresAt).encoded(secret: secret)
        let location = StreamRoute.location(task: task, token: token)
        context.logger.debug("queued", metadata: ["task": "\(task)"])

        // A small body for clients that do not follow redirects.
        let handoff = JSONValue.object([
            ("id", .string(ClaimedTask.completionID(for: task))), ("task_id", .string(task.uuidString.lowercased())),
            ("stream_url", .string(location)),
        ])
        return handoff.response(status: .found, headers: [.location: location])
    }
}
