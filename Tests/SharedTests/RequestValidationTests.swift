import Foundation
import HandoffWire
import Testing

struct RequestValidationTests {
    let validation = RequestValidation(models: ["demo"], maxTokensLimit: 100)

    func decode(_ json: String) throws(OpenAIError) -> ChatCompletionRequest {
        try validation.decode(Data(json.utf8))
    }

    func rejection(_ json: String) -> OpenAIError? {
        do {
            _ = try decode(json)
            return nil
        } catch {
            return error
        }
    }

    @Test func acceptsTheSeedRequestAndIgnoresUnknownFields() throws {
        let request = try decode(
            #"{"model":"demo","stream":true,"stream_options":{"include_usage":true},"temperature":0.2,"#
                + #""messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi","name":"ann"}]}"#)
        #expect(request.model == "demo")
        #expect(
            request.messages == [
                ChatMessage(role: "system", content: "Be brief."),
                ChatMessage(role: "user", content: "Hi", name: "ann"),
            ])
        #expect(request.stream == true)
        #expect(request.includeUsage)
        #expect(request.tokenLimit == nil)
    }

    @Test func maxCompletionTokensSupersedesMaxTokens() throws {
        let request = try decode(
            #"{"model":"demo","max_tokens":50,"max_completion_tokens":7,"messages":[{"role":"user","content":"x"}]}"#)
        #expect(request.tokenLimit == 7)
    }

    @Test(arguments: [
        (#"{"model":"demo","messages":[]}"#, "messages", 400),
        (#"{"model":"demo"}"#, "messages", 400),
        (#"{"messages":[{"role":"user","content":"x"}]}"#, "model", 400),
        (#"{"model":7,"messages":[{"role":"user","content":"x"}]}"#, "model", 400),
        (#"{"model":"demo","messages":{"role":"user"}}"#, "messages", 400),
        (#"{"model":"demo","messages":[{"role":"wizard","content":"x"}]}"#, "messages[0].role", 400),
        (#"{"model":"demo","messages":[{"role":"user","content":"x"},{"content":"y"}]}"#, "messages[1].role", 400),
        (#"{"model":"demo","messages":[{"role":"user","content":5}]}"#, "messages[0].content", 400),
        (#"{"model":"demo","messages":[{"role":"user"}]}"#, "messages[0].content", 400),
        (#"{"model":"demo","messages":[{"role":"user","content":"a\u0000b"}]}"#, "messages[0].content", 400),
        (#"{"model":"demo","messages":[{"role":"user","content":"x","name":"\u0000"}]}"#, "messages[0].name", 400),
        (#"{"model":"demo","max_tokens":0,"messages":[{"role":"user","content":"x"}]}"#, "max_tokens", 400),
        (#"{"model":"demo","max_tokens":101,"messages":[{"role":"user","content":"x"}]}"#, "max_tokens", 400),
        (#"{"model":"demo","max_tokens":"ten","messages":[{"role":"user","content":"x"}]}"#, "max_tokens", 400),
        (
            #"{"model":"demo","max_completion_tokens":-1,"messages":[{"role":"user","content":"x"}]}"#,
            "max_completion_tokens", 400
        ),
        (#"{"model":"demo","stream":"yes","messages":[{"role":"user","content":"x"}]}"#, "stream", 400),
        (
            #"{"model":"demo","stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}"#,
            "stream_options", 400
        ),
        (
            #"{"model":"demo","stream":true,"stream_options":{"include_usage":1},"messages":[{"role":"user","content":"x"}]}"#,
            "stream_options.include_usage", 400
        ),
        (#"{"model":"gpt-9","messages":[{"role":"user","content":"x"}]}"#, "model", 404),
    ])
    func rejectsAndNamesTheField(json: String, param: String, status: Int) throws {
        let error = try #require(rejection(json))
        #expect(error.param == param)
        #expect(error.status == status)
        #expect(error.type == "invalid_request_error")
    }

    @Test func unknownModelIsModelNotFound() throws {
        let error = try #require(rejection(#"{"model":"gpt-9","messages":[{"role":"user","content":"x"}]}"#))
        #expect(error.code == "model_not_found")
    }

    @Test(arguments: ["", "{", "[1,2]", "null", #"{"model":"demo","messages":[{"role":"user","content":"x"}]"#])
    func rejectsBodiesThatAreNotARequestObject(body: String) throws {
        let error = try #require(rejection(body))
        #expect(error.status == 400)
    }

    @Test func contentMayBeTextPartsOrNullForAnAssistantTurn() throws {
        let request = try decode(
            #"{"model":"demo","messages":[{"role":"developer","content":[{"type":"text","text":"Be "},{"type":"text","text":"brief."}]},"#
                + #"{"role":"assistant","content":null},{"role":"tool","content":"42"}],"stop":"END","seed":7,"user":"u","n":1}"#
        )
        #expect(request.messages.map(\.content) == ["Be brief.", "", "42"])
        #expect(request.stop == StopSequences(["END"]))
        #expect(request.includeUsage, "a non-streaming request always gets usage: its answer reports it")
    }

    @Test(arguments: [
        (
            #"{"model":"demo","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}"#,
            "messages[0].content[0].type"
        ),
        (#"{"model":"demo","messages":[{"role":"user","content":null}]}"#, "messages[0].content"),
        (#"{"model":"demo","messages":[{"role":"user","content":{"text":"hi"}}]}"#, "messages[0].content"),
        (#"{"model":"demo","n":3,"messages":[{"role":"user","content":"hi"}]}"#, "n"),
        (#"{"model":"demo","temperature":2.5,"messages":[{"role":"user","content":"hi"}]}"#, "temperature"),
        (#"{"model":"demo","top_p":1.5,"messages":[{"role":"user","content":"hi"}]}"#, "top_p"),
        (#"{"model":"demo","stop":["a","b","c","d","e"],"messages":[{"role":"user","content":"hi"}]}"#, "stop"),
        (#"{"model":"demo","stop":[""],"messages":[{"role":"user","content":"hi"}]}"#, "stop"),
        (#"{"model":"demo","stop":7,"messages":[{"role":"user","content":"hi"}]}"#, "stop"),
    ])
    func newFieldsAreCheckedAndNamed(json: String, param: String) {
        let error = rejection(json)
        #expect(error?.status == 400)
        #expect(error?.param == param, "\(String(describing: error))")
    }
}
