import Foundation

/// What a Responses request asked for that its Response object echoes — stored with the task (`handoff_tasks.
/// response`; NULL for a chat completion), so every process renders the same Response from the same task.
package struct ResponseSettings: Codable, Sendable, Equatable {
    package var model: String
    package var background: Bool
    package var store: Bool
    package var instructions: String?
    package var maxOutputTokens: Int?
    package var temperature: Double?
    package var topP: Double?
    package var metadata: [String: String]

    package init(
        model: String, background: Bool = false, store: Bool = true, instructions: String? = nil,
        maxOutputTokens: Int? = nil,
        temperature: Double? = nil, topP: Double? = nil, metadata: [String: String] = [:]
    ) {
        self.model = model
        self.background = background
        self.store = store
        self.instructions = instructions
        self.maxOutputTokens = maxOutputTokens
        self.temperature = temperature
        self.topP = topP
        self.metadata = metadata
    }

    enum CodingKeys: String, CodingKey {
        case model, background, store, instructions, temperature, metadata
        case maxOutputTokens = "max_output_tokens"
        case topP = "top_p"
    }

    /// The stored form.
    package var stored: String {
        String(decoding: (try? JSONEncoder().encode(self)) ?? Data("{}".utf8), as: UTF8.self)
    }

    package init(stored: String) throws {
        self = try JSONDecoder().decode(ResponseSettings.self, from: Data(stored.utf8))
    }
}

/// The ids of a Response and its one message, derived from the task id, so every process names them alike.
package enum ResponseID {
    package static func response(for task: UUID) -> String {
        "resp_" + task.compactHex
    }

    package static func message(for task: UUID) -> String {
        "msg_" + task.compactHex
    }

    /// The task of `resp_<hex>`, or of a bare task id.
    package static func task(from id: String) -> UUID? {
        let hex = id.hasPrefix("resp_") ? String(id.dropFirst(5)) : id
        return ClaimedTask.taskID(fromCompletionID: "chatcmpl-" + hex) ?? UUID(uuidString: id)
    }
}
