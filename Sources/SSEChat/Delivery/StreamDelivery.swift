import Foundation
import HandoffRuntime
import HandoffWire
import NIOCore
import NIOHTTP1

/// One client's stream, confined to its channel's event loop — the I/O around a `StreamDeliveryState`: a first read (which also finds out whether the
/// task exists), the response head, every event after the client's cursor, the live tail, and `[DONE]` — or, for
/// the Responses API, the same events rendered by a `ResponseRenderer` (from the first, so the rendering is the
/// same on every replica), those after `starting_after` sent, and no `[DONE]`.
///
/// It owns no task and no buffer: the notifier's wake-ups hop onto the event loop, and the stream writes what is
/// new from the notifier's cache or, when that does not cover the gap, asks the `StreamReader` for a table read.
/// A client that cannot keep up (its channel stops being writable) is passed over until it drains; its cursor
/// stays where it was and the table catches it up. A silent stream pings once half the keepalive interval
/// passed without a write, also while a read is stuck (Postgres down): the client still hears from us.
final class StreamDelivery {
    private let task: UUID
    private let form: Form
    private let followed: Bool
    private var state: StreamDeliveryState<ContinuousClock.Instant>
    /// A Responses stream's rendering, made once the first read found the task's settings.
    private var renderer: ResponseRenderer?
    /// What the stored events are rendered with, from the task's header the first read found.
    private var frame: ChunkFrame?
    private var cursor: StreamCursor
    /// When the client asked; its first event's delay is measured from here.
    private let opened = ContinuousClock.now
    private var sentFirstEvent = false
    private let version: HTTPVersion
    private let context: ChannelHandlerContext
    private let environment: StreamEnvironment
    private var subscription: Int?
    private let onFinish: (Outcome) -> Void
    /// A chat client that asked for no stream (`state.collecting`): its events, gathered until the end, answer as
    /// one `chat.completion`.
    private var collected: [String] = []
    /// How the events go out once the head is written: as chunks below the HTTP encoder, or (HTTP/1.0) through it.
    private var chunks: ChunkedBodyWriter?

    init(
        _ request: Request, version: HTTPVersion, context: ChannelHandlerContext, environment: StreamEnvironment,
        onFinish: @escaping (Outcome) -> Void
    ) {
        self.task = request.task
        self.form = request.form
        self.followed = request.followed
        self.cursor = request.start
        self.state = StreamDeliveryState(
            openedAt: .now, pingAfter: .nanoseconds(environment.keepaliveInterval.nanoseconds / 2))
        self.version = version
        self.context = context
        self.environment = environment
        self.onFinish = onFinish
    }

    /// Subscribes before the first read, so an append committed in between still wakes the stream. One task's
    /// streams on this replica are capped (`HANDOFF_SSE_MAX_STREAMS_PER_TASK`): its token alone must not open
    /// thousands of replays.
    func start() {
        let waker = StreamWaker(delivery: NIOLoopBound(self, eventLoop: context.eventLoop))
        guard
            let subscription = environment.notifier.subscribe(waker, to: task, limit: environment.limits.streamsPerTask)
        else {
            return finish(.refused(.tooManyStreams(limit: environment.limits.streamsPerTask)))
        }
        self.subscription = subscription
        environment.metrics.openStreams.increment()
        requestRead()
    }

    /// Something may be new, or a keepalive may be due.
    func wake() {
        let hasNews = environment.notifier.head(of: task) > cursor.sequence
        switch state.wake(at: .now, writable: context.channel.isWritable, hasNews: hasNews) {
        case .nothing:
            return
        case .ping:
            ping()
        case .catchUp:
            if let cached = environment.notifier.cachedBatches(of: task, after: cursor) {
                write(cached)
            } else {
                requestRead()
            }
        }
    }

    /// Ends the stream without writing anything more: the client left. One waiting for a single answer that was
    /// handed off by Caddy cannot come back for it, so its task is cancelled now rather than after the grace.
    func cancel() {
        if followed, state.collecting, state.phase != .finished { environment.abandoned.report(task) }
        finish(.cancelled)
    }

    /// Ends a stream whose task's key was revoked or has expired, as a failed completion ends: an error event and
    /// `[DONE]` (a Responses stream: its error event). A client waiting for one `chat.completion` gets the error.
    func ownerLapsed() {
        guard state.isOpen else { return }
        end(with: .ownerLapsed, done: true)
    }

    /// Ends a stream the replica cannot finish (its drain time is over) with an error event and no `[DONE]`:
    /// openai-python raises on it, and an EventSource reconnects (the event has no id, so `Last-Event-ID` still
    /// names the last event it got) and resumes on another replica. Closing without it would look like a clean
    /// end to clients behind Caddy 2.6, which ends its own response cleanly when an upstream's breaks off.
    func interrupt() {
        guard state.isOpen else { return finish(.cancelled) }
        end(with: .streamInterrupted, done: false)
    }

    /// Ends an open stream early with `error` as its last event (and `[DONE]` after it, for a chat stream that is
    /// over for good); a client waiting for one answer gets the error as that answer.
    private func end(with error: OpenAIError, done: Bool) {
        guard !state.collecting else { return finish(.refused(error)) }
        var buffer = context.channel.allocator.buffer(capacity: 256)
        if let renderer {
            buffer.writeString(renderer.errorEvent(error).frame)
        } else {
            buffer.writeString(ServerSentEvents.event(data: error.json.text))
            if done { buffer.writeString(ServerSentEvents.done) }
        }
        context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(buffer))), promise: nil)
        context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)), promise: nil)
        finish(.interrupted)
    }

    private func requestRead() {
        state.readStarted()
        let delivery = NIOLoopBound(self, eventLoop: context.eventLoop)
        environment.reader.read(
            .init(task: task, cursor: cursor, opening: state.phase == .opening) { result in
                delivery.eventLoop.execute { delivery.value.readCompleted(result) }
            })
    }

    private func readCompleted(_ result: Result<StreamCatchUp, any Error>) {
        switch state.readCompleted(result, cursor: cursor, chat: form == .chat) {
        case .refuse(let error):
            finish(.refused(error))
        case .openResponses(let catchUp):
            openResponses(catchUp)
        case .openChat(let catchUp):
            frame = catchUp.frame(of: task)
            if !state.collecting { writeHead() }
            write(catchUp.batches)
            wake()  // news that arrived during the read
        case .deliver(let catchUp):
            let before = cursor
            write(catchUp.batches)
            if cursor > before { wake() }  // a full page, or news that arrived during the read
        case .nothing:
            return  // a failed read is retried on the next wake-up (a notification, the poll, a tick)
        }
    }

    /// The first read of a Responses stream: its renderer, the head and the opening events, or the wait for the end.
    private func openResponses(_ catchUp: StreamCatchUp) {
        guard case .responses(let streaming, let startingAfter) = form, let stored = catchUp.response,
            let settings = try? ResponseSettings(stored: stored)
        else { return finish(.refused(.notFound("No such response stream."))) }
        var renderer = ResponseRenderer(task: task, created: catchUp.created, settings: settings)
        frame = catchUp.frame(of: task)
        let opening = renderer.opening()
        self.renderer = renderer
        if streaming {
            writeHead()
            var buffer = context.channel.allocator.buffer(capacity: 0)
            let sent = opening.filter { $0.sequenceNumber > startingAfter }
            for event in sent { buffer.writeString(event.frame) }
            context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(buffer))), promise: nil)
            countSent(sent.count)
        } else {
            state.collectInstead()
        }
        write(catchUp.batches)
        wake()
    }

    private func writeHead() {
        var headers = HTTPHeaders([
            ("Content-Type", ServerSentEvents.contentType), ("Cache-Control", "no-cache"), ("X-Accel-Buffering", "no"),
            (StreamRoute.replicaHeader, environment.replica),
        ])
        if version.major == 1 && version.minor == 0 { headers.add(name: "Connection", value: "close") }
        context.write(
            NIOAny(HTTPServerResponsePart.head(HTTPResponseHead(version: version, status: .ok, headers: headers))),
            promise: nil)
        chunks = ChunkedBodyWriter(pipeline: context.pipeline, version: version)
        state.wrote(at: .now)
    }

    private func write(_ batches: [StreamBatch]) {
        guard !state.collecting else { return collect(batches) }
        guard let frame else { return }  // not opened: nothing is written before the first read
        var buffer = context.channel.allocator.buffer(capacity: 0)
        chunks?.begin(&buffer)
        let written: StreamEventsWritten
        if case .responses(_, let startingAfter) = form, renderer != nil {
            written = buffer.writeResponseEvents(
                of: batches, after: &cursor, frame: frame, renderer: &renderer!, startingAfter: startingAfter)
        } else {
            written = buffer.writeEvents(
                of: batches, after: &cursor, frame: frame, commitStamps: environment.commitStamps)
        }
        if let chunks {
            if chunks.write(&buffer) { state.wrote(at: .now) }
        } else if buffer.readableBytes > 0 {
            context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(buffer))), promise: nil)
            state.wrote(at: .now)
        }
        if written.ended {
            context.write(NIOAny(HTTPServerResponsePart.end(nil)), promise: nil)
        }
        context.flush()
        countSent(written.events)
        if written.ended { finish(.completed) }
    }

    /// Gathers the events of a non-streaming client; at the end, answers its `chat.completion` (or its error), or
    /// its Response.
    private func collect(_ batches: [StreamBatch]) {
        guard let frame else { return }
        for batch in batches {
            for event in batch.events(after: cursor) {
                if renderer != nil {
                    _ = renderer?.render(frame.rendered(event.data), committed: batch.committedSeconds)
                } else {
                    collected.append(frame.rendered(event.data))
                }
                cursor = event.cursor
            }
            guard batch.final else { continue }
            if let renderer { return finish(.answered(renderer.response)) }
            switch ChatCompletion.assemble(collected) {
            case .success(let completion): finish(.answered(completion))
            case .failure(let error): finish(.refused(error))
            }
            return
        }
    }

    private func countSent(_ events: Int) {
        guard events > 0 else { return }
        environment.metrics.eventsSent.increment(by: events)
        if !sentFirstEvent {
            sentFirstEvent = true
            environment.metrics.firstEvent(form).record(duration: ContinuousClock.now - opened)
        }
    }

    private func ping() {
        context.writeAndFlush(
            NIOAny(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(string: ServerSentEvents.keepalive)))),
            promise: nil)
        environment.metrics.keepalives.increment()
        state.wrote(at: .now)
    }

    private func finish(_ outcome: Outcome) {
        guard state.finish() else { return }
        if let subscription {
            environment.notifier.unsubscribe(subscription, from: task)
            environment.metrics.openStreams.decrement()
        }
        subscription = nil
        onFinish(outcome)
    }
}
