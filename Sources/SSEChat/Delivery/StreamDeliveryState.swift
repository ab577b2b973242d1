import Foundation
import HandoffWire

/// One client's stream as a value: its phase, when it last wrote, and what each input asks of it — a wake-up, a
/// finished read, an end. `StreamDelivery` feeds it the channel's facts and the time, and does what it answers.
///
/// Phases: `opening` until the first read tells whether the task exists (nothing is written before); `streaming`
/// while events go out from the notifier's cache; `reading` while a table read catches the stream up (wake-ups then
/// only ping); `finished` once ended, whatever the reason.
struct StreamDeliveryState<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    enum Phase: Equatable { case opening, streaming, reading, finished }

    /// What a wake-up asks of the stream.
    enum WakeAction: Equatable {
        case nothing
        /// Write a keepalive: nothing was written for `pingAfter`.
        case ping
        /// Write what is new, from the notifier's cache or else a table read.
        case catchUp
    }

    /// What a finished read asks of the stream.
    enum ReadAction: Equatable {
        /// Answer with this error; nothing was written.
        case refuse(OpenAIError)
        /// The task exists and the client's cursor is in it: open a chat stream with these events (its head first,
        /// unless the client asked for one answer: then `collecting`).
        case openChat(StreamCatchUp)
        /// Open a Responses stream, whose renderer the shell makes from the stored settings.
        case openResponses(StreamCatchUp)
        /// Write these events; look again if they moved the cursor.
        case deliver(StreamCatchUp)
        /// Nothing: the read failed (the next wake-up retries) or the stream ended while it ran.
        case nothing
    }

    private(set) var phase = Phase.opening
    /// A client that asked for no stream: its events are gathered until the end, so it is never pinged.
    private(set) var collecting = false
    private var lastWrite: Instant
    /// How long a stream may stay silent before a wake-up pings it: half the keepalive interval, since the notifier
    /// ticks at half of it too.
    let pingAfter: Duration

    init(openedAt now: Instant, pingAfter: Duration) {
        self.lastWrite = now
        self.pingAfter = pingAfter
    }

    /// Streaming or reading: an end can still be written.
    var isOpen: Bool { phase == .streaming || phase == .reading }

    /// Something may be new (`hasNews`: the notifier's head is past the cursor), or a keepalive may be due. A client
    /// that cannot keep up (its channel is not writable) is passed over until it drains.
    func wake(at now: Instant, writable: Bool, hasNews: Bool) -> WakeAction {
        switch phase {
        case .opening, .finished:
            return .nothing
        case .reading:
            return pingDue(at: now) ? .ping : .nothing
        case .streaming:
            guard writable else { return .nothing }
            if hasNews { return .catchUp }
            return pingDue(at: now) ? .ping : .nothing
        }
    }

    func pingDue(at now: Instant) -> Bool {
        isOpen && !collecting && lastWrite.duration(to: now) >= pingAfter
    }

    mutating func wrote(at now: Instant) {
        lastWrite = now
    }

    /// A table read starts; an opening stays an opening.
    mutating func readStarted() {
        if phase == .streaming { phase = .reading }
    }

    /// The client asked for one answer at the end (a Responses client without `stream`).
    mutating func collectInstead() {
        collecting = true
    }

    /// A read finished. An opening read decides whether the stream is served: a missing task, a lapsed key, or a
    /// cursor past the task's end (an event id of another stream: a resume must not restart silently) is refused.
    mutating func readCompleted(_ result: Result<StreamCatchUp, any Error>, cursor: StreamCursor, chat: Bool)
        -> ReadAction
    {
        switch (phase, result) {
        case (.opening, .failure(let error)):
            return .refuse(OpenAIError(error))
        case (.opening, .success(let catchUp)):
            if !catchUp.exists { return .refuse(.notFound("No such completion stream.")) }
            if catchUp.ownerLapsed { return .refuse(.ownerLapsed) }
            if chat, cursor.sequence > catchUp.head {
                return .refuse(
                    .invalidRequest(
                        "Event id \(cursor.sequence) is past the end of this stream (its last event is \(catchUp.head)): it belongs to another stream.",
                        param: StreamRoute.lastEventIDParameter, code: "invalid_event_id"))
            }
            phase = .streaming
            guard chat else { return .openResponses(catchUp) }
            collecting = !catchUp.streaming
            return .openChat(catchUp)
        case (.reading, .failure):
            phase = .streaming
            return .nothing
        case (.reading, .success(let catchUp)):
            phase = .streaming
            return .deliver(catchUp)
        case (.streaming, _), (.finished, _):
            return .nothing
        }
    }

    /// Ends the stream; false when it had ended already.
    mutating func finish() -> Bool {
        guard phase != .finished else { return false }
        phase = .finished
        return true
    }
}
