/// The body of `POST /chat/completions`, as far as Handoff reads it. Unknown fields are ignored, as OpenAI's
/// own server ignores what it does not know.
public struct ChatCompletionRequest: Codable, Sendable, Equatable {
    public var model: String
    public var messages: [ChatMessage]
    public var maxTokens: Int?
    public var maxCompletionTokens: Int?
    public var stream: Bool?
    public var streamOptions: StreamOptions?

    public init(
        model: String, messages: [ChatMessage], maxTokens: Int? = nil, maxCompletionTokens: Int? = nil,
        stream: Bool? = nil, streamOptions: StreamOptions? = nil
    ) {
        self.model = model
        self.messages = messages
        self.maxTokens = maxTokens
        self.maxCompletionTokens = maxCompletionTokens
        self.stream = stream
        self.streamOptions = streamOptions
    }

    /// The reply's token budget: `max_completion_tokens` supersedes `max_tokens`, as in OpenAI's API.
    public var tokenLimit: Int? { maxCompletionTokens ?? maxTokens }

    public var includeUsage: Bool { streamOptions?.includeUsage ?? false }

    enum CodingKeys: String, CodingKey {
        case model, messages, stream
        case maxTokens = "max_tokens"
        case maxCompletionTokens = "max_completion_tokens"
        case streamOptions = "stream_options"
    }
}

public struct ChatMessage: Codable, Sendable, Equatable {
    public static let roles: Set<String> = ["system", "developer", "user", "assistant", "tool"]

    public var role: String
    public var content: String
    public var name: String?

    public init(role: String, content: String, name: String? = nil) {
        self.role = role
        self.content = content
        self.name = name
    }
}

public struct StreamOptions: Codable, Sendable, Equatable {
    public var includeUsage: Bool?

    public init(includeUsage: Bool?) {
        self.includeUsage = includeUsage
    }

    enum CodingKeys: String, CodingKey {
        case includeUsage = "include_usage"
    }
}
