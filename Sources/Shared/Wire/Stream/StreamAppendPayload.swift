import Foundation

/// The payload of `NotifyChannel.streamAppended`: the stream rows one transaction inserted, with their events when
/// they are small enough to travel in it, so a replica hands them to its clients without reading them back.
///
///     <the transaction's start, Unix microseconds>
///     <task uuid> <seq> <final 0|1> <event count>
///     <event>                                  (event count lines: events hold no raw newline)
///     <task uuid> <seq> <final 0|1> 0          (a row not carried: read it from the table)
///
/// Postgres builds it (`notify(from:)`) from the rows the statement really inserted, so a row the insert skipped —
/// its task no longer held by the writer, or the row already written by an earlier attempt — is never announced,
/// and what a replica is told is exactly what the table holds. Notifications are delivered after the commit, in
/// commit order: the table stays the source of truth, and a lost or unreadable payload costs latency (the replica
/// reads the table when its cache has a gap, and polls), never data.
package enum StreamAppendPayload {
    /// A row whose events are longer than this is announced without them. Together with `payloadBytes` it keeps a
    /// payload below Postgres's limit (8,000 bytes): a payload holds the rows whose running total of bytes ends in
    /// one `payloadBytes` window, so at most one window plus one row (≤ `carriedBytes` and its header).
    static let carriedBytes = 3_700
    static let payloadBytes = 3_900
    /// A flush whose events add up to more than this announces its rows without them. Postgres 15 passes every
    /// notification through a queue cached in 8 pages of 8 kB, shared by all listeners: a flush that carried more
    /// would push it out to disk and back, once per listener (measured: 40 ms from commit to a replica for a 1.5 MB
    /// flush, where reading the rows back takes a few). Small flushes — low load, where latency counts — travel
    /// whole; big ones are read by each replica in one statement.
    static let flushCarriedBytes = 96_000

    /// A `SELECT` (one `notified` column) that sends the payloads announcing the rows of `rows`, a CTE of
    /// `handoff_stream` rows (`RETURNING task_id, seq, event_count, events, final`) in the same statement.
    package static func notify(from rows: String) -> String {
        """
        SELECT pg_notify('\(NotifyChannel.streamAppended)',
                (extract(epoch FROM now()) * 1000000)::bigint || string_agg(entry, '' ORDER BY task_id)) AS notified
            FROM (
                SELECT task_id, entry, sum(octet_length(entry)) OVER (ORDER BY task_id, seq ROWS UNBOUNDED PRECEDING)
                    / \(payloadBytes) AS payload
                FROM (
                    SELECT task_id, seq, E'\\n' || task_id || ' ' || seq || ' ' || final::int || ' ' ||
                        CASE WHEN octet_length(events) <= \(carriedBytes) AND sum(octet_length(events)) OVER () <= \(flushCarriedBytes)
                            THEN event_count || E'\\n' || events ELSE '0' END AS entry
                    FROM \(rows)
                ) entries
            ) placed
            GROUP BY payload
        """
    }

    /// What one payload announced about the tasks a process cares for.
    package struct Announcement: Sendable {
        /// The rows that came with their events.
        package var batches: [StreamBatch] = []
        /// The rows announced without them, to be read from the table.
        package var toFetch: [(task: UUID, sequence: Int)] = []

        package init() {}
    }

    /// Reads a payload, keeping only the rows of tasks `wanted` accepts: a replica hears every flush of every
    /// worker, and builds strings only for the events its own clients wait for (the rest is skipped line by line,
    /// in place: under load this runs for every event of the whole system). A malformed payload is read up to the
    /// fault. `notified` stamps the batches for the benchmark's trace.
    package static func decode(_ payload: String, notified: Int64? = nil, wanted: (UUID) -> Bool) -> Announcement {
        var payload = payload
        return payload.withUTF8 { bytes in
            var lines = Lines(bytes: bytes)
            var announcement = Announcement()
            guard let first = lines.next(), let committed = integer(first) else { return announcement }
            while let header = lines.next() {
                let fields = header.split(separator: UInt8(ascii: " "))
                guard fields.count == 4, let task = UUID(canonical: fields[0]),
                    let sequence = integer(fields[1]), let count = integer(fields[3]), count <= sequence
                else { return announcement }
                guard wanted(task) else {
                    guard lines.skip(count) else { return announcement }
                    continue
                }
                guard count > 0 else {
                    announcement.toFetch.append((task, sequence))
                    continue
                }
                var events: [String] = []
                events.reserveCapacity(count)
                for _ in 0..<count {
                    guard let event = lines.next() else { return announcement }
                    events.append(String(decoding: event, as: UTF8.self))
                }
                var batch = StreamBatch(
                    task: task, sequence: sequence, events: events, final: fields[2].elementsEqual("1".utf8))
                batch.committedAtMicroseconds = Int64(committed)
                batch.notifiedAtMicroseconds = notified
                batch.receivedAtMicroseconds = notified
                announcement.batches.append(batch)
            }
            return announcement
        }
    }

    /// The lines of a payload, as slices of its bytes.
    private struct Lines {
        let bytes: UnsafeBufferPointer<UInt8>
        var start = 0

        init(bytes: UnsafeBufferPointer<UInt8>) {
            self.bytes = bytes
        }

        mutating func next() -> Slice<UnsafeBufferPointer<UInt8>>? {
            guard start < bytes.count else { return nil }
            let end = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) ?? bytes.count
            defer { start = end + 1 }
            return bytes[start..<end]
        }

        /// Skips `count` lines; false when there were fewer.
        mutating func skip(_ count: Int) -> Bool {
            for _ in 0..<count {
                guard next() != nil else { return false }
            }
            return true
        }
    }

    /// A non-negative decimal number, without the `String` that `Int.init` would need.
    private static func integer(_ digits: Slice<UnsafeBufferPointer<UInt8>>) -> Int? {
        guard !digits.isEmpty, digits.count <= 18 else { return nil }
        var value = 0
        for digit in digits {
            guard digit >= UInt8(ascii: "0"), digit <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int(digit - UInt8(ascii: "0"))
        }
        return value
    }
}
