import Foundation
import HandoffWire
import Testing

@testable import Worker

/// The relay's rules on recorded upstream chunk shapes: identity rewritten, everything else passed through, role
/// chunks dropped, finish and usage held back to close the stream, usage shown only to clients that asked.
struct UpstreamRelayTests {
    func events(includeUsage: Bool) -> CompletionEvents {
        let body =
            includeUsage
            ? #"{"model":"local","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#
            : #"{"model":"local","stream":true,"messages":[{"role":"user","content":"hi"}]}"#
        let request = try! JSONDecoder().decode(ChatCompletionRequest.self, from: Data(body.utf8))
        let id = UUID(uuidString: "00000000-0000-0000-0000-00000000000a")!
        return CompletionEvents(task: ClaimedTask(id: id, request: request, body: body, attempt: 1, created: 42))
    }

    /// What the relay makes of `payloads`, rendered from the stored form as a client receives it.
    func relay(_ payloads: [String], includeUsage: Bool) throws -> (streamed: [String], ending: ReplyEnding) {
        let events = events(includeUsage: includeUsage)
        var relay = UpstreamRelay(events: events, promptEstimate: 1, secrets: ["sk-secret"])
        let streamed = try payloads.flatMap { try relay.accept($0) }
        var ending = try relay.ending()
        ending.closing = ending.closing.map(events.frame.rendered)
        return (streamed.map(events.frame.rendered), ending)
    }

    /// llama.cpp's shape: role chunk with `content: null`, `timings` on the last chunk, usage when asked.
    let llamaCpp = [
        #"{"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}],"created":1,"id":"chatcmpl-up","model":"smollm2","system_fingerprint":"b1","object":"chat.completion.chunk"}"#,
        #"{"choices":[{"finish_reason":null,"index":0,"delta":{"content":"Hé"}}],"created":1,"id":"chatcmpl-up","model":"smollm2","object":"chat.completion.chunk"}"#,
        #"{"choices":[{"finish_reason":null,"index":0,"delta":{"content":"llo"}}],"created":1,"id":"chatcmpl-up","model":"smollm2","object":"chat.completion.chunk"}"#,
        #"{"choices":[{"finish_reason":"stop","index":0,"delta":{}}],"created":1,"id":"chatcmpl-up","model":"smollm2","object":"chat.completion.chunk","timings":{"predicted_n":2,"predicted_ms":1.5}}"#,
        #"{"choices":[],"created":1,"id":"chatcmpl-up","model":"smollm2","object":"chat.completion.chunk","usage":{"completion_tokens":2,"prompt_tokens":9,"total_tokens":11}}"#,
    ]

    @Test func identityIsRewrittenAndTheRestPassesThrough() throws {
        let (streamed, ending) = try relay(llamaCpp, includeUsage: true)
        #expect(
            streamed == [
                #"{"id":"chatcmpl-0000000000000000000000000000000a","object":"chat.completion.chunk","created":42,"model":"local","choices":[{"finish_reason":null,"index":0,"delta":{"content":"Hé"}}]}"#,
                #"{"id":"chatcmpl-0000000000000000000000000000000a","object":"chat.completion.chunk","created":42,"model":"local","choices":[{"finish_reason":null,"index":0,"delta":{"content":"llo"}}]}"#,
            ])
        #expect(ending.closing.count == 2)
        #expect(
            ending.closing[0].contains(#""finish_reason":"stop""#)
                && ending.closing[0].contains(#""timings":{"predicted_n":2,"predicted_ms":1.5}"#))
        #expect(
            ending.closing[1].hasPrefix(
                #"{"id":"chatcmpl-0000000000000000000000000000000a","object":"chat.completion.chunk","created":42,"model":"local","choices":[]"#
            ))
        #expect(ending.usage == Usage(promptTokens: 9, completionTokens: 2) && !ending.usageCounted)
    }

    @Test func usageIsChargedButHiddenFromAClientThatDidNotAskForIt() throws {
        let openAI = [
            #"{"id":"x","object":"chat.completion.chunk","created":1,"model":"gpt","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#,
            #"{"id":"x","object":"chat.completion.chunk","created":1,"model":"gpt","choices":[{"index":0,"delta":{"content":"Hi"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
            #"{"id":"x","object":"chat.completion.chunk","created":1,"model":"gpt","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}"#,
            #"{"id":"x","object":"chat.completion.chunk","created":1,"model":"gpt","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#,
        ]
        let (streamed, ending) = try relay(openAI, includeUsage: false)
        #expect(streamed.count == 1 && !streamed[0].contains("usage"))
        #expect(ending.closing.count == 1 && !ending.closing[0].contains("usage"))
        #expect(ending.usage == Usage(promptTokens: 5, completionTokens: 1))
    }

    @Test func toolCallsReasoningAndLogprobsAreOutput() throws {
        let payloads = [
            #"{"choices":[{"index":0,"delta":{"role":"assistant","tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}"#,
            #"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\": 1.50}"}}]}}]}"#,
            #"{"choices":[{"index":0,"delta":{"reasoning_content":"hmm"}}]}"#,
            #"{"choices":[{"index":0,"delta":{},"logprobs":{"content":[]}}]}"#,
            #"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
        ]
        let (streamed, ending) = try relay(payloads, includeUsage: false)
        #expect(streamed.count == 4)
        // Byte for byte what clients received before events were stored without their identity (issue 24).
        let identity =
            #"{"id":"chatcmpl-0000000000000000000000000000000a","object":"chat.completion.chunk","created":42,"model":"local""#
        #expect(
            streamed == [
                identity
                    + #","choices":[{"index":0,"delta":{"role":"assistant","tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}"#,
                identity
                    + #","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\": 1.50}"}}]}}]}"#,
                identity + #","choices":[{"index":0,"delta":{"reasoning_content":"hmm"}}]}"#,
                identity + #","choices":[{"index":0,"delta":{},"logprobs":{"content":[]}}]}"#,
            ])
        #expect(ending.usageCounted && ending.usage.completionTokens == 4)
    }

    @Test func anUnfinishedStreamAndAnErrorEventAreFailuresThatSayNoSecret() throws {
        var relay = UpstreamRelay(events: events(includeUsage: false), promptEstimate: 1, secrets: ["sk-secret"])
        _ = try relay.accept(llamaCpp[1])
        #expect(throws: UpstreamFailure.self) { try relay.ending() }
        do {
            _ = try relay.accept(
                #"{"error":{"code":500,"message":"slot failed at http://10.0.0.7:9000 with key sk-secret\nTraceback","type":"server_error"}}"#
            )
            Issue.record("an error event was accepted")
        } catch {
            #expect(error.error.code == "upstream_error" && error.retryable)
            #expect(!error.error.message.contains("10.0.0.7") && !error.error.message.contains("sk-secret"))
            #expect(!error.error.message.contains("Traceback") && !error.error.message.contains("http"))
        }
    }

    /// The upstream is told the task's cap when the client named none, so no server's own default (vLLM's: the rest of
    /// the context) applies; a client's own limit goes through as it is.
    @Test func theTasksCapReachesTheUpstreamWhenTheClientSetNone() throws {
        let open = #"{"model":"local","messages":[{"role":"user","content":"hi"}]}"#
        #expect(
            String(buffer: try UpstreamRequestBody.make(clientBody: open, upstreamModel: "m", tokenCap: 64)).hasSuffix(
                #","max_tokens":64}"#))
        for own in [#""max_tokens":7"#, #""max_completion_tokens":7"#] {
            let client = #"{"model":"local",\#(own),"messages":[{"role":"user","content":"hi"}]}"#
            let body = String(buffer: try UpstreamRequestBody.make(clientBody: client, upstreamModel: "m", tokenCap: 7))
            #expect(body.contains(own) && !body.contains(":64") && body.components(separatedBy: "max_").count == 2)
        }
    }

    /// A stored body that names a key twice (jsonb never prints one; a row written by other means could) never reaches
    /// an upstream: which of the two it would run is exactly what admission did not check.
    @Test func aBodyNamingAKeyTwiceIsNeverSent() {
        let twice = #"{"model":"local","max_tokens":2,"messages":[],"max_tokens":100000}"#
        #expect(throws: UpstreamRequestBody.Ambiguous.self) {
            try UpstreamRequestBody.make(clientBody: twice, upstreamModel: "m")
        }
    }

    @Test func theRequestBodyKeepsEveryFieldAndAsksForAStreamWithUsage() throws {
        let client =
            #"{"model":"local","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function"}],"temperature":0.70,"x_custom":{"a":[1,2.5e3]},"stream":false,"stream_options":null}"#
        let body = try UpstreamRequestBody.make(clientBody: client, upstreamModel: "smollm2")
        #expect(
            String(buffer: body)
                == #"{"model":"smollm2","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function"}],"temperature":0.70,"x_custom":{"a":[1,2.5e3]}}"#
        )
    }
}

/// Every shape of upstream error becomes one OpenAI error a client can act on.
struct UpstreamFailureTests {
    func rejected(_ status: Int, _ body: String, retryAfter: Duration? = nil) -> UpstreamFailure {
        UpstreamFailure.rejected(status: status, body: Data(body.utf8), retryAfter: retryAfter, secrets: ["sk-secret"])
    }

    @Test func llamaCppContextOverflowNamesTheLimit() {
        let failure = rejected(
            400,
            #"{"error":{"code":400,"message":"the request exceeds the available context size, try increasing it","type":"exceed_context_size_error","n_prompt_tokens":4100,"n_ctx":2048}}"#
        )
        #expect(failure.error.status == 400 && failure.error.code == "context_length_exceeded" && !failure.retryable)
        #expect(failure.error.message.contains("2048") && failure.error.message.contains("4100"))
    }

    @Test func vllmShapesOldAndNew() {
        let new = rejected(
            400, #"{"error":{"message":"temperature must be >= 0","type":"BadRequestError","param":null,"code":400}}"#)
        #expect(
            new.error.status == 400 && new.error.type == "invalid_request_error" && new.error.code == "400"
                && !new.retryable)
        let old = rejected(
            400,
            #"{"object":"error","message":"This model's maximum context length is 4096 tokens.","type":"BadRequestError","param":null,"code":400}"#
        )
        #expect(old.error.code == "context_length_exceeded" && old.error.message.contains("4096"))
    }

    @Test func serverErrorsAndRateLimitsFailOver() {
        let proxy = rejected(
            502,
            "upstream connect error or disconnect/reset before headers. reset reason: connection failure, transport failure reason: http://10.0.0.7:9000"
        )
        #expect(proxy.retryable && proxy.error.status == 502 && proxy.error.code == "upstream_error")
        #expect(!proxy.error.message.contains("10.0.0.7") && !proxy.error.message.contains("reset reason"))
        let limited = rejected(
            429,
            #"{"error":{"message":"Rate limit reached","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#,
            retryAfter: .seconds(1))
        #expect(limited.retryable && limited.retryAfter == .seconds(1) && limited.error.code == "upstream_overloaded")
        let credentials = rejected(
            401,
            #"{"error":{"message":"Incorrect API key provided: sk-secret","type":"invalid_request_error","code":"invalid_api_key"}}"#
        )
        #expect(credentials.error.status == 502 && !credentials.error.message.contains("sk-secret"))
    }
}
