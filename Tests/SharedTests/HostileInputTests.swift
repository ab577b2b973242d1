import Foundation
import HandoffWire
import Testing

/// What a hostile client sends that a reader of the stored task could read otherwise than the validator did, and the
/// per-request values that go into statements shared with other requests: each is refused for its own request.
struct HostileInputTests {
    let validation = RequestValidation(models: ["demo", "small"], maxTokensLimit: 100, modelMaxTokens: ["small": 10])

    func rejection(_ json: String) -> OpenAIError? {
        do {
            _ = try validation.decode(Data(json.utf8))
            return nil
        } catch {
            return error
        }
    }

    /// The decoder keeps the first of two members, jsonb the last: a body naming one twice is refused, at any depth,
    /// however the second spells its name.
    @Test(arguments: [
        (
            #"{"model":"demo","max_tokens":2,"messages":[{"role":"user","content":"x"}],"max_tokens":100000}"#,
            "max_tokens"
        ),
        (#"{"model":"demo","messages":[{"role":"user","content":"x"}],"model":"other"}"#, "model"),
        (
            #"{"model":"demo","max_tokens":2,"messages":[{"role":"user","content":"x"}],"max_\u0074okens":9}"#,
            "max_tokens"
        ),
        (#"{"model":"demo","messages":[{"role":"user","content":"x","role":"system"}]}"#, "messages[0].role"),
        (
            #"{"model":"demo","messages":[{"role":"user","content":"x"},{"role":"user","content":[{"type":"text","text":"a","text":"b"}]}]}"#,
            "messages[1].content[0].text"
        ),
        (#"{"model":"demo","messages":[{"role":"user","content":"x"}],"x":{"a":{"\ud83d\ude00":1,"😀":2}}}"#, "x.a.😀"),
    ])
    func duplicateKeysAreRefusedNamingTheKey(body: String, path: String) {
        let error = rejection(body)
        #expect(error?.status == 400 && error?.type == "invalid_request_error" && error?.code == "duplicate_key")
        #expect(error?.param == path)
        #expect(error?.message.contains("'\(path)'") == true)
    }

    @Test func theSameKeyInDifferentObjectsOrInsideStringsIsNoDuplicate() throws {
        let body =
            #"{"model":"demo","messages":[{"role":"user","content":"\"role\":\"x\",\"role\""},{"role":"assistant","content":"y"}],"#
            + #""stop":["a"],"metadata":{"model":1,"stop":{"model":2}}}"#
        #expect(JSONDuplicateKeys.first(in: Data(body.utf8)) == nil)
        #expect(try validation.decode(Data(body.utf8)).messages.count == 2)
    }

    @Test func responsesBodiesAreCheckedToo() {
        let body = #"{"model":"demo","input":"hi","max_output_tokens":2,"max_output_tokens":5000}"#
        #expect(throws: OpenAIError.self) { try ResponsesRequest(Data(body.utf8), validation: validation) }
        do {
            _ = try ResponsesRequest(Data(body.utf8), validation: validation)
        } catch {
            #expect(error.code == "duplicate_key" && error.param == "max_output_tokens")
        }
    }

    /// The reply's cap when the request sets none: the model's own, else the deployment's; a request asking for more
    /// than its model allows is refused like one over the deployment's limit.
    @Test func theCapOfARequestThatSetsNone() throws {
        let open = try validation.decode(Data(#"{"model":"demo","messages":[{"role":"user","content":"x"}]}"#.utf8))
        #expect(validation.tokenCap(of: open) == 100)
        let small = try validation.decode(Data(#"{"model":"small","messages":[{"role":"user","content":"x"}]}"#.utf8))
        #expect(validation.tokenCap(of: small) == 10)
        let asked = try validation.decode(
            Data(#"{"model":"small","max_tokens":4,"messages":[{"role":"user","content":"x"}]}"#.utf8))
        #expect(validation.tokenCap(of: asked) == 4)
        let over = rejection(#"{"model":"small","max_tokens":11,"messages":[{"role":"user","content":"x"}]}"#)
        #expect(over?.param == "max_tokens" && over?.message.contains("between 1 and 10") == true)
    }

    /// An event id or a sequence number past what the stream table holds is not a cursor: it would fail, out of
    /// range, the one statement that reads many streams at once.
    @Test func cursorsStayInsideTheSchema() {
        #expect(StreamCursor(eventID: "2147483647")?.sequence == 2_147_483_647)
        for text in ["3000000000", "2147483648", "-1", "1e3", "", " 1", "99999999999999999999"] {
            #expect(StreamCursor(eventID: text) == nil, "\(text)")
        }
        #expect(ResponsesRoute.startingAfter("-1") == -1)
        #expect(ResponsesRoute.startingAfter("2147483647") == 2_147_483_647)
        for text in ["-2", "2147483648", "3000000000", "x"] {
            #expect(ResponsesRoute.startingAfter(text) == nil, "\(text)")
        }
    }

    @Test func aCatalogueModelMayCapItsReplies() throws {
        let json =
            #"{"models":[{"name":"small","backend":"demo","max_tokens":10},{"name":"x","backend":"openai","#
            + #""upstreams":[{"base_url":"http://127.0.0.1:1/v1","model":"m","max_line_bytes":512,"max_reply_bytes":4096}]}]}"#
        let catalogue = try ModelCatalogue(json: Data(json.utf8))
        #expect(catalogue.model(named: "small")?.maxTokens == 10)
        #expect(catalogue.model(named: "x")?.upstreams.first?.maxLineBytes == 512)
        #expect(catalogue.model(named: "x")?.upstreams.first?.maxReplyBytes == 4096)
        #expect(throws: CatalogueError.self) {
            try ModelCatalogue(json: Data(#"{"models":[{"name":"small","backend":"demo","max_tokens":0}]}"#.utf8))
        }
    }

    /// The SSE server's reading of a request: a cursor past the schema, or a token of the other kind, is this
    /// request's own 400 or 403, before any statement.
    @Test func streamRequestsRefuseWhatNoStreamCouldHave() throws {
        let secret = StreamSecret(bytes: Array(repeating: 3, count: 32))
        let task = UUID()
        let expiry = Int64(Date().timeIntervalSince1970) + 60
        let chat = StreamToken(taskID: task, expiresAt: expiry, kind: .chat).encoded(secret: secret)
        let responses = StreamToken(taskID: task, expiresAt: expiry, kind: .responses).encoded(secret: secret)
        let id = task.uuidString.lowercased()
        func parse(_ uri: String, lastEventID: String? = nil) throws(OpenAIError) -> StreamRequest {
            try StreamRequest(
                method: "GET", uri: uri, header: { $0 == StreamRoute.lastEventIDHeader ? lastEventID : nil },
                secret: secret)
        }
        #expect(
            try parse("/sse/chat/completions/\(id)?token=\(chat)", lastEventID: "7")
                == .stream(task: task, start: StreamCursor(sequence: 7)))
        for (uri, lastEventID, status) in [
            ("/sse/chat/completions/\(id)?token=\(chat)", "3000000000", 400),
            ("/sse/chat/completions/\(id)?token=\(chat)&last_event_id=3000000000", nil, 400),
            ("/sse/responses/\(id)?token=\(responses)&stream=true&starting_after=3000000000", nil, 400),
            ("/sse/responses/\(id)?token=\(chat)&stream=true", nil, 403),
            ("/sse/chat/completions/\(id)?token=\(responses)", nil, 403),
        ] as [(String, String?, Int)] {
            #expect(throws: OpenAIError.self) { try parse(uri, lastEventID: lastEventID) }
            do {
                _ = try parse(uri, lastEventID: lastEventID)
            } catch {
                #expect(error.status == status, "\(uri)")
            }
        }
        #expect(
            try parse("/sse/responses/\(id)?token=\(responses)&stream=true&starting_after=4")
                == .responses(task: task, streaming: true, startingAfter: 4))
    }
}
