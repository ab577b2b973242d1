import Foundation

/// `POST /v1/responses`: the request, checked, and the chat completion it becomes.
///
/// A Responses task is a chat task: the worker runs `chatBody` like any chat completion (instructions become the
/// system message, `input` the messages, `max_output_tokens` the `max_tokens`), and what it streams is rendered
/// as Responses events (`ResponseRenderer`). What the Response echoes travels with the task as `settings`.
package struct ResponsesRequest: Sendable {
    package var settings: ResponseSettings
    package var stream: Bool
    /// The chat completion the worker runs, as JSON (always streamed with usage: the renderer needs both).
    package var chatBody: String
    package var chat: ChatCompletionRequest

    package init(_ body: Data, validation: RequestValidation) throws(OpenAIError) {
        let request: Body
        do {
            request = try JSONDecoder().decode(Body.self, from: body)
        } catch let error as DecodingError {
            throw RequestValidation.describe(error)
        } catch {
            throw .invalidRequest("The request body is not valid JSON.", param: nil)
        }
        try RequestValidation.rejectDuplicateKeys(body)
        try RequestValidation.rejectNUL(body)
        try request.checkSupported()
        let settings = ResponseSettings(
            model: request.model, background: request.background ?? false, store: request.store ?? true,
            instructions: request.instructions, maxOutputTokens: request.maxOutputTokens,
            temperature: request.temperature,
            topP: request.topP, metadata: request.metadata ?? [:])
        if settings.background, !settings.store {
            throw .invalidRequest("'background' requires 'store' to be true.", param: "store")
        }
        var messages: [JSONValue] = []
        if let instructions = request.instructions {
            messages.append(.object([("role", .string("system")), ("content", .string(instructions))]))
        }
        messages += try Self.messages(request.input)
        var chat: [(String, JSONValue)] = [
            ("model", .string(request.model)), ("messages", .array(messages)), ("stream", .bool(true)),
            ("stream_options", .object([("include_usage", .bool(true))])),
        ]
        if let tokens = request.maxOutputTokens { chat.append(("max_tokens", .int(Int64(tokens)))) }
        if let temperature = request.temperature { chat.append(("temperature", .number(temperature))) }
        if let topP = request.topP { chat.append(("top_p", .number(topP))) }
        let chatBody = JSONValue.object(chat).text
        do {
            self.chat = try JSONDecoder().decode(ChatCompletionRequest.self, from: Data(chatBody.utf8))
        } catch {
            throw .invalidRequest("The request could not be turned into a completion.", param: nil)
        }
        do {
            try validation.validate(self.chat)
        } catch {
            // The chat checks name chat fields: say which Responses field it was.
            var error = error
            error.param = error.param.map(Self.responsesParam)
            error.message = Self.responsesParam(error.message)
            throw error
        }
        self.settings = settings
        self.stream = request.stream ?? false
        self.chatBody = chatBody
    }

    /// `input` as chat messages: a string is one user message.
    private static func messages(_ input: TextOrList<Item>) throws(OpenAIError) -> [JSONValue] {
        switch input {
        case .text(let text):
            return [.object([("role", .string("user")), ("content", .string(text))])]
        case .list(let items):
            var messages: [JSONValue] = []
            for (index, item) in items.enumerated() {
                messages.append(try item.message(at: index))
            }
            return messages
        }
    }

    private static func responsesParam(_ text: String) -> String {
        text.replacingOccurrences(of: "max_tokens", with: "max_output_tokens").replacingOccurrences(
            of: "messages", with: "input")
    }

    private struct Body: Decodable {
        let model: String
        let input: TextOrList<Item>
        let instructions: String?
        let maxOutputTokens: Int?
        let temperature: Double?
        let topP: Double?
        let metadata: [String: String]?
        let store: Bool?
        let stream: Bool?
        let background: Bool?
        let tools: [Ignored]?
        let previousResponseID: String?
        let conversation: Ignored?
        let prompt: Ignored?

        enum CodingKeys: String, CodingKey {
            case model, input, instructions, temperature, metadata, store, stream, background, tools, conversation,
                prompt
            case maxOutputTokens = "max_output_tokens"
            case topP = "top_p"
            case previousResponseID = "previous_response_id"
        }

        func checkSupported() throws(OpenAIError) {
            if let tools, !tools.isEmpty {
                throw .invalidRequest(
                    "'tools' are not supported by this server; send none.", param: "tools",
                    code: "unsupported_parameter")
            }
            for (name, present) in [
                ("previous_response_id", previousResponseID != nil), ("conversation", conversation != nil),
                ("prompt", prompt != nil),
            ] where present {
                throw .invalidRequest(
                    "'\(name)' is not supported by this server: send the whole conversation as 'input'.", param: name,
                    code: "unsupported_parameter")
            }
            if let maxOutputTokens, maxOutputTokens < 1 {
                throw .invalidRequest(
                    "'max_output_tokens' must be at least 1; got \(maxOutputTokens).", param: "max_output_tokens")
            }
            if let metadata {
                if metadata.count > 16 {
                    throw .invalidRequest("'metadata' takes at most 16 pairs.", param: "metadata")
                }
                for (key, value) in metadata where key.count > 64 || value.count > 512 {
                    throw .invalidRequest(
                        "'metadata' keys take at most 64 characters and values 512.", param: "metadata.\(key)")
                }
            }
        }
    }

    /// A string, or a list of `Element`: how `input` (message items) and a message's `content` (parts) may each be
    /// written.
    private enum TextOrList<Element: Decodable>: Decodable {
        case text(String)
        case list([Element])

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let text = try? container.decode(String.self) {
                self = .text(text)
            } else {
                self = .list(try container.decode([Element].self))
            }
        }
    }

    private struct Item: Decodable {
        let type: String?
        let role: String
        let content: TextOrList<Part>

        func message(at index: Int) throws(OpenAIError) -> JSONValue {
            if let type, type != "message" {
                throw .invalidRequest(
                    "Input items of type '\(type)' are not supported; only messages are.",
                    param: "input[\(index)].type",
                    code: "unsupported_value")
            }
            guard ["user", "assistant", "system", "developer"].contains(role) else {
                throw .invalidRequest(
                    "'\(role)' is not a valid role; expected one of assistant, developer, system, user.",
                    param: "input[\(index)].role")
            }
            switch content {
            case .text(let text):
                return .object([("role", .string(role)), ("content", .string(text))])
            case .list(let parts):
                var text = ""
                for (part, content) in parts.enumerated() {
                    guard ["input_text", "output_text"].contains(content.type), let piece = content.text else {
                        throw .invalidRequest(
                            "Content parts of type '\(content.type)' are not supported; only input_text is.",
                            param: "input[\(index)].content[\(part)].type", code: "unsupported_value")
                    }
                    text += piece
                }
                return .object([("role", .string(role)), ("content", .string(text))])
            }
        }
    }

    private struct Part: Decodable {
        let type: String
        let text: String?
    }

    /// Any JSON value, skipped.
    private struct Ignored: Decodable {
        init(from decoder: any Decoder) throws {}
    }
}
