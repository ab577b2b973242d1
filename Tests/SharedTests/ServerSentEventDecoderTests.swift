import HandoffWire
import Testing

/// The upstream SSE parser against the WHATWG rules, and a property test: whatever byte boundaries a stream is
/// split at, the same events come out — no crash, no byte lost or duplicated.
struct ServerSentEventDecoderTests {
    typealias Event = ServerSentEventDecoder.Event

    func decode(_ pieces: [[UInt8]]) throws -> [Event] {
        var decoder = ServerSentEventDecoder()
        return try pieces.flatMap { try decoder.feed($0) }
    }

    func decode(_ text: String) throws -> [Event] {
        try decode([Array(text.utf8)])
    }

    @Test func lineEndsOfEveryKind() throws {
        let expected = [
            Event(type: "message", data: "a", lastEventID: ""), Event(type: "message", data: "b", lastEventID: ""),
        ]
        #expect(try decode("data: a\n\ndata: b\n\n") == expected)
        #expect(try decode("data: a\r\n\r\ndata: b\r\n\r\n") == expected)
        #expect(try decode("data: a\r\rdata: b\r\r") == expected)
        #expect(try decode("data: a\r\n\ndata: b\n\r") == expected)
    }

    @Test func fieldsCommentsAndMultiLineData() throws {
        let text = ": comment\nevent: delta\nid: 7\ndata: one\ndata:two\ndata\nretry: 10\nunknown: x\n\n"
        #expect(try decode(text) == [Event(type: "delta", data: "one\ntwo\n", lastEventID: "7")])
        // The type resets after each event, the last event id does not; an id with NUL is ignored.
        #expect(
            try decode("event: x\nid: 1\ndata: a\n\nid: 2\u{0}\ndata: b\n\n") == [
                Event(type: "x", data: "a", lastEventID: "1"), Event(type: "message", data: "b", lastEventID: "1"),
            ])
    }

    @Test func blocksWithoutDataAndUnfinishedEventsDispatchNothing() throws {
        #expect(try decode("event: ping\n\n: keepalive\n\nid: 3\n\n").isEmpty)
        #expect(try decode("data: never ended\n").isEmpty)
        #expect(try decode("data:\n\n") == [Event(type: "message", data: "", lastEventID: "")])
    }

    @Test func aLeadingBOMIsDroppedOnlyAtTheStart() throws {
        #expect(
            try decode([[0xEF], [0xBB, 0xBF], Array("data: x\n\n".utf8)]) == [
                Event(type: "message", data: "x", lastEventID: "")
            ])
        // Not a whole BOM: the bytes are text (here they make the field name unknown, so nothing is dispatched).
        #expect(try decode([[0xEF, 0xBB], Array("data: x\n\n".utf8)]).isEmpty)
        #expect(try decode("data: \u{FEFF}x\n\n") == [Event(type: "message", data: "\u{FEFF}x", lastEventID: "")])
    }

    /// A stream of every feature, split at random points (inside CRLF pairs and UTF-8 sequences included), decodes
    /// to exactly what it decodes to whole.
    @Test func randomSplitPointsChangeNothing() throws {
        var random = SystemRandomNumberGenerator()
        let endings = ["\n", "\r\n", "\r"]
        for round in 0..<300 {
            var text = round % 2 == 0 ? "\u{FEFF}" : ""
            var expected: [Event] = []
            var lastID = ""
            for index in 0..<Int.random(in: 1...12, using: &random) {
                let end = endings.randomElement(using: &random)!
                let data = ["é🦄 \(index)", "{\"a\":\"\\n\"}", "", "x:y", String(repeating: "ü", count: index)]
                    .randomElement(using: &random)!
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
            #expect(try decode([bytes]) == expected)
            #expect(try decode(pieces) == expected, "split \(pieces.map(\.count))")
        }
    }

    /// A line that never ends, an event of many short data lines, and a stream that never ends are each refused at
    /// their bound, however the bytes are split; what fits decodes as before.
    @Test func boundsOnLinesEventsAndStreams() throws {
        var lines = ServerSentEventDecoder(maxLineBytes: 16, maxStreamBytes: 1 << 20)
        #expect(try lines.feed(Array("data: fits\n\n".utf8)) == [Event(type: "message", data: "fits", lastEventID: "")])
        #expect(throws: ServerSentEventDecoder.Oversized.line(limit: 16)) {
            for _ in 0..<4 { _ = try lines.feed(Array("data: xxxxx".utf8)) }
        }
        var event = ServerSentEventDecoder(maxLineBytes: 16, maxStreamBytes: 1 << 20)
        #expect(throws: ServerSentEventDecoder.Oversized.line(limit: 16)) {
            _ = try event.feed(Array(String(repeating: "data: abcd\n", count: 5).utf8))
        }
        var stream = ServerSentEventDecoder(maxLineBytes: 16, maxStreamBytes: 64)
        #expect(throws: ServerSentEventDecoder.Oversized.stream(limit: 64)) {
            for _ in 0..<20 { _ = try stream.feed(Array("data: a\n\n".utf8)) }
        }
    }
}
