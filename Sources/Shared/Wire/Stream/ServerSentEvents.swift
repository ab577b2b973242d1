/// The SSE byte format Handoff writes, and the cursor that names each event.
///
/// Each event carries `id:` (its cursor, so `Last-Event-ID` can resume) and exactly one `data:` line. The
/// keepalive is a lone comment line with no blank line after it: openai-python's decoder fails on a
/// comment-only block once an `id:` has been seen.
package enum ServerSentEvents {
    package static let contentType = "text/event-stream"
    package static let keepalive = ": ping\n"
    package static let done = "data: [DONE]\n\n"

    /// An event's text around its id and its data, `id: <sequence>\ndata: <data>\n\n`: the replicas write the
    /// pieces straight into their buffers, `event(id:data:)` joins them (the form their tests compare against).
    package static let idLine = "id: "
    package static let dataLine = "\ndata: "
    package static let eventEnd = "\n\n"

    package static func event(id: StreamCursor, data: String) -> String {
        idLine + String(id.sequence) + dataLine + data + eventEnd
    }

    /// An event without an id: a reconnecting client's `Last-Event-ID` still names the last event it had.
    package static func event(data: String) -> String {
        "data: \(data)\n\n"
    }

    /// Benchmarks only (`HANDOFF_BENCH_STAMPS`): written before a minibatch's first event, inside its block,
    /// so no comment-only block is ever sent. It traces the batch through the replica, in Unix microseconds: when
    /// its transaction began, when the replica's NOTIFY arrived, when the replica held its events, and when it wrote
    /// them (0 for a hop the batch did not take), so the client can split its latency hop by hop.
    package static let commitStampPrefix = ": committed "

    package static func commitStamp(committed: Int64, notified: Int64, received: Int64, sent: Int64) -> String {
        "\(commitStampPrefix)\(committed) \(notified) \(received) \(sent)\n"
    }
}

/// A position in one task's stream: the per-task sequence number of the last event a client has.
/// Sequence numbers start at 1 and are dense; 0 means "before the first event".
package struct StreamCursor: Sendable, Hashable, Comparable, CustomStringConvertible {
    package let sequence: Int

    package static let start = StreamCursor(sequence: 0)

    package init(sequence: Int) {
        self.sequence = sequence
    }

    /// The largest sequence number the stream table holds (`seq integer`). A cursor past it would fail, as out of
    /// range, the batched read that carries it, and with it every other stream of that read.
    package static let maxSequence = Int(Int32.max)

    /// Parses an SSE event id (`Last-Event-ID`); `nil` for anything that is not one we could have sent.
    package init?(eventID: String) {
        guard let value = Int(eventID), (0...Self.maxSequence).contains(value) else { return nil }
        self.sequence = value
    }

    package var description: String { String(sequence) }

    package static func < (lhs: StreamCursor, rhs: StreamCursor) -> Bool { lhs.sequence < rhs.sequence }
}
