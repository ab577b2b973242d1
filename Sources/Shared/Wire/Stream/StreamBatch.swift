import Foundation

/// One row of the minibatch stream: consecutive events of one task, committed together.
///
/// Events are stored newline-delimited (compact JSON has no raw newline), so the SSE server splits a row
/// into events without parsing JSON.
package struct StreamBatch: Sendable, Equatable {
    package let task: UUID
    /// Sequence number of the batch's last event.
    package let sequence: Int
    package let events: [String]
    /// The task's stream ends with this batch.
    package let final: Bool
    /// When the batch's transaction began, in Unix microseconds; set on batches read from the table. Only the
    /// benchmark looks at it (`HANDOFF_BENCH_STAMPS`).
    package var committedAtMicroseconds: Int64?

    /// Benchmarks only (`HANDOFF_BENCH_STAMPS`): when this process heard of the batch (its NOTIFY arrived) and when
    /// it held its events (from the notification itself, or a fetch), in Unix microseconds; nil for a batch a
    /// stream read from the table on its own.
    package var notifiedAtMicroseconds: Int64?
    package var receivedAtMicroseconds: Int64?

    /// When the batch was committed, in unix seconds (0 when unknown).
    package var committedSeconds: Int64 {
        (committedAtMicroseconds ?? 0) / 1_000_000
    }

    package init(task: UUID, sequence: Int, events: [String], final: Bool) {
        precondition(!events.isEmpty && events.count <= sequence, "a batch holds 1...sequence events")
        self.task = task
        self.sequence = sequence
        self.events = events
        self.final = final
    }

    package init(task: UUID, sequence: Int, encodedEvents: String, final: Bool, committedAtMicroseconds: Int64) {
        self.init(task: task, sequence: sequence, events: Self.decode(encodedEvents), final: final)
        self.committedAtMicroseconds = committedAtMicroseconds
    }

    package var encodedEvents: String { events.joined(separator: "\n") }

    /// Splits a row's events on the bytes (a `Character` split is several times slower, and a replica splits every
    /// row it reads); a row of one event, the common case under load, is taken as it is.
    private static func decode(_ encoded: String) -> [String] {
        guard encoded.utf8.contains(UInt8(ascii: "\n")) else { return [encoded] }
        return encoded.utf8.split(separator: UInt8(ascii: "\n")).map { String(Substring($0)) }
    }

    package var firstSequence: Int { sequence - events.count + 1 }

    /// The events a client positioned at `cursor` has not seen yet, each with its own cursor.
    package func events(after cursor: StreamCursor) -> some Sequence<(cursor: StreamCursor, data: String)> {
        let first = firstSequence
        return events.enumerated().lazy
            .map { (cursor: StreamCursor(sequence: first + $0.offset), data: $0.element) }
            .filter { $0.cursor > cursor }
    }
}

/// One stream's state as `StreamLog.catchUp` found it.
package struct StreamCatchUp: Sendable, Equatable {
    /// Whether the task exists at all: a stream of an unknown task is a 404, not an endless wait.
    package var exists: Bool
    /// Whether its client asked for a stream (`"stream": true`) or for one `chat.completion` at the end.
    package var streaming: Bool
    /// The task's newest sequence number when read: no event id a client holds can be larger.
    package var head: Int
    package var batches: [StreamBatch]
    /// For an opening: a Responses task's stored `ResponseSettings` (nil for a chat completion), and when the task
    /// was created — what its Response renders before any event.
    package var response: String?
    package var created: Int64
    /// For an opening: the key that created the task has been revoked or has expired since, so its stream is no
    /// longer served (a stream token follows its key).
    package var ownerLapsed: Bool
    /// For an opening: the task's model as its request names it, and whether its chunks carry `usage` — with
    /// `created`, the header its stored events are rendered with (`frame(of:)`).
    package var model: String
    package var includeUsage: Bool

    package init(
        exists: Bool, streaming: Bool, head: Int, batches: [StreamBatch], response: String? = nil, created: Int64 = 0,
        ownerLapsed: Bool = false, model: String = "", includeUsage: Bool = false
    ) {
        self.ownerLapsed = ownerLapsed
        self.model = model
        self.includeUsage = includeUsage
        self.exists = exists
        self.streaming = streaming
        self.head = head
        self.batches = batches
        self.response = response
        self.created = created
    }
}

extension StreamCatchUp {
    /// The frame `task`'s stored events are rendered with, from an opening's header.
    package func frame(of task: UUID) -> ChunkFrame {
        ChunkFrame(task: task, created: created, model: model, includeUsage: includeUsage)
    }
}

/// How a task ended, written in the same statement as its final batch.
package struct TaskOutcome: Sendable {
    package let task: UUID
    package let status: TaskStatus
    package let usage: Usage?
    package let error: OpenAIError?

    package init(task: UUID, status: TaskStatus, usage: Usage? = nil, error: OpenAIError? = nil) {
        precondition(status.isTerminal)
        self.task = task
        self.status = status
        self.usage = usage
        self.error = error
    }
}
