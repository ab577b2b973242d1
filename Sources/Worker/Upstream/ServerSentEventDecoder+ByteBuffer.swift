import HandoffWire
import NIOCore

extension ServerSentEventDecoder {
    /// Feeds a read of the upstream's body without copying it: the decoder itself knows only bytes.
    mutating func feed(_ buffer: ByteBuffer) throws(Oversized) -> [Event] {
        try buffer.withUnsafeReadableBytes { bytes throws(Oversized) in try feed(bytes) }
    }
}
