import Foundation

/// The non-streaming answer, `chat.completion`, assembled from a finished task's stream: the same events a
/// streaming client gets, folded into one message. A stream that ended with an error event answers that error
/// (with its status), as OpenAI would have instead of a completion.
public enum ChatCompletion {
    public static func assemble(_ events: [String]) -> Result<JSONValue, OpenAIError> {
        let decoder = JSONDecoder()
        var first: ChatCompletionChunk?
        var content = ""
        var finishReason: String?
        var usage: Usage?
        for event in events {
            let data = Data(event.utf8)
            if let chunk = try? decoder.decode(ChatCompletionChunk.self, from: data) {
                first = first ?? chunk
                for choice in chunk.choices {
                    content += choice.delta.content ?? ""
                    finishReason = choice.finishReason ?? finishReason
                }
                if case .value(let value) = chunk.usage { usage = value }
            } else if var error = try? decoder.decode(OpenAIError.self, from: data) {
                // The status travels with HTTP, not in the event: take it from the error we know by its code.
                let known: [OpenAIError] = [.workerLost, .workerShutdown, .streamInterrupted, .modelNotFound("")]
                error.status = known.first { $0.code == error.code }?.status ?? (error.type == "server_error" ? 500 : 400)
                return .failure(error)
            }
        }
        guard let first, let finishReason else {
            return .failure(.server("The completion ended without an answer."))
        }
        var members: [(String, JSONValue)] = [
            ("id", .string(first.id)), ("object", .string("chat.completion")), ("created", .int(first.created)),
            ("model", .string(first.model)), ("system_fingerprint", .optional(first.systemFingerprint)),
            ("choices", .array([.object([
                ("index", .int(0)),
                ("message", .object([("role", .string("assistant")), ("content", .string(content)), ("refusal", .null)])),
                ("logprobs", .null), ("finish_reason", .string(finishReason)),
            ])])),
        ]
        if let usage { members.append(("usage", usage.json)) }
        return .success(.object(members))
    }
}
