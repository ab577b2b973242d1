import Foundation

/// The non-streaming answer, `chat.completion`, assembled from a finished task's stream: the same events a
/// streaming client gets, folded into one message — content, refusal, reasoning and tool calls (merged by their
/// `index`, arguments concatenated), as OpenAI folds them. A stream that ended with an error event answers that
/// error (with its status), as OpenAI would have instead of a completion.
package enum ChatCompletion {
    package static func assemble(_ events: [String]) -> Result<JSONValue, OpenAIError> {
        let decoder = JSONDecoder()
        var first: Chunk?
        var fingerprint: String?
        var message = Message()
        var finishReason: String?
        var usage: Usage?
        for event in events {
            let data = Data(event.utf8)
            if let chunk = try? decoder.decode(Chunk.self, from: data) {
                first = first ?? chunk
                // An upstream's, when Handoff's role chunk has none.
                fingerprint = fingerprint ?? chunk.systemFingerprint
                for choice in chunk.choices {
                    if let delta = choice.delta { message.add(delta) }
                    finishReason = choice.finishReason ?? finishReason
                }
                usage = chunk.usage ?? usage
            } else if var error = try? decoder.decode(OpenAIError.self, from: data) {
                // The status travels with HTTP, not in the event.
                error.status = OpenAIError.status(code: error.code, type: error.type)
                return .failure(error)
            }
        }
        guard let first, let finishReason else {
            return .failure(.server("The completion ended without an answer."))
        }
        var members: [(String, JSONValue)] = [
            ("id", .string(first.id)), ("object", .string("chat.completion")), ("created", .int(first.created)),
            ("model", .string(first.model)), ("system_fingerprint", .optional(fingerprint)),
            (
                "choices",
                .array([
                    .object([
                        ("index", .int(0)), ("message", message.json), ("logprobs", .null),
                        ("finish_reason", .string(finishReason)),
                    ])
                ])
            ),
        ]
        if let usage { members.append(("usage", usage.json)) }
        return .success(.object(members))
    }

    /// What assembly reads of a chunk; everything else in it is for streaming clients only.
    private struct Chunk: Decodable {
        let id: String
        let created: Int64
        let model: String
        let systemFingerprint: String?
        let choices: [Choice]
        let usage: Usage?

        enum CodingKeys: String, CodingKey {
            case id, created, model, choices, usage
            case systemFingerprint = "system_fingerprint"
        }
    }

    private struct Choice: Decodable {
        let delta: Delta?
        let finishReason: String?

        enum CodingKeys: String, CodingKey {
            case delta
            case finishReason = "finish_reason"
        }
    }

    private struct Delta: Decodable {
        let content: String?
        let refusal: String?
        let reasoningContent: String?
        let toolCalls: [ToolCallDelta]?

        enum CodingKeys: String, CodingKey {
            case content, refusal
            case reasoningContent = "reasoning_content"
            case toolCalls = "tool_calls"
        }
    }

    private struct ToolCallDelta: Decodable {
        let index: Int?
        let id: String?
        let type: String?
        let function: FunctionDelta?
    }

    private struct FunctionDelta: Decodable {
        let name: String?
        let arguments: String?
    }

    private struct Message {
        var content = ""
        var refusal: String?
        var reasoning: String?
        /// By the tool call's `index`, in order of first appearance.
        var toolCalls: [(index: Int, id: String, type: String, name: String, arguments: String)] = []

        mutating func add(_ delta: Delta) {
            content += delta.content ?? ""
            if let refusal = delta.refusal { self.refusal = (self.refusal ?? "") + refusal }
            if let reasoning = delta.reasoningContent { self.reasoning = (self.reasoning ?? "") + reasoning }
            for call in delta.toolCalls ?? [] {
                let index = call.index ?? toolCalls.count
                if !toolCalls.contains(where: { $0.index == index }) {
                    toolCalls.append((index, "", "function", "", ""))
                }
                let position = toolCalls.firstIndex { $0.index == index }!
                if let id = call.id { toolCalls[position].id += id }
                if let type = call.type { toolCalls[position].type = type }
                if let name = call.function?.name { toolCalls[position].name += name }
                if let arguments = call.function?.arguments { toolCalls[position].arguments += arguments }
            }
        }

        /// OpenAI's message: `content` is null when the reply is only tool calls.
        var json: JSONValue {
            var members: [(String, JSONValue)] = [
                ("role", .string("assistant")),
                ("content", toolCalls.isEmpty || !content.isEmpty ? .string(content) : .null),
                ("refusal", .optional(refusal)),
            ]
            if let reasoning { members.append(("reasoning_content", .string(reasoning))) }
            if !toolCalls.isEmpty {
                members.append(
                    (
                        "tool_calls",
                        .array(
                            toolCalls.map { call in
                                .object([
                                    ("id", .string(call.id)), ("type", .string(call.type)),
                                    (
                                        "function",
                                        .object([("name", .string(call.name)), ("arguments", .string(call.arguments))])
                                    ),
                                ])
                            })
                    ))
            }
            return .object(members)
        }
    }
}
