/// One `chat.completion.chunk` of OpenAI's streaming format, encoded key for key as OpenAI sends it
/// (explicit `null`s included), so that strict clients parse it unchanged.
public struct ChatCompletionChunk: Decodable, Sendable, Equatable {
    public var id: String
    public var object: String = "chat.completion.chunk"
    public var created: Int64
    public var model: String
    public var systemFingerprint: String?
    public var choices: [Choice]
    public var usage: UsageField

    public init(
        id: String, created: Int64, model: String, systemFingerprint: String? = nil, choices: [Choice],
        usage: UsageField = .omitted
    ) {
        self.id = id
        self.created = created
        self.model = model
        self.systemFingerprint = systemFingerprint
        self.choices = choices
        self.usage = usage
    }

    public struct Choice: Decodable, Sendable, Equatable {
        public var index: Int
        public var delta: Delta
        public var finishReason: String?

        public init(index: Int = 0, delta: Delta, finishReason: String? = nil) {
            self.index = index
            self.delta = delta
            self.finishReason = finishReason
        }

        enum CodingKeys: String, CodingKey {
            case index, delta, logprobs
            case finishReason = "finish_reason"
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            self.index = try container.decode(Int.self, forKey: .index)
            self.delta = try container.decode(Delta.self, forKey: .delta)
            self.finishReason = try container.decodeIfPresent(String.self, forKey: .finishReason)
        }

        var json: JSONValue {
            .object([
                ("index", .int(Int64(index))), ("delta", delta.json), ("logprobs", .null),
                ("finish_reason", .optional(finishReason)),
            ])
        }
    }

    public struct Delta: Decodable, Sendable, Equatable {
        public var role: String?
        public var content: String?

        public init(role: String? = nil, content: String? = nil) {
            self.role = role
            self.content = content
        }

        /// OpenAI's order: role, then content; absent fields are left out.
        var json: JSONValue {
            var members: [(String, JSONValue)] = []
            if let role { members.append(("role", .string(role))) }
            if let content { members.append(("content", .string(content))) }
            return .object(members)
        }
    }

    /// `usage` is absent unless the client asked for it; then it is `null` on every chunk but the last.
    public enum UsageField: Sendable, Equatable {
        case omitted
        case null
        case value(Usage)
    }

    enum CodingKeys: String, CodingKey {
        case id, object, created, model, choices, usage
        case systemFingerprint = "system_fingerprint"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.id = try container.decode(String.self, forKey: .id)
        self.object = try container.decode(String.self, forKey: .object)
        self.created = try container.decode(Int64.self, forKey: .created)
        self.model = try container.decode(String.self, forKey: .model)
        self.systemFingerprint = try container.decodeIfPresent(String.self, forKey: .systemFingerprint)
        self.choices = try container.decode([Choice].self, forKey: .choices)
        if !container.contains(.usage) {
            self.usage = .omitted
        } else if let usage = try container.decodeIfPresent(Usage.self, forKey: .usage) {
            self.usage = .value(usage)
        } else {
            self.usage = .null
        }
    }

    /// The members that say whose chunk it is, first in every chunk of a completion: a relayed upstream chunk gets
    /// these in place of its own and keeps the rest.
    public static func identity(id: String, created: Int64, model: String) -> [(String, JSONValue)] {
        [("id", .string(id)), ("object", .string("chat.completion.chunk")), ("created", .int(created)), ("model", .string(model))]
    }

    /// The `data:` of this chunk's event.
    public var json: JSONValue {
        var members = Self.identity(id: id, created: created, model: model) + [
            ("system_fingerprint", .optional(systemFingerprint)), ("choices", .array(choices.map(\.json))),
        ]
        switch usage {
        case .omitted: break
        case .null: members.append(("usage", .null))
        case .value(let usage): members.append(("usage", usage.json))
        }
        return .object(members)
    }
}

public struct Usage: Codable, Sendable, Equatable {
    public var promptTokens: Int
    public var completionTokens: Int
    public var totalTokens: Int

    public init(promptTokens: Int, completionTokens: Int) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.totalTokens = promptTokens + completionTokens
    }

    public var json: JSONValue {
        .object([
            ("prompt_tokens", .int(Int64(promptTokens))), ("completion_tokens", .int(Int64(completionTokens))),
            ("total_tokens", .int(Int64(totalTokens))),
        ])
    }

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens"
        case completionTokens = "completion_tokens"
        case totalTokens = "total_tokens"
    }
}
