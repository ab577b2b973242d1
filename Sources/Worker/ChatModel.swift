import HandoffWire

/// The seam between the queue and whatever produces text: the built-in demo model, or OpenAI-compatible upstream
/// servers. A backend streams one task's chunk events into `output` and returns how the reply ended; the
/// dispatcher, the stream writer and the SSE server do not change with the backend. Cancelling the calling task
/// stops it at once (an upstream request is closed).
protocol ChatModel: Sendable {
    /// Streams the reply — or, `continuing` an answer an earlier run streamed before its worker was lost, the rest of
    /// it; throws `ReplyFailure` for a failure the client is to see.
    func reply(to task: ClaimedTask, events: CompletionEvents, output: ReplyOutput, continuing: ContinuedAnswer?)
        async throws -> ReplyEnding

    /// The prompt's token count as well as the backend can tell without the model, for the usage of a reply
    /// stopped before the model reported its own.
    func promptTokens(for request: ChatCompletionRequest) -> Int
}

/// Where a backend puts its reply: each chunk event, in order, as soon as it has it.
struct ReplyOutput: Sendable {
    let emit: @Sendable (String) async -> Void
}

/// A reply that ended as the model meant it to.
struct ReplyEnding: Sendable {
    /// The stream's last events (the finish chunk, then the usage chunk when the client asked for one): they
    /// commit together with the task's outcome.
    var closing: [String]
    /// What the task is charged: the model's own count when it gave one.
    var usage: Usage
    /// The model gave no count: `usage` counts what was streamed (and estimates the prompt).
    var usageCounted = false
}

/// A reply that failed: the error the client sees (in-band after the stream started), and what was used.
struct ReplyFailure: Error {
    var error: OpenAIError
    var usage: Usage?

    /// A backend that stopped without saying how its reply ended.
    static let unfinished = ReplyFailure(error: .server("The model ended without finishing its reply."), usage: nil)
}

enum FinishReason: String, Sendable {
    case stop, length
    /// Never from a model: the task was cancelled by its owner, or abandoned by every client.
    case cancelled
}

/// Model names to backends, built from the catalogue. The worker fails a task whose model it has no backend for,
/// with an error the client sees.
struct ModelRegistry: Sendable {
    private let models: [String: any ChatModel]

    init(_ models: [String: any ChatModel]) {
        self.models = models
    }

    func model(named name: String) -> (any ChatModel)? {
        models[name]
    }
}
