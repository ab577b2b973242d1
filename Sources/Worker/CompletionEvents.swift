import HandoffWire

/// The OpenAI stream of one task, as the events the stream table stores: a role chunk, content deltas, a finish
/// chunk, and the usage chunk (`choices: []`) when the client asked for it. Every chunk shares the task's `id` and
/// `created`, which the stored forms leave out (`ChunkFrame`): a content delta is stored as its text alone.
struct CompletionEvents {
    let id: String
    let created: Int64
    let model: String
    let includeUsage: Bool
    let frame: ChunkFrame

    init(task: ClaimedTask) {
        self.id = task.completionID
        self.created = task.created
        self.model = task.request.model
        self.includeUsage = task.request.includeUsage
        self.frame = ChunkFrame(id: id, created: created, model: model, includeUsage: includeUsage)
    }

    func role() -> String {
        chunk([.init(delta: .init(role: "assistant", content: ""))])
    }

    func content(_ text: String) -> String {
        frame.storedContent(text)
    }

    /// The finish chunk, then the usage chunk if the client asked for usage.
    func end(reason: String, usage: Usage) -> [String] {
        let finish = chunk([.init(delta: .init(), finishReason: reason)])
        guard includeUsage else { return [finish] }
        return [finish, self.usage(usage)]
    }

    /// The usage chunk (`choices: []`), for a client that asked for usage.
    func usage(_ usage: Usage) -> String {
        frame.stored(
            ChatCompletionChunk(id: id, created: created, model: model, choices: [], usage: .value(usage)).json.text)
    }

    /// A failure after the stream started travels in-band as OpenAI's error object.
    func error(_ error: OpenAIError) -> String {
        error.json.text
    }

    private func chunk(_ choices: [ChatCompletionChunk.Choice]) -> String {
        frame.stored(
            ChatCompletionChunk(
                id: id, created: created, model: model, choices: choices, usage: includeUsage ? .null : .omitted
            ).json.text)
    }
}
