import Foundation
import HandoffWire
import NIOCore

/// What one write of a stream put in its buffer.
struct StreamEventsWritten {
    var events = 0
    /// The stream's end was among them.
    var ended = false
}

extension ByteBuffer {
    /// Writes the Responses events that `batches` render after `cursor` (their stored chunks rendered with `frame`
    /// first) and whose sequence number follows `startingAfter`, moving the cursor. The stream ends when the
    /// stream's end was among them (no `[DONE]`: Responses streams just end).
    mutating func writeResponseEvents(
        of batches: [StreamBatch], after cursor: inout StreamCursor, frame: ChunkFrame,
        renderer: inout ResponseRenderer, startingAfter: Int
    ) -> StreamEventsWritten {
        var written = StreamEventsWritten()
        for batch in batches {
            for event in batch.events(after: cursor) {
                for rendered in renderer.render(frame.rendered(event.data), committed: batch.committedSeconds)
                where rendered.sequenceNumber > startingAfter {
                    writeString(rendered.frame)
                    written.events += 1
                }
                cursor = event.cursor
            }
            if batch.final {
                written.ended = true
                return written
            }
        }
        return written
    }

    /// Writes the SSE events of `batches` that follow `cursor`, rendered with `frame`, moving it. The stream ends
    /// when its end was among them (then `[DONE]` is written too).
    mutating func writeEvents(
        of batches: [StreamBatch], after cursor: inout StreamCursor, frame: ChunkFrame, commitStamps: Bool
    ) -> StreamEventsWritten {
        var written = StreamEventsWritten()
        for batch in batches {
            if commitStamps, let committed = batch.committedAtMicroseconds, batch.sequence > cursor.sequence {
                let sent = Int64(Date().timeIntervalSince1970 * 1_000_000)
                writeString(
                    ServerSentEvents.commitStamp(
                        committed: committed, notified: batch.notifiedAtMicroseconds ?? 0,
                        received: batch.receivedAtMicroseconds ?? 0, sent: sent))
            }
            for event in batch.events(after: cursor) {
                writeEvent(id: event.cursor, stored: event.data, frame: frame)
                written.events += 1
                cursor = event.cursor
            }
            if batch.final {
                writeString(ServerSentEvents.done)
                written.ended = true
                return written
            }
        }
        return written
    }

    /// `ServerSentEvents.event(id:data:)` of the stored event rendered with `frame`, written piece by piece: the
    /// hot path builds no string per event (a replica writes every event of every stream it serves).
    mutating func writeEvent(id: StreamCursor, stored: String, frame: ChunkFrame) {
        let (prefix, suffix) = frame.framing(of: stored)
        writeString(ServerSentEvents.idLine)
        writeString(String(id.sequence))
        writeString(ServerSentEvents.dataLine)
        writeString(prefix)
        writeString(stored)
        writeString(suffix)
        writeString(ServerSentEvents.eventEnd)
    }
}
