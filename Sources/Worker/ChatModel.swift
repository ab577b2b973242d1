import Shared

/// The seam between the queue and whatever produces text. A backend turns one request into an async
/// sequence of deltas and stops when its task is cancelled; the dispatcher, the chunk format and the stream
/// writer do not change when a backend (an upstream OpenAI-compatible server, say) is added.
protocol ChatModel: Sendable {
    func reply(to request: ChatCompletionRequest) -> any AsyncSequence<ModelDelta, any Error>

    /// The prompt's token count, for the usage of a reply stopped before the model reported its own.
    func promptTokens(for request: ChatCompletionRequest) -> Int
}

enum ModelDelta: Sendable, Equatable {
    /// A piece of reply text.
    case content(String)
    /// The reply is over. Always the last element.
    case finished(reason: FinishReason, usage: Usage)
}

enum FinishReason: String, Sendable {
    case stop, length
    /// Never from a model: the task was cancelled by its owner, or abandoned by every client.
    case cancelled
}

/// Model names to backends. The API server accepts exactly the names in `HANDOFF_MODELS`; the worker fails a
/// task whose model it has no backend for, with an error the client sees.
struct ModelRegistry: Sendable {
    private let models: [String: any ChatModel]

    init(_ models: [String: any ChatModel]) {
        self.models = models
    }

    func model(named name: String) -> (any ChatModel)? {
        models[name]
    }
}
