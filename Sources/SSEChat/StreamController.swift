import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Shared

/// `GET /sse/chat/completions/<task>?token=…`: checks the token and the task, then streams.
struct StreamController: Sendable {
    let queue: TaskQueue
    let log: StreamLog
    let notifier: StreamNotifier
    let secret: StreamSecret
    let keepaliveInterval: Duration
    let databaseTimeout: Duration
    let commitStamps: Bool
    /// Sent as `StreamRoute.replicaHeader`.
    let replica: String

    func addRoutes(to router: Router<BasicRequestContext>) {
        router.get("\(StreamRoute.pathPrefix)/:task") { request, context in
            try await stream(request: request, context: context)
        }
    }

    func stream(request: Request, context: BasicRequestContext) async throws -> Response {
        guard let task = context.parameters.get("task", as: UUID.self) else {
            throw OpenAIError.notFound("No such completion stream.")
        }
        try authorize(request, task: task)
        let start = try startCursor(request)
        let status = try await withDeadline(databaseTimeout) { [queue] in try await queue.status(of: task) }
        guard status != nil else { throw OpenAIError.notFound("No such completion stream.") }

        let session = StreamSession(
            task: task, start: start, notifier: notifier, log: log, keepaliveInterval: keepaliveInterval,
            commitStamps: commitStamps, logger: context.logger)
        return Response(
            status: .ok,
            headers: [
                .contentType: ServerSentEvents.contentType, .cacheControl: "no-cache",
                HTTPField.Name("X-Accel-Buffering")!: "no", HTTPField.Name(StreamRoute.replicaHeader)!: replica,
            ],
            body: ResponseBody { [notifier] writer in
                let subscription = notifier.subscribe(to: task)
                defer { notifier.unsubscribe(subscription) }
                // Ends the session the moment the client hangs up, not at its next write. A callback rather than
                // consumeWithCancellationOnInboundClose: its task group costs ~15 KiB per idle stream (measured).
                try await request.body.consumeWithInboundCloseHandler { _ in
                    try await session.run(subscription, writer: &writer)
                } onInboundClosed: {
                    notifier.unsubscribe(subscription)
                }
                try await writer.finish(nil)
            })
    }

    private func authorize(_ request: Request, task: UUID) throws(OpenAIError) {
        do {
            _ = try StreamToken.verify(request.uri.queryParameters.get(StreamRoute.tokenParameter), taskID: task, secret: secret)
        } catch .missing {
            throw .unauthorized("A stream token is required: follow the Location of POST /v1/chat/completions.")
        } catch .expired {
            throw .unauthorized("The stream token has expired.")
        } catch {
            throw .forbidden("The stream token is not valid for this completion.")
        }
    }

    /// Where to start: `Last-Event-ID` (a reconnecting EventSource) or `last_event_id` (a first connect).
    private func startCursor(_ request: Request) throws(OpenAIError) -> StreamCursor {
        let header = request.headers[HTTPField.Name(StreamRoute.lastEventIDHeader)!]
        guard let text = header ?? request.uri.queryParameters.get(StreamRoute.lastEventIDParameter) else { return .start }
        guard let cursor = StreamCursor(eventID: text) else {
            throw .invalidRequest("'\(text)' is not an event id of this stream.", param: StreamRoute.lastEventIDParameter)
        }
        return cursor
    }
}
