import HandoffWire

/// The OpenAI stream of one task, as event JSON: a role chunk, content deltas, a finish chunk, and the usage
/// chunk (`choices: []`) when the client asked for it. Every chunk shares the task's `id` and `created`.
struct CompletionEvents {
    let id: String
    let created: Int64
    let model: String
    let includeUsage: Bool
    /// A content chunk around its text: content chunks differ in nothing else, so the worker renders one per task
    /// and fills in each token's escaped text (the profile showed chunk rendering at a quarter of its CPU).
    private let contentFrame: (prefix: String, suffix: String)

    init(task: ClaimedTask) {
        self.id = task.completionID
        self.created = task.created
        self.model = task.request.model
        self.includeUsage = task.request.includeUsage
        // Rendered by the generic path with a marker text, then split around it: the frame cannot drift from it.
        let marker = "\u{0}"
        let template = Self.chunk(
            id: id, created: created, model: model, includeUsage: includeUsage, [.init(delta: .init(content: marker))])
        let range = template.range(of: JSONValue.string(marker).text)!
        self.contentFrame = (String(template[..<range.lowerBound]), String(template[range.upperBound...]))
    }

    func role() -> String {
        chunk([.init(delta: .init(role: "assistant", content: ""))])
    }

    func content(_ text: String) -> String {
        var chunk = contentFrame.prefix
        JSONValue.string(text).write(to: &chunk)
        chunk += contentFrame.suffix
        return chunk
    }

    /// The finish chunk, then the usage chunk if the client asked for usage.
    func end(reason: String, usage: Usage) -> [String] {
        let finish = chunk([.init(delta: .init(), finishReason: reason)])
        guard includeUsage else { return [finish] }
        return [finish, self.usage(usage)]
    }

    /// The usage chunk (`choices: []`), for a client that asked for usage.
    func usage(_ usage: Usage) -> String {
        ChatCompletionChunk(id: id, created: created, model: model, choices: [], usage: .value(usage)).json.text
    }

    /// A failure after the stream started travels in-band as OpenAI's error object.
    func error(_ error: OpenAIError) -> String {
        error.json.text
    }

    private func chunk(_ choices: [ChatCompletionChunk.Choice]) -> String {
        Self.chunk(id: id, created: created, model: model, includeUsage: includeUsage, choices)
    }

    private static func chunk(
        id: String, created: Int64, model: String, includeUsage: Bool, _ choices: [ChatCompletionChunk.Choice]
    ) -> String {
        ChatCompletionChunk(
            id: id, created: created, model: model, choices: choices, usage: includeUsage ? .null : .omitted
        )
        .json.text
    }
}
