import Foundation
import HandoffWire
import Testing

@testable import Worker

/// Continuing an answer whose server failed mid-answer: when it may be continued, what the continuation asks, and
/// what the relay keeps of the answer so far.
struct ContinuationTests {
    let policy = ContinuationPolicy(maxContinuations: 2)
    let prefill: [UpstreamContinuation] = [.none, .prefill]

    func decide(_ partial: PartialAnswer, choices: Int = 1, continued: Int = 0, modes: [UpstreamContinuation]? = nil)
        -> ContinuationPolicy.Decision
    {
        policy.decide(partial, choices: choices, continued: continued, modes: modes ?? prefill)
    }

    @Test func aTextAnswerIsContinuedUpToTheLimit() {
        let text = PartialAnswer(text: "Once upon")
        #expect(decide(text) == .continueAnswer)
        #expect(decide(text, continued: 1) == .continueAnswer)
        #expect(decide(text, continued: 2) == .end(.exhausted(2)))
    }

    @Test func whatCannotBeContinuedSaysWhy() {
        #expect(decide(PartialAnswer(text: "x"), modes: [.none, .none]) == .end(.notSupported))
        #expect(decide(PartialAnswer(text: "x", toolCalls: true)) == .end(.toolCalls))
        #expect(decide(PartialAnswer(text: "x"), choices: 2) == .end(.choices))
        #expect(decide(PartialAnswer(text: "x", logprobs: true)) == .end(.logprobs))
        #expect(decide(PartialAnswer(text: "x", reasoning: true)) == .end(.reasoning))
        #expect(decide(PartialAnswer()) == .end(.nothingToContinue))
        #expect(ContinuationPolicy.Reason.toolCalls.explanation == "it has tool calls")
    }

    let body = #"{"model":"local","messages":[{"role":"user","content":"hi"}],"max_tokens":100,"temperature":0}"#

    func continued(_ body: String, mode: UpstreamContinuation, tokenCap: Int? = nil) throws -> [String: Any] {
        let buffer = try UpstreamRequestBody.make(
            clientBody: body, upstreamModel: "up", tokenCap: tokenCap,
            continuing: .init(text: "Once \"upon\" a tïme", produced: 30, mode: mode))
        return try #require(try JSONSerialization.jsonObject(with: Data(buffer.readableBytesView)) as? [String: Any])
    }

    @Test func aPrefillIsTheRequestWithTheAnswerSoFarLast() throws {
        let json = try continued(body, mode: .prefill)
        let messages = try #require(json["messages"] as? [[String: String]])
        #expect(
            messages == [["role": "user", "content": "hi"], ["role": "assistant", "content": "Once \"upon\" a tïme"]])
        #expect(json["max_tokens"] as? Int == 70, "less what the first attempt produced")
        #expect(json["temperature"] as? Int == 0)
        #expect(json["continue_final_message"] == nil)
    }

    @Test func vllmIsAskedToContinueTheFinalMessage() throws {
        let json = try continued(
            #"{"model":"m","messages":[{"role":"user","content":"hi"}],"add_generation_prompt":true}"#,
            mode: .continueFinalMessage, tokenCap: 50)
        #expect(json["continue_final_message"] as? Bool == true)
        #expect(json["add_generation_prompt"] as? Bool == false, "the client's own value is replaced")
        #expect(json["max_tokens"] as? Int == 20, "the task's cap, less what was produced")
        #expect((json["messages"] as? [Any])?.count == 2)
    }

    @Test func theRelayKeepsTheTextTheClientGotAcrossMultiByteCharacters() throws {
        let events = UpstreamRelayTests().events(includeUsage: false)
        var relay = UpstreamRelay(events: events, promptEstimate: 1, secrets: [])
        var answer = PartialAnswer()
        for piece in ["Hé", "llo ", "wörld"] {
            _ = try relay.accept(#"{"choices":[{"index":0,"delta":{"content":"\#(piece)"}}]}"#)
            answer.append(relay.piece)
        }
        // Held back for the end, so not the client's yet.
        _ = try relay.accept(#"{"choices":[{"index":0,"delta":{"content":"!"},"finish_reason":"stop"}]}"#)
        answer.append(relay.piece)
        #expect(answer == PartialAnswer(text: "Héllo wörld"))
    }

    @Test func theRelayFlagsWhatCannotBeContinued() throws {
        let events = UpstreamRelayTests().events(includeUsage: false)
        var relay = UpstreamRelay(events: events, promptEstimate: 1, secrets: [])
        _ = try relay.accept(
            #"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"name":"f","arguments":""}}]}}]}"#)
        #expect(relay.piece.toolCalls)
        _ = try relay.accept(#"{"choices":[{"index":0,"delta":{"reasoning_content":"hm"}}]}"#)
        #expect(relay.piece.reasoning && !relay.piece.toolCalls)
        _ = try relay.accept(#"{"choices":[{"index":0,"delta":{"content":"a"},"logprobs":{"content":[]}}]}"#)
        #expect(relay.piece.logprobs && relay.piece.text == "a")
    }
}
