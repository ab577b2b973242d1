import Foundation
import HandoffWire
import Testing

@testable import Worker

/// The worker stores its events without what every chunk of a completion shares (`ChunkFrame`); rendered back they
/// must be, byte for byte, what the generic chunk renderer makes (what clients received before, issue 24).
struct CompletionEventsTests {
    func task(includeUsage: Bool, stream: Bool = true) -> ClaimedTask {
        let request = ChatCompletionRequest(
            model: "demo", messages: [ChatMessage(role: "user", content: "hi")], stream: stream,
            streamOptions: includeUsage ? .init(includeUsage: true) : nil)
        return ClaimedTask(id: UUID(), request: request, body: "{}", attempt: 1, created: 1_700_000_000)
    }

    func generic(_ task: ClaimedTask, _ choices: [ChatCompletionChunk.Choice], usage: ChatCompletionChunk.UsageField)
        -> String
    {
        ChatCompletionChunk(id: task.completionID, created: task.created, model: "demo", choices: choices, usage: usage)
            .json.text
    }

    @Test(arguments: [false, true], ["Once", " upon a \"time\"", "\r\n\\", "é🦄\u{301}", ""])
    func contentChunksMatchTheGenericRendering(includeUsage: Bool, text: String) {
        let task = task(includeUsage: includeUsage)
        let events = CompletionEvents(task: task)
        let stored = events.content(text)
        #expect(stored == JSONValue.string(text).text, "a content delta is stored as its text alone")
        #expect(
            events.frame.rendered(stored)
                == generic(task, [.init(delta: .init(content: text))], usage: includeUsage ? .null : .omitted))
    }

    @Test(arguments: [false, true])
    func roleFinishUsageAndErrorEventsRenderAsBefore(includeUsage: Bool) {
        let task = task(includeUsage: includeUsage)
        let events = CompletionEvents(task: task)
        let usage = Usage(promptTokens: 3, completionTokens: 5)
        let field: ChatCompletionChunk.UsageField = includeUsage ? .null : .omitted
        var expected = [
            generic(task, [.init(delta: .init(role: "assistant", content: ""))], usage: field),
            generic(task, [.init(delta: .init(), finishReason: "stop")], usage: field),
        ]
        if includeUsage { expected.append(generic(task, [], usage: .value(usage))) }
        let stored = [events.role()] + events.end(reason: "stop", usage: usage)
        #expect(stored.allSatisfy { $0.hasPrefix(",") }, "stored without the identity")
        #expect(stored.map(events.frame.rendered) == expected)
        let error = events.error(.workerLost)
        #expect(events.frame.rendered(error) == OpenAIError.workerLost.json.text)
    }

    /// A replica renders with the header it reads from the task's row; the frame must agree with the worker's for
    /// every way a request asks (or does not ask) for usage.
    @Test(arguments: [(false, true), (true, true), (false, false)])
    func theFrameFromTheHeaderIsTheWorkers(includeUsage: Bool, stream: Bool) {
        let task = task(includeUsage: includeUsage, stream: stream)
        let events = CompletionEvents(task: task)
        let frame = ChunkFrame(
            task: task.id, created: task.created, model: "demo",
            includeUsage: ChatCompletionRequest.includesUsage(
                streamOptionsIncludeUsage: includeUsage ? true : nil, stream: stream))
        for stored in [events.role(), events.content("x")]
            + events.end(reason: "length", usage: .init(promptTokens: 1, completionTokens: 1))
        {
            #expect(frame.rendered(stored) == events.frame.rendered(stored))
        }
    }

    /// A Responses stream is rendered from the same chunks: from the stored events as it was from the full ones.
    @Test func aResponsesStreamRendersAsBefore() {
        let task = task(includeUsage: true)
        let events = CompletionEvents(task: task)
        let usage = Usage(promptTokens: 3, completionTokens: 2)
        let stored =
            [events.role(), events.content("Hel"), events.content("lo")] + events.end(reason: "stop", usage: usage)
        let before = [
            generic(task, [.init(delta: .init(role: "assistant", content: ""))], usage: .null),
            generic(task, [.init(delta: .init(content: "Hel"))], usage: .null),
            generic(task, [.init(delta: .init(content: "lo"))], usage: .null),
            generic(task, [.init(delta: .init(), finishReason: "stop")], usage: .null),
            generic(task, [], usage: .value(usage)),
        ]
        func frames(_ chunks: [String]) -> [String] {
            var renderer = ResponseRenderer(
                task: task.id, created: task.created, settings: ResponseSettings(model: "demo", background: false))
            var rendered = renderer.opening()
            for chunk in chunks { rendered += renderer.render(chunk, committed: 200) }
            return rendered.map(\.frame)
        }
        #expect(frames(stored.map(events.frame.rendered)) == frames(before))
    }
}
