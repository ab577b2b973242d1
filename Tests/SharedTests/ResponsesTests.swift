import Foundation
import Testing

@testable import HandoffWire

/// The Responses rendering of a chat stream, and the Responses request's translation into a chat completion.
struct ResponsesTests {
    let task = UUID()

    func chunk(_ content: String? = nil, finish: String? = nil, usage: String? = nil) -> String {
        let delta = content.map { #"{"content":"\#($0)"}"# } ?? "{}"
        let choices =
            usage == nil
            ? #"[{"index":0,"delta":\#(delta),"finish_reason":\#(finish.map { "\"\($0)\"" } ?? "null")}]"# : "[]"
        return
            #"{"id":"chatcmpl-x","object":"chat.completion.chunk","created":1,"model":"demo","choices":\#(choices),"usage":\#(usage ?? "null")}"#
    }

    let usage = #"{"prompt_tokens":4,"completion_tokens":2,"total_tokens":6}"#

    func render(_ events: [String], background: Bool = false) -> (ResponseRenderer, [ResponseEvent]) {
        var renderer = ResponseRenderer(
            task: task, created: 100, settings: ResponseSettings(model: "demo", background: background))
        var rendered = renderer.opening()
        for event in events { rendered += renderer.render(event, committed: 200) }
        return (renderer, rendered)
    }

    func object(_ event: ResponseEvent) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(event.json.text.utf8)) as? [String: Any])
    }

    @Test func aTextAnswerRendersOpenAIsEventsInOrderWithDenseSequenceNumbers() throws {
        let (renderer, events) = render(
            [chunk(""), chunk("Hel"), chunk("lo"), chunk(finish: "stop"), chunk(usage: usage)], background: true)
        #expect(
            events.map(\.type) == [
                "response.created", "response.queued", "response.in_progress", "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done", "response.completed",
            ])
        #expect(events.map(\.sequenceNumber) == Array(0..<events.count))
        let done = try object(events[7])
        #expect(done["text"] as? String == "Hello" && (done["logprobs"] as? [Any])?.isEmpty == true)
        let completed = try #require(try object(events.last!)["response"] as? [String: Any])
        #expect(
            completed["id"] as? String == ResponseID.response(for: task)
                && completed["status"] as? String == "completed")
        #expect(completed["completed_at"] as? Int == 200)
        let usage = try #require(completed["usage"] as? [String: Any])
        #expect(
            usage["input_tokens"] as? Int == 4 && usage["output_tokens"] as? Int == 2
                && usage["total_tokens"] as? Int == 6)
        #expect(renderer.ended && renderer.status == .completed)
        #expect(
            !events[0].frame.contains("id:")
                && events[0].frame.hasPrefix("event: response.created\ndata: {\"type\":\"response.created\""))
    }

    @Test func theSameStreamRendersTheSameEvents() {
        let stream = [chunk(""), chunk("a"), chunk("b"), chunk(finish: "length"), chunk(usage: usage)]
        #expect(render(stream).1 == render(stream).1, "a replay is what a resume is made of")
        let (renderer, events) = render(stream)
        #expect(events.last?.type == "response.incomplete" && renderer.status == .incomplete)
        #expect(renderer.response.text.contains(#""incomplete_details":{"reason":"max_output_tokens"}"#))
    }

    @Test func failuresAndCancellationsEndAsResponsesDo() {
        let failed = render([
            chunk(""), chunk("a"),
            #"{"error":{"message":"The worker stopped.","type":"server_error","param":null,"code":"worker_lost"}}"#,
        ])
        #expect(failed.1.last?.type == "response.failed" && failed.0.status == .failed)
        #expect(failed.0.response.text.contains(#""error":{"code":"server_error","message":"The worker stopped."}"#))
        #expect(failed.0.response.text.contains(#""text":"a""#), "what streamed before the failure stays in output")
        let cancelled = render([chunk(""), chunk("a"), chunk(finish: "cancelled"), chunk(usage: usage)])
        #expect(
            cancelled.1.last?.type == "response.output_text.delta", "no event for a cancellation: the stream just ends")
        #expect(cancelled.0.status == .cancelled && cancelled.0.ended)
    }

    @Test func aRequestBecomesAChatCompletionAndItsFieldsAreEchoed() throws {
        let body =
            #"{"model":"demo","instructions":"Be brief.","input":[{"role":"user","content":[{"type":"input_text","text":"Hi"}]}],"max_output_tokens":5,"temperature":0.5,"metadata":{"a":"b"},"background":true,"stream":true}"#
        let request = try ResponsesRequest(
            Data(body.utf8), validation: RequestValidation(models: ["demo"], maxTokensLimit: 100))
        #expect(request.stream && request.settings.background && request.settings.metadata == ["a": "b"])
        #expect(
            request.chat.messages.map(\.role) == ["system", "user"]
                && request.chat.messages.map(\.content) == ["Be brief.", "Hi"])
        #expect(request.chat.maxTokens == 5 && request.chat.includeUsage && request.chat.stream == true)
        #expect(try ResponseSettings(stored: request.settings.stored) == request.settings)
        #expect(ResponseID.task(from: ResponseID.response(for: task)) == task)
    }

    @Test(arguments: [
        (#"{"model":"demo","input":"hi","tools":[{"type":"web_search"}]}"#, "tools"),
        (#"{"model":"demo","input":"hi","previous_response_id":"resp_1"}"#, "previous_response_id"),
        (
            #"{"model":"demo","input":[{"role":"user","content":[{"type":"input_image","image_url":"x"}]}]}"#,
            "input[0].content[0].type"
        ),
        (#"{"model":"demo","input":"hi","max_output_tokens":1000}"#, "max_output_tokens"),
        (#"{"model":"demo","input":"hi","background":true,"store":false}"#, "store"),
        (#"{"model":"demo"}"#, "input"),
    ])
    func unsupportedOrInvalidFieldsAreNamed(body: String, param: String) {
        do {
            _ = try ResponsesRequest(
                Data(body.utf8), validation: RequestValidation(models: ["demo"], maxTokensLimit: 100))
            Issue.record("accepted: \(body)")
        } catch {
            #expect(error.param == param && error.status == 400, "\(error)")
        }
    }
}
