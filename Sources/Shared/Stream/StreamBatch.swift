import Foundation

/// One row of the minibatch stream: consecutive events of one task, committed together.
///
/// Events are stored newline-delimited (compact JSON has no raw newline), so the SSE server splits a row
/// into events without parsing JSON.
public struct StreamBatch: Sendable, Equatable {
    public let task: UUID
    /// Sequence number of the batch's last event.
    public let sequence: Int
    public let events: [String]
    /// The task's stream ends with this batch.
    public let final: Bool
    /// When the batch's transaction began, in Unix microseconds; set on batches read from the table. Only the
    /// benchmark looks at it (`HANDOFF_BENCH_STAMPS`).
    public var committedAtMicroseconds: Int64?

    /// Benchmarks only (`HANDOFF_BENCH_STAMPS`): when this process heard of the batch (its NOTIFY arrived) and when
    /// it held its events (from the notification itself, or a fetch), in Unix microseconds; nil for a batch a
    /// stream read from the table on its own.
    public var notifiedAtMicroseconds: Int64?
    public var receivedAtMicroseconds: Int64?

    /// When the batch was committed, in unix seconds (0 when unknown).
    public var committedSeconds: Int64 {
        (committedAtMicroseconds ?? 0) / 1_000_000
    }

    public init(task: UUID, sequence: Int, events: [String], final: Bool) {
        precondition(!events.isEmpty && events.count <= sequence, "a batch holds 1...sequence events")
        self.task = task
        self.sequence = sequence
        self.events = events
        self.final = final
    }

    init(task: UUID, sequence: Int, encodedEvents: String, final: Bool, committedAtMicroseconds: Int64) {
        self.init(task: task, sequence: sequence, events: Self.decode(encodedEvents), final: final)
        self.committedAtMicroseconds = committedAtMicroseconds
    }

    var encodedEvents: String { events.joined(separator: "\n") }

    /// Splits a row's events on the bytes (a `Character` split is several times slower, and a replica splits every
    /// row it reads); a row of one event, the common case under load, is taken as it is.
    private static func decode(_ encoded: String) -> [String] {
        guard encoded.utf8.contains(UInt8(ascii: "\n")) else { return [encoded] }
        return encoded.utf8.split(separator: UInt8(ascii: "\n")).map { String(Substring($0)) }
    }

    public var firstSequence: Int { sequence - events.count + 1 }

    /// The events a client positioned at `cursor` has not seen yet, each with its own cursor.
    public func events(after cursor: StreamCursor) -> some Sequence<(cursor: StreamCursor, data: String)> {
        let first = firstSequence
        return events.enumerated().lazy
            .map { (cursor: StreamCursor(sequence: first + $0.offset), data: $0.element) }
            .filter { $0.cursor > cursor }
    }
}

/// One stream's state as `StreamLog.catchUp` found it.
public struct StreamCatchUp: Sendable, Equatable {
    /// Whether the task exists at all: a stream of an unknown task is a 404, not an endless wait.
    public var exists: Bool
    /// Whether its client asked for a stream (`"stream": true`) or for one `chat.completion` at the end.
    public var streaming: Bool
    /// The task's newest sequence number when read: no event id a client holds can be larger.
    public var head: Int
    public var batches: [StreamBatch]
    /// For an opening: a Responses task's stored `ResponseSettings` (nil for a chat completion), and when the task
    /// was created — what its Response renders before any event.
    public var response: String?
    public var created: Int64
    /// For an opening: the key that created the task has been revoked or has expired since, so its stream is no
    /// longer served (a stream token follows its key).
    public var ownerLapsed: Bool

    public init(
        exists: Bool, streaming: Bool, head: Int, batches: [StreamBatch], response: String? = nil, created: Int64 = 0,
        ownerLapsed: Bool = false
    ) {
        self.ownerLapsed = ownerLapsed
        self.exists = exists
        self.streaming = streaming
        self.head = head
        self.batches = batches
        self.response = response
        self.created = created
    }
}

/// How a task ended, written in the same statement as its final batch.
public struct TaskOutcome: Sendable {
    public let task: UUID
    public let status: TaskStatus
    public let usage: Usage?
    public let error: OpenAIError?

    public init(task: UUID, status: TaskStatus, usage: Usage? = nil, error: OpenAIError? = nil) {
        precondition(status.isTerminal)
        self.task = task
        self.status = status
        self.usage = usage
        self.error = error
    }
}
