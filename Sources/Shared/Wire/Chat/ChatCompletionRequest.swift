/// The body of `POST /chat/completions`, as far as Handoff reads it. Unknown fields are ignored, as OpenAI's
/// own server ignores what it does not know.
package struct ChatCompletionRequest: Codable, Sendable, Equatable {
    package var model: String
    package var messages: [ChatMessage]
    package var maxTokens: Int?
    package var maxCompletionTokens: Int?
    package var stream: Bool?
    package var streamOptions: StreamOptions?
    /// Honoured by the demo model: the reply ends before the first of these, with `finish_reason: "stop"`.
    package var stop: StopSequences?
    /// Accepted and validated as OpenAI does, passed to backends that sample; the demo model does not sample.
    package var temperature: Double?
    package var topP: Double?
    package var seed: Int?
    /// Only 1 until several choices per completion are supported.
    package var n: Int?
    package var user: String?

    package init(
        model: String, messages: [ChatMessage], maxTokens: Int? = nil, maxCompletionTokens: Int? = nil,
        stream: Bool? = nil, streamOptions: StreamOptions? = nil, stop: StopSequences? = nil
    ) {
        self.model = model
        self.messages = messages
        self.maxTokens = maxTokens
        self.maxCompletionTokens = maxCompletionTokens
        self.stream = stream
        self.streamOptions = streamOptions
        self.stop = stop
    }

    /// The reply's token budget: `max_completion_tokens` supersedes `max_tokens`, as in OpenAI's API.
    package var tokenLimit: Int? { maxCompletionTokens ?? maxTokens }

    /// Whether the stream carries a usage chunk: asked for by a streaming client, and always there for a
    /// non-streaming one, whose `chat.completion` is assembled from the stream and reports usage.
    package var includeUsage: Bool {
        Self.includesUsage(streamOptionsIncludeUsage: streamOptions?.includeUsage, stream: stream)
    }

    /// Whether a request with these fields gets usage: asked for in `stream_options`, or not streamed. The stream
    /// table's readers decide it from the stored request's two fields, without decoding the whole request.
    package static func includesUsage(streamOptionsIncludeUsage: Bool?, stream: Bool?) -> Bool {
        streamOptionsIncludeUsage ?? false || stream != true
    }

    enum CodingKeys: String, CodingKey {
        case model, messages, stream, stop, temperature, seed, n, user
        case maxTokens = "max_tokens"
        case maxCompletionTokens = "max_completion_tokens"
        case streamOptions = "stream_options"
        case topP = "top_p"
    }
}

/// `stop`: one string or an array of up to four.
package struct StopSequences: Codable, Sendable, Equatable {
    package var sequences: [String]

    package init(_ sequences: [String]) {
        self.sequences = sequences
    }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let one = try? container.decode(String.self) {
            sequences = [one]
        } else {
            sequences = try container.decode([String].self)
        }
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(sequences)
    }
}

package struct ChatMessage: Codable, Sendable, Equatable {
    package static let roles: Set<String> = ["system", "developer", "user", "assistant", "tool"]

    package var role: String
    /// The text: a string, or the text parts of an array joined; `null` (an assistant turn that only called tools)
    /// is empty.
    package var content: String
    package var name: String?

    package init(role: String, content: String, name: String? = nil) {
        self.role = role
        self.content = content
        self.name = name
    }

    enum CodingKeys: String, CodingKey {
        case role, content, name
    }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        role = try container.decode(String.self, forKey: .role)
        name = try container.decodeIfPresent(String.self, forKey: .name)
        if try !container.contains(.content) || container.decodeNil(forKey: .content) {
            guard role == "assistant" else {
                throw DecodingError.keyNotFound(
                    CodingKeys.content, .init(codingPath: container.codingPath, debugDescription: "content"))
            }
            content = ""
        } else if let text = try? container.decode(String.self, forKey: .content) {
            content = text
        } else if let parts = try? container.decode([ContentPart].self, forKey: .content) {
            content = try parts.enumerated().map { index, part in
                guard part.type == "text", let text = part.text else {
                    throw DecodingError.dataCorrupted(
                        .init(
                            codingPath: container.codingPath + [
                                CodingKeys.content, IndexKey(index), ContentPart.CodingKeys.type,
                            ],
                            debugDescription: "only text content parts are supported"))
                }
                return text
            }.joined()
        } else {
            throw DecodingError.typeMismatch(
                TextContent.self,
                .init(
                    codingPath: container.codingPath + [CodingKeys.content], debugDescription: "content"))
        }
    }

    /// What `content` may be, for error messages.
    enum TextContent {}

    struct ContentPart: Decodable {
        let type: String
        let text: String?

        enum CodingKeys: String, CodingKey {
            case type, text
        }
    }

    struct IndexKey: CodingKey {
        let intValue: Int?
        let stringValue: String

        init(_ index: Int) {
            intValue = index
            stringValue = String(index)
        }

        init?(stringValue: String) { nil }
        init?(intValue: Int) { self.init(intValue) }
    }
}

package struct StreamOptions: Codable, Sendable, Equatable {
    package var includeUsage: Bool?

    package init(includeUsage: Bool?) {
        self.includeUsage = includeUsage
    }

    enum CodingKeys: String, CodingKey {
        case includeUsage = "include_usage"
    }
}
