import HandoffWire
import Testing

/// The decoder as the benchmark reads Handoff's own streams: comments counted, and kept with the event whose block
/// they stand in (the commit stamps), wherever the bytes split.
struct ServerSentEventCommentTests {
    typealias Event = ServerSentEventDecoder.Event

    func decoder() -> ServerSentEventDecoder {
        ServerSentEventDecoder(keepsComments: true)
    }

    @Test func eventsAreCompleteAtTheBlankLineWhereverTheBytesSplit() throws {
        let bytes = Array("id: 1\ndata: {\"a\":1}\n\n: ping\nid: 2\r\ndata: [DONE]\r\n\r\n".utf8)
        for split in 0...bytes.count {
            var decoder = decoder()
            let events = try decoder.feed(bytes[..<split]) + decoder.feed(bytes[split...])
            // The keepalive has no blank line after it, so it belongs to the next event's block (and is harmless).
            let expected = [
                Event(type: "message", data: #"{"a":1}"#, lastEventID: "1"),
                Event(type: "message", data: "[DONE]", lastEventID: "2", comments: [" ping"]),
            ]
            #expect(events == expected, "split at \(split)")
            #expect(decoder.comments == 1)
        }
    }

    @Test func commentsAloneDoNotMakeAnEvent() throws {
        var decoder = decoder()
        let events = try decoder.feed(Array(": ping\n\n: ping\n".utf8))
        #expect(events.isEmpty)
        #expect(decoder.comments == 2)
    }

    @Test func commentsInsideABlockTravelWithItsEvent() throws {
        var decoder = decoder()
        let events = try decoder.feed(Array(": committed 42\nid: 1\ndata: x\n\nid: 2\ndata: y\n\n".utf8))
        #expect(events.map(\.comments) == [[" committed 42"], []])
    }

    @Test func theWorkersDecoderCountsCommentsButKeepsNone() throws {
        var decoder = ServerSentEventDecoder()
        let events = try decoder.feed(Array(": ping\ndata: x\n\n".utf8))
        #expect(events == [Event(type: "message", data: "x", lastEventID: "")])
        #expect(decoder.comments == 1)
    }
}
