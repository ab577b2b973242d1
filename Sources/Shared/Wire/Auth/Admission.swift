import Foundation

/// A task on its way into the queue, with what admission needs to know of it.
package struct TaskSubmission: Sendable {
    package var id: UUID
    package var request: ChatCompletionRequest
    /// The client's JSON as sent.
    package var body: String
    /// The presented API key's digest; '' when auth is off (the task has no owner and no limits).
    package var caller: String
    /// The prompt's tokens as admission estimates them, without a tokenizer: a quarter of the body's bytes (about
    /// what English text needs, and more for a short prompt's JSON), so that usage charged at the end rarely
    /// exceeds what was reserved for the prompt.
    package var promptTokens: Int
    /// The reply's cap before the key's own (`RequestValidation.tokenCap`); admission lowers it to the key's
    /// `--max-tokens`, stores it with the task, and the worker holds the reply to it. `nil`: none but the key's.
    package var tokenCap: Int?
    /// What the task reserves before the limits clamp it: the prompt and the reply's cap, at most the reservation
    /// ceiling (admission lowers it further to the key's cap).
    package var estimate: Int
    /// A Responses task's `ResponseSettings`, stored; `nil` for a chat completion.
    package var response: String?

    package init(
        id: UUID, request: ChatCompletionRequest, body: String, caller: String, tokenCap: Int?, reservationCeiling: Int,
        response: String? = nil
    ) {
        self.id = id
        self.request = request
        self.body = body
        self.caller = caller
        self.response = response
        self.tokenCap = tokenCap
        self.promptTokens = (body.utf8.count + 3) / 4
        self.estimate = promptTokens + min(tokenCap ?? reservationCeiling, reservationCeiling)
    }

    /// A request built in code (not received from a client), with no owner: its body is its own encoding.
    package init(id: UUID, request: ChatCompletionRequest) throws {
        self.init(
            id: id, request: request, body: String(decoding: try JSONEncoder().encode(request), as: UTF8.self),
            caller: "", tokenCap: request.tokenLimit, reservationCeiling: 0)
    }
}

/// What the enqueue statement decided about one submission.
package struct Admission: Sendable, Equatable {
    package enum Verdict: String, Sendable {
        case admitted
        /// No valid key has the presented digest (unknown, revoked or expired): all look the same.
        case invalidAPIKey = "invalid_api_key"
        /// The request's `max_tokens` is above its key's cap.
        case maxTokens = "max_tokens"
        /// The key already has `--max-concurrent-tasks` tasks queued or running.
        case concurrency
        /// The queue holds `HANDOFF_MAX_QUEUED` tasks.
        case overloaded
        case requests
        case tokensPerMinute = "tokens"
        case tokensPerDay = "tokens_per_day"
    }

    package var verdict: Verdict
    package var keyMaxTokens: Int?
    package var keyMaxConcurrentTasks: Int?
    /// The key's standing; `nil` without a valid key.
    package var limits: RateLimitReport?

    package init(
        verdict: Verdict, keyMaxTokens: Int? = nil, keyMaxConcurrentTasks: Int? = nil, limits: RateLimitReport? = nil
    ) {
        self.verdict = verdict
        self.keyMaxTokens = keyMaxTokens
        self.keyMaxConcurrentTasks = keyMaxConcurrentTasks
        self.limits = limits
    }
}
