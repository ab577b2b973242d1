import Foundation
import HandoffWire
import Testing

@testable import Worker

/// The worker's pre-rendered content frame must produce exactly what the generic chunk renderer does.
struct CompletionEventsTests {
    @Test(arguments: [false, true], ["Once", " upon a \"time\"", "\r\n\\", "é🦄\u{301}", ""])
    func contentChunksMatchTheGenericRendering(includeUsage: Bool, text: String) {
        let request = ChatCompletionRequest(
            model: "demo", messages: [ChatMessage(role: "user", content: "hi")], stream: true,
            streamOptions: includeUsage ? .init(includeUsage: true) : nil)
        let task = ClaimedTask(id: UUID(), request: request, body: "{}", attempt: 1, created: 1_700_000_000)
        let generic = ChatCompletionChunk(
            id: task.completionID, created: task.created, model: "demo", choices: [.init(delta: .init(content: text))],
            usage: includeUsage ? .null : .omitted
        ).json.text
        #expect(CompletionEvents(task: task).content(text) == generic)
    }
}
