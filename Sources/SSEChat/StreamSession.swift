import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import Shared

/// One client's stream: everything after its cursor from the table, then the live tail, then `[DONE]`.
///
/// Its subscription exists before its first read, so an append committed in between still wakes it. It reads only
/// when the notifier knows of news, and otherwise answers keepalive ticks with a ping once it has been
/// silent for half the keepalive interval. A failed read is not the end of the stream: the next wake-up
/// (a notification, the poll, a reconnect, a tick) tries again.
struct StreamSession: Sendable {
    let task: UUID
    let start: StreamCursor
    let notifier: StreamNotifier
    let log: StreamLog
    let keepaliveInterval: Duration
    /// Benchmarks only: prefix each minibatch with its commit stamp.
    var commitStamps = false
    let logger: Logger

    /// Streams until `[DONE]`. Ends early, by throwing, when `subscription` is cancelled (the client left) or
    /// the server shuts down.
    func run(_ subscription: StreamNotifier.Subscription, writer: inout any ResponseBodyWriter) async throws {
        let clock = ContinuousClock()
        var cursor = start
        var lastWrite = clock.now
        if try await deliver(after: &cursor, to: &writer) { return }
        try await withGracefulShutdownHandler {
            for await _ in subscription.signals {
                if notifier.head(of: task) > cursor.sequence {
                    let before = cursor
                    if try await deliver(after: &cursor, to: &writer) { return }
                    if cursor != before { lastWrite = clock.now }
                }
                if clock.now - lastWrite >= keepaliveInterval / 2 {
                    try await writer.write(ByteBuffer(string: ServerSentEvents.keepalive))
                    lastWrite = clock.now
                }
            }
            // The signals end when the client left or the server shuts down. Abort rather than end cleanly: a
            // clean end without [DONE] looks like a complete reply to clients that do not resume.
            throw StreamSessionError.interrupted
        } onGracefulShutdown: {
            notifier.unsubscribe(subscription)
        }
    }

    /// Writes every committed event after `cursor` and moves it; `true` once the stream's end was written.
    /// The notifier's cache serves the common case (a client keeping up); the table serves the rest.
    private func deliver(after cursor: inout StreamCursor, to writer: inout any ResponseBodyWriter) async throws -> Bool {
        if let cached = notifier.cachedBatches(of: task, after: cursor) {
            return try await write(cached, after: &cursor, to: &writer)
        }
        let pageSize = 500
        while true {
            let batches: [StreamBatch]
            do {
                batches = try await log.read(task: task, after: cursor, limit: pageSize)
            } catch {
                logger.warning("stream read failed; will retry", metadata: ["task": "\(task)", "error": "\(String(reflecting: error))"])
                return false
            }
            guard !batches.isEmpty else { return false }
            let ended = try await write(batches, after: &cursor, to: &writer)
            if ended || batches.count < pageSize { return ended }
        }
    }

    /// Writes the events of `batches` after `cursor` in one buffer; `true` when that included the end.
    private func write(_ batches: [StreamBatch], after cursor: inout StreamCursor, to writer: inout any ResponseBodyWriter) async throws -> Bool {
        var buffer = ByteBuffer()
        var ended = false
        for batch in batches where !ended {
            if commitStamps, let committed = batch.committedAtMicroseconds, batch.sequence > cursor.sequence {
                buffer.writeString(ServerSentEvents.commitStamp(microseconds: committed))
            }
            for event in batch.events(after: cursor) {
                buffer.writeString(ServerSentEvents.event(id: event.cursor, data: event.data))
                cursor = event.cursor
            }
            ended = batch.final
        }
        if ended { buffer.writeString(ServerSentEvents.done) }
        if buffer.readableBytes > 0 { try await writer.write(buffer) }
        return ended
    }
}

enum StreamSessionError: Error {
    case interrupted
}
