import Foundation

/// The life of a completion task. `queued` → `running` → one of the three terminal states.
public enum TaskStatus: String, Sendable, CaseIterable {
    case queued, running, succeeded, failed, cancelled

    public var isTerminal: Bool {
        switch self {
        case .queued, .running: false
        case .succeeded, .failed, .cancelled: true
        }
    }
}

/// A task a worker has claimed: what to run, and the stable identity its chunks carry.
public struct ClaimedTask: Sendable {
    public let id: UUID
    public let request: ChatCompletionRequest
    public let attempt: Int
    /// Unix seconds when the task was queued; every chunk's `created`, so it is stable across attempts.
    public let created: Int64

    public init(id: UUID, request: ChatCompletionRequest, attempt: Int, created: Int64) {
        self.id = id
        self.request = request
        self.attempt = attempt
        self.created = created
    }

    /// The OpenAI completion id of this task: derived, so every chunk and every attempt agrees on it.
    public var completionID: String { Self.completionID(for: id) }

    public static func completionID(for id: UUID) -> String {
        "chatcmpl-" + id.uuidString.lowercased().replacingOccurrences(of: "-", with: "")
    }
}
