import Foundation
import HandoffWire
import Testing

struct ServerSentEventsTests {
    @Test func eventCarriesItsCursorAndOneDataLine() {
        #expect(
            ServerSentEvents.event(id: StreamCursor(sequence: 42), data: #"{"a":1}"#) == "id: 42\ndata: {\"a\":1}\n\n")
    }

    @Test func keepaliveIsALoneCommentLineWithoutBlankLine() {
        // openai-python fails on a comment-only block once an id was sent: no "\n\n" here.
        #expect(ServerSentEvents.keepalive == ": ping\n")
    }

    @Test func streamEndsWithDone() {
        #expect(ServerSentEvents.done == "data: [DONE]\n\n")
    }

    @Test(arguments: [("0", 0), ("17", 17)])
    func cursorParsesEventIDs(text: String, sequence: Int) {
        #expect(StreamCursor(eventID: text) == StreamCursor(sequence: sequence))
    }

    @Test(arguments: ["", "-1", "abc", "1.5", " 3"])
    func cursorRejectsWhatWeNeverSent(text: String) {
        #expect(StreamCursor(eventID: text) == nil)
    }
}

struct ChunkJSONTests {
    let created: Int64 = 1_758_102_619

    @Test func contentChunkMatchesOpenAIByteForByte() {
        let chunk = ChatCompletionChunk(
            id: "chatcmpl-1", created: created, model: "demo", choices: [.init(delta: .init(content: " be"))],
            usage: .null)
        #expect(
            chunk.json.text
                == #"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1758102619,"model":"demo","#
                + #""system_fingerprint":null,"choices":[{"index":0,"delta":{"content":" be"},"logprobs":null,"finish_reason":null}],"usage":null}"#
        )
    }

    @Test func roleChunkListsRoleBeforeContent() {
        let chunk = ChatCompletionChunk(
            id: "c", created: 1, model: "m", choices: [.init(delta: .init(role: "assistant", content: ""))])
        #expect(chunk.json.text.contains(#""delta":{"role":"assistant","content":""}"#))
        #expect(!chunk.json.text.contains("usage"), "usage is absent unless the client asked for it")
    }

    @Test func finishAndUsageChunks() {
        let finish = ChatCompletionChunk(
            id: "c", created: 1, model: "m", choices: [.init(delta: .init(), finishReason: "stop")])
        #expect(finish.json.text.contains(#""delta":{},"logprobs":null,"finish_reason":"stop""#))
        let usage = ChatCompletionChunk(
            id: "c", created: 1, model: "m", choices: [], usage: .value(Usage(promptTokens: 10, completionTokens: 4)))
        #expect(
            usage.json.text.hasSuffix(
                #""choices":[],"usage":{"prompt_tokens":10,"completion_tokens":4,"total_tokens":14}}"#))
    }

    @Test func decodingReadsWhatEncodingWrote() throws {
        for chunk in [
            ChatCompletionChunk(
                id: "c", created: 1, model: "m", choices: [.init(delta: .init(content: "é \"q\"\n"))], usage: .null),
            ChatCompletionChunk(
                id: "c", created: 1, model: "m", choices: [.init(delta: .init(), finishReason: "length")]),
            ChatCompletionChunk(
                id: "c", created: 1, model: "m", choices: [], usage: .value(Usage(promptTokens: 1, completionTokens: 2))
            ),
        ] {
            #expect(try JSONDecoder().decode(ChatCompletionChunk.self, from: Data(chunk.json.text.utf8)) == chunk)
        }
    }

    @Test func stringsAreEscapedAsJSONRequiresAndNoMore() throws {
        let text = "quote \" backslash \\ newline \n tab \t bell \u{07} unicode é 🦄 slash /"
        let json = JSONValue.string(text).text
        #expect(json == #""quote \" backslash \\ newline \n tab \t bell \u0007 unicode é 🦄 slash /""#)
        #expect(try JSONDecoder().decode(String.self, from: Data(json.utf8)) == text)
        #expect(!json.contains("\n"), "an event's JSON must stay on one line")
    }

    /// An escaped byte can sit inside one character: CR LF, or a quote followed by a combining accent.
    @Test(arguments: ["\r\n", "\"\u{301}", "a\"\u{301}b\r\nc", "\u{1F984}\"\u{1F984}", "", "\\"])
    func escapesInsideCharactersRoundTrip(text: String) throws {
        let json = JSONValue.string(text).text
        #expect(try JSONDecoder().decode(String.self, from: Data(json.utf8)) == text, "\(json)")
        #expect(!json.contains("\n") && !json.contains("\r"))
    }

    @Test func errorEnvelopeHasAllFourKeysInOrder() {
        let error = OpenAIError.invalidRequest("Bad.", param: "messages[0].role")
        #expect(
            error.json.text
                == #"{"error":{"message":"Bad.","type":"invalid_request_error","param":"messages[0].role","code":null}}"#
        )
    }
}

struct StreamAppendPayloadTests {
    let first = UUID()
    let second = UUID()

    var payload: String {
        """
        1700000000123456
        \(first.uuidString.lowercased()) 3 0 2
        {"a":1}
        {"b":2}
        \(second.uuidString.lowercased()) 9 1 0
        """
    }

    @Test func carriedRowsBecomeBatchesAndTheOthersAreFetched() {
        let announcement = StreamAppendPayload.decode(payload, notified: 42) { _ in true }
        #expect(announcement.batches.map(\.task) == [first])
        #expect(announcement.batches.map(\.sequence) == [3])
        #expect(announcement.batches.map(\.events) == [[#"{"a":1}"#, #"{"b":2}"#]])
        #expect(announcement.batches.map(\.final) == [false])
        #expect(announcement.batches.first?.committedAtMicroseconds == 1_700_000_000_123_456)
        #expect(announcement.batches.first?.notifiedAtMicroseconds == 42)
        #expect(announcement.toFetch.map(\.task) == [second])
        #expect(announcement.toFetch.map(\.sequence) == [9])
    }

    @Test func onlyWantedTasksAreKept() {
        let announcement = StreamAppendPayload.decode(payload) { $0 == second }
        #expect(announcement.batches.isEmpty)
        #expect(announcement.toFetch.map(\.task) == [second])
    }

    @Test func aMalformedPayloadIsReadUpToTheFault() {
        let cutShort = payload.replacingOccurrences(of: "9 1 0", with: "9 1 5\nx")
        let announcement = StreamAppendPayload.decode(cutShort) { _ in true }
        #expect(announcement.batches.map(\.task) == [first], "a row missing events is not served")
        #expect(announcement.toFetch.isEmpty)
        #expect(StreamAppendPayload.decode("junk") { _ in true }.toFetch.isEmpty)
        let badSecond = payload.replacingOccurrences(of: "9 1 0", with: "nine 1 0")
        #expect(StreamAppendPayload.decode(badSecond) { _ in true }.batches.count == 1)
    }
}

struct StreamBatchTests {
    let batch = StreamBatch(task: UUID(), sequence: 7, events: ["e5", "e6", "e7"], final: false)

    @Test func eventsArePositionedByTheBatchSequence() {
        #expect(batch.firstSequence == 5)
        #expect(batch.events(after: .start).map(\.cursor.sequence) == [5, 6, 7])
        #expect(batch.events(after: .start).map(\.data) == ["e5", "e6", "e7"])
    }

    @Test func aCursorInsideTheBatchSkipsWhatTheClientHas() {
        #expect(batch.events(after: StreamCursor(sequence: 5)).map(\.data) == ["e6", "e7"])
        #expect(Array(batch.events(after: StreamCursor(sequence: 7))).isEmpty)
    }

    /// The non-streaming answer is the stream folded into one message.
    @Test func aCompletionIsAssembledFromItsChunks() throws {
        let chunk = { (delta: ChatCompletionChunk.Delta, finish: String?) in
            ChatCompletionChunk(
                id: "chatcmpl-1", created: 7, model: "demo", choices: [.init(delta: delta, finishReason: finish)],
                usage: .null
            ).json.text
        }
        let events = [
            chunk(.init(role: "assistant", content: ""), nil), chunk(.init(content: "Once"), nil),
            chunk(.init(content: " upon"), nil),
            chunk(.init(), "length"),
            ChatCompletionChunk(
                id: "chatcmpl-1", created: 7, model: "demo", choices: [],
                usage: .value(Usage(promptTokens: 3, completionTokens: 2))
            ).json.text,
        ]
        let completion = try ChatCompletion.assemble(events).get()
        #expect(
            completion.text
                == #"{"id":"chatcmpl-1","object":"chat.completion","created":7,"model":"demo","system_fingerprint":null,"#
                + #""choices":[{"index":0,"message":{"role":"assistant","content":"Once upon","refusal":null},"logprobs":null,"finish_reason":"length"}],"#
                + #""usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#)
    }

    @Test func aStreamThatEndedInAnErrorAnswersTheErrorWithItsStatus() {
        let events = [
            ChatCompletionChunk(
                id: "chatcmpl-1", created: 7, model: "demo", choices: [.init(delta: .init(content: "x"))]
            ).json.text,
            OpenAIError.workerLost.json.text,
        ]
        guard case .failure(let error) = ChatCompletion.assemble(events) else {
            Issue.record("assembled")
            return
        }
        #expect(error == .workerLost && error.status == 500)
    }
}
