import Foundation

/// The life of a completion task. `queued` → `running` → one of the three terminal states.
package enum TaskStatus: String, Sendable, CaseIterable {
    case queued, running, succeeded, failed, cancelled

    package var isTerminal: Bool {
        switch self {
        case .queued, .running: false
        case .succeeded, .failed, .cancelled: true
        }
    }
}

/// A task a worker has claimed: what to run, and the stable identity its chunks carry.
package struct ClaimedTask: Sendable {
    package let id: UUID
    package let request: ChatCompletionRequest
    /// The client's request as it sent it (as Postgres's `jsonb` prints it): what an upstream model is sent.
    package let body: String
    package let attempt: Int
    /// Unix seconds when the task was queued; every chunk's `created`, so it is stable across attempts.
    package let created: Int64
    /// Cancelled while it was queued: the worker ends its stream at once instead of running the model.
    package let cancelRequested: Bool
    /// From its enqueue to this claim (for a task handed back or requeued, its earlier runs included).
    package let queuedFor: Duration
    /// The reply's cap that admission decided (the request's own `max_tokens`, else the smallest of its key's, its
    /// model's and `HANDOFF_MAX_TOKENS_LIMIT`); `nil` for a task queued before caps were stored.
    package let tokenCap: Int?
    /// The last sequence number an earlier run of the task wrote (0 on a first run): past the role chunk (1), a
    /// partial answer that this run continues.
    package let streamedHead: Int
    /// How often the answer was continued after its worker was lost, this run included.
    package let continuations: Int

    package init(
        id: UUID, request: ChatCompletionRequest, body: String, attempt: Int, created: Int64,
        cancelRequested: Bool = false,
        queuedFor: Duration = .zero, tokenCap: Int? = nil, streamedHead: Int = 0, continuations: Int = 0
    ) {
        self.tokenCap = tokenCap
        self.streamedHead = streamedHead
        self.continuations = continuations
        self.id = id
        self.request = request
        self.body = body
        self.attempt = attempt
        self.created = created
        self.cancelRequested = cancelRequested
        self.queuedFor = queuedFor
    }

    /// An earlier run streamed content (more than the role chunk): this run continues its answer.
    package var continuesAnswer: Bool { streamedHead > 1 }

    /// The OpenAI completion id of this task: derived, so every chunk and every attempt agrees on it.
    package var completionID: String { Self.completionID(for: id) }

    package static func completionID(for id: UUID) -> String {
        "chatcmpl-" + id.compactHex
    }

    /// The task a completion id names: `chatcmpl-<32 hex>` as `completionID` makes it, or the task's UUID itself.
    package static func taskID(fromCompletionID text: String) -> UUID? {
        if let id = UUID(uuidString: text) { return id }
        let hex = Array(text.dropFirst("chatcmpl-".count))
        guard text.hasPrefix("chatcmpl-"), hex.count == 32 else { return nil }
        let groups = [hex[0..<8], hex[8..<12], hex[12..<16], hex[16..<20], hex[20..<32]].map { String($0) }
        return UUID(uuidString: groups.joined(separator: "-"))
    }
}
