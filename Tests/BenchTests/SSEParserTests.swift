import NIOCore
import Testing

@testable import Bench

struct SSEParserTests {
    @Test func eventsAreCompleteAtTheBlankLineWhereverTheBytesSplit() {
        let stream = "id: 1\ndata: {\"a\":1}\n\n: ping\nid: 2\r\ndata: [DONE]\r\n\r\n"
        for split in 0...stream.utf8.count {
            var parser = SSEParser()
            let bytes = Array(stream.utf8)
            let events =
                parser.feed(ByteBuffer(bytes: bytes[..<split])) + parser.feed(ByteBuffer(bytes: bytes[split...]))
            // The keepalive has no blank line after it, so it belongs to the next event's block (and is harmless).
            #expect(
                events == [.init(id: "1", data: #"{"a":1}"#), .init(id: "2", data: "[DONE]", comments: [" ping"])],
                "split at \(split)")
            #expect(parser.comments == 1)
        }
    }

    @Test func multiLineDataJoinsWithNewlinesAndFieldsWithoutSpaceParse() {
        var parser = SSEParser()
        let events = parser.feed(ByteBuffer(string: "data:a\ndata: b\nevent: x\n\n"))
        #expect(events == [.init(id: nil, data: "a\nb")])
    }

    @Test func commentsAloneDoNotMakeAnEvent() {
        var parser = SSEParser()
        #expect(parser.feed(ByteBuffer(string: ": ping\n\n: ping\n")).isEmpty)
        #expect(parser.comments == 2)
    }

    @Test func commentsInsideABlockTravelWithItsEvent() {
        var parser = SSEParser()
        let events = parser.feed(ByteBuffer(string: ": committed 42\nid: 1\ndata: x\n\nid: 2\ndata: y\n\n"))
        #expect(events.map(\.comments) == [[" committed 42"], []])
    }
}
