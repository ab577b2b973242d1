/// One `chat.completion.chunk` of OpenAI's streaming format, encoded key for key as OpenAI sends it
/// (explicit `null`s included), so that strict clients parse it unchanged.
package struct ChatCompletionChunk: Decodable, Sendable, Equatable {
    package var id: String
    package var object: String = "chat.completion.chunk"
    package var created: Int64
    package var model: String
    package var systemFingerprint: String?
    package var choices: [Choice]
    package var usage: UsageField

    package init(
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

    package struct Choice: Decodable, Sendable, Equatable {
        package var index: Int
        package var delta: Delta
        package var finishReason: String?

        package init(index: Int = 0, delta: Delta, finishReason: String? = nil) {
            self.index = index
            self.delta = delta
            self.finishReason = finishReason
        }

        enum CodingKeys: String, CodingKey {
            case index, delta, logprobs
            case finishReason = "finish_reason"
        }

        package init(from decoder: any Decoder) throws {
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

    package struct Delta: Decodable, Sendable, Equatable {
        package var role: String?
        package var content: String?

        package init(role: String? = nil, content: String? = nil) {
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
    package enum UsageField: Sendable, Equatable {
        case omitted
        case null
        case value(Usage)
    }

    enum CodingKeys: String, CodingKey {
        case id, object, created, model, choices, usage
        case systemFingerprint = "system_fingerprint"
    }

    package init(from decoder: any Decoder) throws {
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
    package static func identity(id: String, created: Int64, model: String) -> [(String, JSONValue)] {
        [
            ("id", .string(id)), ("object", .string("chat.completion.chunk")), ("created", .int(created)),
            ("model", .string(model)),
        ]
    }

    /// The `data:` of this chunk's event.
    package var json: JSONValue {
        var members =
            Self.identity(id: id, created: created, model: model) + [
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

package struct Usage: Codable, Sendable, Equatable {
    package var promptTokens: Int
    package var completionTokens: Int
    package var totalTokens: Int

    package init(promptTokens: Int, completionTokens: Int) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.totalTokens = promptTokens + completionTokens
    }

    /// The usage of two attempts at one answer: what the servers processed and produced, together.
    package static func + (lhs: Usage, rhs: Usage) -> Usage {
        Usage(
            promptTokens: lhs.promptTokens + rhs.promptTokens,
            completionTokens: lhs.completionTokens + rhs.completionTokens
        )
    }

    package var json: JSONValue {
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
