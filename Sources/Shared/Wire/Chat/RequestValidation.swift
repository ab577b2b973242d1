import Foundation

/// Turns a request body into a `ChatCompletionRequest` or an `OpenAIError` whose `param` names the offending
/// field the way OpenAI does (`messages[1].role`).
package struct RequestValidation: Sendable {
    package var models: Set<String>
    package var maxTokensLimit: Int
    /// The catalogue's per-model `max_tokens`, where a model has one.
    package var modelMaxTokens: [String: Int]
    package var maxMessages: Int
    /// Characters of message content (text parts and names) over all messages.
    package var maxPromptCharacters: Int

    package init(
        models: Set<String>, maxTokensLimit: Int, modelMaxTokens: [String: Int] = [:], maxMessages: Int = 2048,
        maxPromptCharacters: Int = 1_000_000
    ) {
        self.models = models
        self.maxTokensLimit = maxTokensLimit
        self.modelMaxTokens = modelMaxTokens
        self.maxMessages = maxMessages
        self.maxPromptCharacters = maxPromptCharacters
    }

    package init(catalogue: ModelCatalogue, settings: Settings) throws {
        self.init(
            models: Set(catalogue.names), maxTokensLimit: try settings.int(.maxTokensLimit),
            modelMaxTokens: Dictionary(
                uniqueKeysWithValues: catalogue.models.compactMap { model in model.maxTokens.map { (model.name, $0) } }),
            maxMessages: try settings.int(.maxMessages), maxPromptCharacters: try settings.int(.maxPromptCharacters))
    }

    /// The most reply tokens `model` may be asked for: `HANDOFF_MAX_TOKENS_LIMIT`, or the model's own cap below it.
    package func tokenLimit(of model: String) -> Int {
        min(maxTokensLimit, modelMaxTokens[model] ?? maxTokensLimit)
    }

    /// The reply's cap before its key's: the request's own, else the model's limit. Admission lowers it to the key's
    /// `--max-tokens`; the worker sends it to an upstream when the request named none, so no server's default (vLLM's
    /// is the rest of the context) applies.
    package func tokenCap(of request: ChatCompletionRequest) -> Int {
        request.tokenLimit ?? tokenLimit(of: request.model)
    }

    package func decode(_ body: Data) throws(OpenAIError) -> ChatCompletionRequest {
        let request: ChatCompletionRequest
        do {
            request = try JSONDecoder().decode(ChatCompletionRequest.self, from: body)
        } catch let error as DecodingError {
            throw Self.describe(error)
        } catch {
            throw .invalidRequest("The request body is not valid JSON.", param: nil)
        }
        try Self.rejectDuplicateKeys(body)
        try validate(request)
        try Self.rejectNUL(body)
        return request
    }

    /// One parse: the decoder keeps the first of two members of one name, the stored `jsonb` the last, so a body
    /// naming one twice would run what was never validated (`"max_tokens":2, …, "max_tokens":100000`).
    static func rejectDuplicateKeys(_ body: Data) throws(OpenAIError) {
        guard let duplicate = JSONDuplicateKeys.first(in: body) else { return }
        throw .invalidRequest(
            "The request body names '\(duplicate.path)' more than once; each key may appear only once.",
            param: duplicate.path, code: "duplicate_key")
    }

    /// The body is stored as jsonb, which cannot hold NUL in any field — including those only an upstream reads.
    static func rejectNUL(_ body: Data) throws(OpenAIError) {
        if body.range(of: Data(#"\u0000"#.utf8)) != nil {
            throw .invalidRequest("The request must not contain NUL characters (\\u0000).", param: nil)
        }
    }

    package func validate(_ request: ChatCompletionRequest) throws(OpenAIError) {
        if request.messages.isEmpty {
            throw .invalidRequest("'messages' must contain at least one message.", param: "messages")
        }
        if request.messages.count > maxMessages {
            throw .invalidRequest(
                "'messages' holds \(request.messages.count) messages; at most \(maxMessages) are accepted.",
                param: "messages",
                code: "too_many_messages")
        }
        let characters = request.messages.reduce(0) { $0 + $1.content.count + ($1.name?.count ?? 0) }
        if characters > maxPromptCharacters {
            throw .invalidRequest(
                "The messages hold \(characters) characters; at most \(maxPromptCharacters) are accepted.",
                param: "messages",
                code: "prompt_too_long")
        }
        for (index, message) in request.messages.enumerated() where !ChatMessage.roles.contains(message.role) {
            throw .invalidRequest(
                "'\(message.role)' is not a valid role; expected one of \(ChatMessage.roles.sorted().joined(separator: ", ")).",
                param: "messages[\(index)].role")
        }
        // Postgres text cannot hold NUL; refusing it here keeps one bad request from failing a whole batch.
        for (index, message) in request.messages.enumerated() {
            for (field, value) in [("content", message.content), ("name", message.name ?? "")]
            where value.utf8.contains(0) {
                throw .invalidRequest(
                    "'messages[\(index)].\(field)' must not contain NUL characters.",
                    param: "messages[\(index)].\(field)")
            }
        }
        let limit = tokenLimit(of: request.model)
        for (field, value) in [
            ("max_tokens", request.maxTokens), ("max_completion_tokens", request.maxCompletionTokens),
        ] {
            if let value, !(1...limit).contains(value) {
                throw .invalidRequest("'\(field)' must be between 1 and \(limit); got \(value).", param: field)
            }
        }
        if let n = request.n, n != 1 {
            throw .invalidRequest(
                "'n' must be 1: one choice per completion is supported; got \(n).", param: "n",
                code: "unsupported_value")
        }
        if let temperature = request.temperature, !(0...2).contains(temperature) {
            throw .invalidRequest("'temperature' must be between 0 and 2; got \(temperature).", param: "temperature")
        }
        if let topP = request.topP, !(0...1).contains(topP) {
            throw .invalidRequest("'top_p' must be between 0 and 1; got \(topP).", param: "top_p")
        }
        if let stop = request.stop?.sequences {
            if stop.count > 4 {
                throw .invalidRequest("'stop' takes at most 4 sequences; got \(stop.count).", param: "stop")
            }
            if stop.contains(where: \.isEmpty) {
                throw .invalidRequest("'stop' sequences must not be empty.", param: "stop")
            }
        }
        if request.streamOptions != nil, request.stream != true {
            throw .invalidRequest("'stream_options' is only allowed when 'stream' is true.", param: "stream_options")
        }
        // Checked last: a malformed body to an unknown model is a 400, like OpenAI answers it.
        if !models.contains(request.model) {
            throw .modelNotFound(request.model)
        }
    }

    static func describe(_ error: DecodingError) -> OpenAIError {
        switch error {
        case .keyNotFound(let key, let context):
            let param = path(context.codingPath + [key])
            return .invalidRequest(
                "Missing required parameter: '\(param)'.", param: param, code: "missing_required_parameter")
        case .typeMismatch(let type, let context), .valueNotFound(let type, let context):
            let param = path(context.codingPath)
            return .invalidRequest(
                "Invalid type for '\(param)': expected \(typeName(type)).", param: param, code: "invalid_type")
        case .dataCorrupted(let context) where !context.codingPath.isEmpty:
            let param = path(context.codingPath)
            return .invalidRequest("Invalid value for '\(param)'.", param: param, code: "invalid_value")
        default:
            return .invalidRequest("The request body is not valid JSON.", param: nil)
        }
    }

    private static func path(_ keys: [any CodingKey]) -> String {
        keys.reduce(into: "") { path, key in
            if let index = key.intValue {
                path += "[\(index)]"
            } else {
                path += path.isEmpty ? key.stringValue : ".\(key.stringValue)"
            }
        }
    }

    private static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Int.Type: "an integer"
        case is Bool.Type: "a boolean"
        case is [ChatMessage].Type, is [Any].Type: "an array"
        case is ChatMessage.TextContent.Type: "a string or an array of text content parts"
        case is Double.Type: "a number"
        default: "an object"
        }
    }
}
