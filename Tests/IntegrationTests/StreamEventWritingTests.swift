import Foundation
import HandoffWire
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import SSEChat

/// A replica writes its events into the response buffer piece by piece, and frames them as chunks below NIO's HTTP
/// encoder: the bytes must be those the generic path makes (`ServerSentEvents.event`, `ChunkFrame.rendered`, the
/// encoder's own chunks).
struct StreamEventWritingTests {
    let frame = ChunkFrame(id: "chatcmpl-1", created: 1_700_000_000, model: "demo", includeUsage: true)

    @Test func eventsArePiecedAsTheyWouldBeJoined() {
        let stored = [
            frame.storedContent("Hé \"there\"\n"),  // a content delta
            frame.stored(
                ChatCompletionChunk(
                    id: "chatcmpl-1", created: 1_700_000_000, model: "demo",
                    choices: [.init(delta: .init(), finishReason: "stop")], usage: .null
                ).json.text),  // a chunk stored without its identity
            OpenAIError.server("boom").json.text,  // an error, stored as it is
        ]
        for (index, event) in stored.enumerated() {
            var buffer = ByteBuffer()
            buffer.writeEvent(id: StreamCursor(sequence: index + 7), stored: event, frame: frame)
            let joined = ServerSentEvents.event(id: StreamCursor(sequence: index + 7), data: frame.rendered(event))
            #expect(String(buffer: buffer) == joined)
        }
    }

    @Test func chunksAreFramedBelowTheEncoderInWriteOrder() throws {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(HTTPResponseEncoder())
        try channel.writeOutbound(
            HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: .ok)))
        let head = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(String(buffer: head).contains("transfer-encoding: chunked"))

        let writer = try #require(ChunkedBodyWriter(pipeline: channel.pipeline, version: .http1_1))
        var empty = channel.allocator.buffer(capacity: 0)
        writer.begin(&empty)
        #expect(!writer.write(&empty))
        var events = channel.allocator.buffer(capacity: 0)
        writer.begin(&events)
        events.writeString("data: x\n\n")
        #expect(writer.write(&events))
        try channel.writeOutbound(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(string: ": ping\n"))))
        try channel.writeOutbound(HTTPServerResponsePart.end(nil))

        var wire = ""
        while let part = try channel.readOutbound(as: IOData.self) {
            guard case .byteBuffer(let bytes) = part else { continue }
            wire += String(buffer: bytes)
        }
        #expect(wire == "00000009\r\ndata: x\n\n\r\n7\r\n: ping\n\r\n0\r\n\r\n")
        #expect(try channel.finish().isClean)
    }

    @Test func http10GoesThroughTheEncoder() throws {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(HTTPResponseEncoder())
        #expect(ChunkedBodyWriter(pipeline: channel.pipeline, version: .http1_0) == nil)
        #expect(ChunkedBodyWriter(pipeline: EmbeddedChannel().pipeline, version: .http1_1) == nil)
    }
}
