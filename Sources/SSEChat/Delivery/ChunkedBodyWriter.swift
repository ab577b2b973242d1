import HandoffWire
import NIOCore
import NIOHTTP1

/// Writes a stream's events as HTTP/1.1 chunks straight below NIO's `HTTPResponseEncoder`, each chunk as one buffer.
///
/// Through the encoder, every write of every stream passed the HTTP handlers above it and went out as three buffers
/// (size line, data, CRLF: a `writev` of three). The encoder keeps writing the head, the end and the rare bodies
/// (pings, error events); its chunks and these interleave in write order, on the one event loop.
struct ChunkedBodyWriter {
    /// Room before a chunk's data for its size line: eight hex digits (leading zeros are valid) and CRLF.
    private static let sizeLineRoom = 10
    private let encoder: ChannelHandlerContext

    /// Nil where the encoder does not frame bodies as chunks (an HTTP/1.0 response is unframed and closes its
    /// connection), or is not in the pipeline: the caller writes through the encoder then. A stream answers GET and
    /// POST only (`StreamRequest`), never HEAD, whose body the encoder would suppress and this writer would not.
    init?(pipeline: ChannelPipeline, version: HTTPVersion) {
        guard version.major == 1, version.minor >= 1,
            let encoder = try? pipeline.syncOperations.context(handlerType: HTTPResponseEncoder.self)
        else { return nil }
        self.encoder = encoder
    }

    /// Starts a chunk: its data is what is written into `buffer` after this.
    func begin(_ buffer: inout ByteBuffer) {
        buffer.writeRepeatingByte(0, count: Self.sizeLineRoom)
    }

    /// Frames and writes the chunk `begin` started, unless it holds no data; whether it wrote one. Not flushed.
    func write(_ buffer: inout ByteBuffer) -> Bool {
        let size = buffer.readableBytes - Self.sizeLineRoom
        guard size > 0 else { return false }
        precondition(size <= 0xFFFF_FFFF, "a chunk's size fits its eight hex digits")
        let sizeLine = withUnsafeBytes(of: UInt32(size).bigEndian) { Hex.encode($0) } + "\r\n"
        buffer.setString(sizeLine, at: buffer.readerIndex)
        buffer.writeStaticString("\r\n")
        encoder.write(NIOAny(IOData.byteBuffer(buffer)), promise: nil)
        return true
    }
}
