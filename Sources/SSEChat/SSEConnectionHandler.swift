import HandoffRuntime
import HandoffWire
import Logging
import NIOCore
import NIOHTTP1

/// What every stream of this replica shares.
struct StreamEnvironment: Sendable {
    let notifier: StreamNotifier
    let reader: StreamReader
    let secret: StreamSecret
    let keepaliveInterval: TimeAmount
    /// Benchmarks only: prefix each minibatch with its commit stamp.
    let commitStamps: Bool
    /// Sent as `StreamRoute.replicaHeader`.
    let replica: String
    let operations: Operations
    let metrics: StreamMetrics
    let limits: ConnectionLimits
    let connections: ConnectionCount
    let abandoned: AbandonedTasks
    /// Logs one line per stream, naming its task: `grep <task>` across the processes' logs shows its whole life.
    let logger: Logger
}

/// Sent down every connection's pipeline when the replica starts draining, and again when its drain time is over.
enum DrainEvent {
    /// Idle connections close; streams run on.
    case started
    /// Streams still running are interrupted.
    case timeIsUp
}

/// One HTTP/1 connection to the SSE server: routes each request to the health probe, an error, or a
/// `StreamDelivery`, one request at a time.
///
/// A plain NIO handler rather than a Hummingbird route: an idle stream then costs its channel and two small
/// objects instead of a task, an async channel and a body writer (BENCHMARKS.md has the figures). A client that
/// hangs up closes the channel, which cancels its stream at once.
final class SSEConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let environment: StreamEnvironment
    /// Accepted past `HANDOFF_SSE_MAX_CONNECTIONS`: every request gets 503 and the connection closes.
    private let overLimit: Bool
    private var head: HTTPRequestHead?
    private var bodyBytes = 0
    private var stream: StreamDelivery?
    private var draining = false
    /// The route of the request being answered, for `handoff_http_requests_total`.
    private var route = "unmatched"

    init(environment: StreamEnvironment, overLimit: Bool = false) {
        self.environment = environment
        self.overLimit = overLimit
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            guard stream == nil else {
                // A request pipelined behind a stream that may never end: nothing sensible can answer it.
                context.close(promise: nil)
                return
            }
            context.pipeline.fireUserInboundEventTriggered(RequestCycle.headReceived)
            self.head = head
            bodyBytes = 0
        case .body(let part):
            guard let head else { return }
            bodyBytes += part.readableBytes
            if bodyBytes > environment.limits.maxRequestBodyBytes {
                // The body is never read: answer now, and close, so the rest of it is not waited for.
                self.head = nil
                draining = true
                send(.bodyTooLarge(limit: environment.limits.maxRequestBodyBytes), to: head, context: context)
            }
        case .end:
            guard let head else { return }
            self.head = nil
            respond(to: head, context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        stream?.cancel()
        stream = nil
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        stream?.wake()
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let event = event as? DrainEvent else { return context.fireUserInboundEventTriggered(event) }
        draining = true
        switch event {
        case .started:
            // An idle connection goes now; one that streams goes when its stream ends.
            if stream == nil { context.close(promise: nil) }
        case .timeIsUp:
            if let stream { stream.interrupt() } else { context.close(promise: nil) }
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        guard !overLimit else {
            draining = true  // this connection closes after its answer
            return send(.tooManyConnections, to: head, context: context, retryAfter: 1)
        }
        let request: StreamRequest
        do {
            request = try StreamRequest(head, secret: environment.secret)
        } catch {
            route = "unmatched"
            return send(error, to: head, context: context)
        }
        route = request.route
        switch request {
        case .health:
            if draining {
                send(.notReady(.draining), to: head, context: context)
            } else {
                send(
                    status: .ok, contentType: "text/plain", body: OperationsRoute.healthBody, to: head, context: context
                )
            }
        case .readiness:
            let full = environment.connections.current >= environment.limits.maxConnections
            if let problem = draining ? .draining : full ? .full : environment.operations.readiness.problem {
                send(.notReady(problem), to: head, context: context)
            } else {
                send(
                    status: .ok, contentType: "text/plain", body: OperationsRoute.readyBody, to: head, context: context)
            }
        case .metrics:
            if let text = environment.operations.metrics.render() {
                send(
                    status: .ok, contentType: MetricsExporter.contentType, body: String(decoding: text, as: UTF8.self),
                    to: head, context: context)
            } else {
                send(.notFound("Metrics are off (HANDOFF_METRICS=off)."), to: head, context: context)
            }
        case .stream(let task, let start):
            deliver(
                StreamDelivery.Request(task: task, start: start, form: .chat, followed: followed(head)), head: head,
                context: context)
        case .responses(let task, let streaming, let startingAfter):
            deliver(
                StreamDelivery.Request(
                    task: task, start: .start, form: .responses(streaming: streaming, startingAfter: startingAfter),
                    followed: followed(head)),
                head: head, context: context)
        }
    }

    private func followed(_ head: HTTPRequestHead) -> Bool {
        head.headers.first(name: StreamRoute.followedHeader) == "1"
    }

    private func deliver(_ request: StreamDelivery.Request, head: HTTPRequestHead, context: ChannelHandlerContext) {
        let stream = StreamDelivery(request, version: head.version, context: context, environment: environment) {
            [weak self] outcome in
            self?.environment.logger.info(
                "stream ended", metadata: ["task": .task(request.task), "outcome": "\(outcome.name)"])
            self?.streamFinished(outcome, head: head, context: context)
        }
        self.stream = stream
        stream.start()
    }

    private func streamFinished(
        _ outcome: StreamDelivery.Outcome, head: HTTPRequestHead, context: ChannelHandlerContext
    ) {
        stream = nil
        switch outcome {
        case .completed, .interrupted, .cancelled:
            environment.metrics.answered(route: route, method: head.method.rawValue, status: 200)
        case .refused, .answered:
            break  // counted by `send`
        }
        switch outcome {
        case .completed:
            if draining || !head.isKeepAlive {
                context.close(promise: nil)
            } else {
                context.pipeline.fireUserInboundEventTriggered(RequestCycle.responded)
            }
        case .interrupted:
            context.close(promise: nil)
        case .refused(let error):
            send(error, to: head, context: context)
        case .answered(let completion):
            send(status: .ok, contentType: "application/json", body: completion.text, to: head, context: context)
        case .cancelled:
            break
        }
    }

    private func send(
        _ error: OpenAIError, to head: HTTPRequestHead, context: ChannelHandlerContext, retryAfter: Int? = nil
    ) {
        send(
            status: HTTPResponseStatus(statusCode: error.status), contentType: "application/json",
            body: error.json.text, to: head,
            context: context, retryAfter: retryAfter)
    }

    private func send(
        status: HTTPResponseStatus, contentType: String, body: String, to head: HTTPRequestHead,
        context: ChannelHandlerContext,
        retryAfter: Int? = nil
    ) {
        environment.metrics.answered(route: route, method: head.method.rawValue, status: Int(status.code))
        let keepAlive = head.isKeepAlive && !draining
        var headers = HTTPHeaders([
            ("Content-Type", contentType), ("Content-Length", String(body.utf8.count)),
            (StreamRoute.replicaHeader, environment.replica),
        ])
        if let retryAfter { headers.add(name: "Retry-After", value: String(retryAfter)) }
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))),
            promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        let done = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: done)
        if !keepAlive {
            done.futureResult.whenComplete { [channel = context.channel] _ in channel.close(promise: nil) }
        } else {
            context.pipeline.fireUserInboundEventTriggered(RequestCycle.responded)
        }
    }
}
