import Shared

/// The OpenAI stream of one task, as event JSON: a role chunk, content deltas, a finish chunk, and the usage
/// chunk (`choices: []`) when the client asked for it. Every chunk shares the task's `id` and `created`.
struct CompletionEvents {
    private let id: String
    private let created: Int64
    private let model: String
    private let includeUsage: Bool

    init(task: ClaimedTask) {
        self.id = task.completionID
        self.created = task.created
        self.model = task.request.model
        self.includeUsage = task.request.includeUsage
    }

    func role() -> String {
        chunk([.init(delta: .init(role: "assistant", content: ""))])
    }

    func content(_ text: String) -> String {
        chunk([.init(delta: .init(content: text))])
    }

    /// The finish chunk, then the usage chunk if the client asked for usage.
    func end(reason: String, usage: Usage) -> [String] {
        let finish = chunk([.init(delta: .init(), finishReason: reason)])
        guard includeUsage else { return [finish] }
        return [finish, ChatCompletionChunk(id: id, created: created, model: model, choices: [], usage: .value(usage)).json.text]
    }

    /// A failure after the stream started travels in-band as OpenAI's error object.
    func error(_ error: OpenAIError) -> String {
        error.json.text
    }

    private func chunk(_ choices: [ChatCompletionChunk.Choice]) -> String {
        ChatCompletionChunk(id: id, created: created, model: model, choices: choices, usage: includeUsage ? .null : .omitted)
            .json.text
    }
}
