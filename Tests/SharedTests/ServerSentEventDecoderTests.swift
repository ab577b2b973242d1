import NIOCore
import Testing

@testable import Worker

/// The upstream SSE parser against the WHATWG rules, and a property test: whatever byte boundaries a stream is
/// split at, the same events come out — no crash, no byte lost or duplicated.
struct ServerSentEventDecoderTests {
    typealias Event = ServerSentEventDecoder.Event

    func decode(_ pieces: [[UInt8]]) -> [Event] {
        var decoder = ServerSentEventDecoder()
        return pieces.flatMap { decoder.feed(ByteBuffer(bytes: $0)) }
    }

    func decode(_ text: String) -> [Event] {
        decode([Array(text.utf8)])
    }

    @Test func lineEndsOfEveryKind() {
        let expected = [Event(type: "message", data: "a", lastEventID: ""), Event(type: "message", data: "b", lastEventID: "")]
        #expect(decode("data: a\n\ndata: b\n\n") == expected)
        #expect(decode("data: a\r\n\r\ndata: b\r\n\r\n") == expected)
        #expect(decode("data: a\r\rdata: b\r\r") == expected)
        #expect(decode("data: a\r\n\ndata: b\n\r") == expected)
    }

    @Test func fieldsCommentsAndMultiLineData() {
        let text = ": comment\nevent: delta\nid: 7\ndata: one\ndata:two\ndata\nretry: 10\nunknown: x\n\n"
        #expect(decode(text) == [Event(type: "delta", data: "one\ntwo\n", lastEventID: "7")])
        // The type resets after each event, the last event id does not; an id with NUL is ignored.
        #expect(decode("event: x\nid: 1\ndata: a\n\nid: 2\u{0}\ndata: b\n\n") == [
            Event(type: "x", data: "a", lastEventID: "1"), Event(type: "message", data: "b", lastEventID: "1"),
        ])
    }

    @Test func blocksWithoutDataAndUnfinishedEventsDispatchNothing() {
        #expect(decode("event: ping\n\n: keepalive\n\nid: 3\n\n").isEmpty)
        #expect(decode("data: never ended\n").isEmpty)
        #expect(decode("data:\n\n") == [Event(type: "message", data: "", lastEventID: "")])
    }

    @Test func aLeadingBOMIsDroppedOnlyAtTheStart() {
        #expect(decode([[0xEF], [0xBB, 0xBF], Array("data: x\n\n".utf8)]) == [Event(type: "message", data: "x", lastEventID: "")])
        // Not a whole BOM: the bytes are text (here they make the field name unknown, so nothing is dispatched).
        #expect(decode([[0xEF, 0xBB], Array("data: x\n\n".utf8)]).isEmpty)
        #expect(decode("data: \u{FEFF}x\n\n") == [Event(type: "message", data: "\u{FEFF}x", lastEventID: "")])
    }

    /// A stream of every feature, split at random points (inside CRLF pairs and UTF-8 sequences included), decodes
    /// to exactly what it decodes to whole.
    @Test func randomSplitPointsChangeNothing() {
        var random = SystemRandomNumberGenerator()
        let endings = ["\n", "\r\n", "\r"]
        for round in 0..<300 {
            var text = round % 2 == 0 ? "\u{FEFF}" : ""
            var expected: [Event] = []
            var lastID = ""
            for index in 0..<Int.random(in: 1...12, using: &random) {
                let end = endings.randomElement(using: &random)!
                let data = ["é🦄 \(index)", "{\"a\":\"\\n\"}", "", "x:y", String(repeating: "ü", count: index)].randomElement(using: &random)!
                if Bool.random(using: &random) { text += ": keep-alive" + end }
                if Bool.random(using: &random) {
                    lastID = "id-\(index)"
                    text += "id: \(lastID)" + end
                }
                text += "data: \(data)" + end + "data: second" + end + end
                expected.append(Event(type: "message", data: data + "\nsecond", lastEventID: lastID))
            }
            let bytes = Array(text.utf8)
            var pieces: [[UInt8]] = []
            var start = 0
            while start < bytes.count {
                let size = Int.random(in: 1...max(1, min(7, bytes.count - start)), using: &random)
                pieces.append(Array(bytes[start..<(start + size)]))
                start += size
            }
            #expect(decode([bytes]) == expected)
            #expect(decode(pieces) == expected, "split \(pieces.map(\.count))")
        }
    }
}
