import Foundation

/// One event of a Responses stream: `event: <type>` and its JSON, numbered from 0 per response.
package struct ResponseEvent: Sendable, Equatable {
    package var sequenceNumber: Int
    package var type: String
    package var json: JSONValue

    /// The SSE frame; no `id:` line (openai-python's decoder breaks on a keepalive once ids were sent): a client
    /// resumes by `sequence_number`.
    package var frame: String {
        "event: \(type)\ndata: \(json.text)\n\n"
    }
}

/// The Responses API's rendering of a task's stream: the chat chunks the worker wrote, turned into Responses
/// events and into the Response object — the same task and the same stream table as chat, rendered a second way.
///
/// A pure state machine, fed the task's events in order from the first: the same events always render the same
/// Responses events with the same sequence numbers, on any replica, after any restart. That is what makes a
/// resume exact: a client that resumes after `sequence_number` N is rendered everything again and sent what
/// follows N (openai-python's own resume replays from 0 and filters itself, so a replay must start with
/// `response.created`).
package struct ResponseRenderer: Sendable {
    package enum Status: String, Sendable {
        case queued
        case inProgress = "in_progress"
        case completed, incomplete, failed, cancelled
    }

    package let task: UUID
    package let created: Int64
    package let settings: ResponseSettings
    package private(set) var status: Status
    private var next = 0
    private var started = false
    private var text = ""
    private var finishReason: String?
    private var usage: Usage?
    private var error: ChatEvent.Failure?
    private var completedAt: Int64?

    package init(task: UUID, created: Int64, settings: ResponseSettings) {
        self.task = task
        self.created = created
        self.settings = settings
        self.status = settings.background ? .queued : .inProgress
    }

    /// Whether a terminal status was reached: the stream has nothing more to say.
    package var ended: Bool {
        [.completed, .incomplete, .failed, .cancelled].contains(status)
    }

    /// The events every stream starts with, before the task's own: `response.created` (and `response.queued` in
    /// background mode).
    package mutating func opening() -> [ResponseEvent] {
        var events = [event("response.created", [("response", response)])]
        if settings.background { events.append(event("response.queued", [("response", response)])) }
        return events
    }

    /// The Responses events of one chat event of the task's stream (a chunk, or an error event); `committed` is
    /// when its batch was committed (unix seconds), so a replay renders the same `completed_at`.
    package mutating func render(_ chatEvent: String, committed: Int64) -> [ResponseEvent] {
        guard !ended, let parsed = try? JSONDecoder().decode(ChatEvent.self, from: Data(chatEvent.utf8)) else {
            return []
        }
        var events: [ResponseEvent] = []
        if let failure = parsed.error {
            // The worker or the model failed: what streamed so far stays in `output`.
            error = failure
            status = .failed
            events += startIfNeeded()
            events.append(event("response.failed", [("response", response)]))
            return events
        }
        events += startIfNeeded()
        for choice in parsed.choices ?? [] {
            if let delta = choice.delta?.content, !delta.isEmpty {
                text += delta
                events.append(
                    event(
                        "response.output_text.delta",
                        itemMembers + [
                            ("content_index", .int(0)), ("delta", .string(delta)), ("logprobs", .array([])),
                        ]))
            }
            finishReason = choice.finishReason ?? finishReason
        }
        if let usage = parsed.usage {
            // The usage chunk is the stream's last (Responses tasks always ask for it): the reply is over.
            self.usage = usage
            completedAt = committed
            events += finish()
        }
        return events
    }

    /// `response.in_progress` and the message and its text part, once, before the first content.
    private mutating func startIfNeeded() -> [ResponseEvent] {
        guard !started else { return [] }
        if !ended { status = .inProgress }
        // Rendered before the message exists: `response.in_progress` has no output yet, as OpenAI sends it (the
        // SDK's accumulator adds the item from `output_item.added`).
        let inProgress = event("response.in_progress", [("response", response(status: .inProgress))])
        started = true
        return [
            inProgress,
            event(
                "response.output_item.added",
                [("output_index", .int(0)), ("item", message(status: "in_progress", content: []))]),
            event("response.content_part.added", itemMembers + [("content_index", .int(0)), ("part", textPart(""))]),
        ]
    }

    private mutating func finish() -> [ResponseEvent] {
        switch finishReason {
        case "cancelled":
            // Responses has no cancellation event: the stream just ends; the Response says `cancelled`.
            status = .cancelled
            return []
        case "length":
            status = .incomplete
        default:
            status = .completed
        }
        let itemStatus = status == .completed ? "completed" : "incomplete"
        return [
            event(
                "response.output_text.done",
                itemMembers + [("content_index", .int(0)), ("text", .string(text)), ("logprobs", .array([]))]),
            event("response.content_part.done", itemMembers + [("content_index", .int(0)), ("part", textPart(text))]),
            event(
                "response.output_item.done",
                [("output_index", .int(0)), ("item", message(status: itemStatus, content: [textPart(text)]))]),
            event(status == .completed ? "response.completed" : "response.incomplete", [("response", response)]),
        ]
    }

    /// The `error` event of a stream the server cannot finish (not part of the task's rendering: it takes the next
    /// sequence number without using it up). It carries the nested `error` — openai-python raises on it — and the
    /// flat `code` and `message` of the documented shape.
    package func errorEvent(_ error: OpenAIError) -> ResponseEvent {
        let body: [(String, JSONValue)] = [
            ("type", .string(error.type)), ("code", .optional(error.code)), ("message", .string(error.message)),
            ("param", .null),
        ]
        return ResponseEvent(
            sequenceNumber: next, type: "error",
            json: .object([
                ("type", .string("error")), ("code", .optional(error.code)), ("message", .string(error.message)),
                ("param", .null),
                ("sequence_number", .int(Int64(next))), ("error", .object(body)),
            ]))
    }

    /// The Response object as it stands.
    package var response: JSONValue {
        response(status: status)
    }

    /// The Response object with `status`, for a task whose row knows more than its stream (cancelled while queued).
    package func response(status: Status) -> JSONValue {
        var output: [JSONValue] = []
        if started {
            let itemStatus = status == .completed ? "completed" : status == .inProgress ? "in_progress" : "incomplete"
            output.append(message(status: itemStatus, content: [textPart(text)]))
        }
        let terminalUsage = [.completed, .incomplete].contains(status) || (status == .failed && usage != nil)
        return .object([
            ("id", .string(ResponseID.response(for: task))), ("object", .string("response")),
            ("created_at", .int(created)),
            ("status", .string(status.rawValue)), ("background", .bool(settings.background)),
            ("completed_at", status == .completed ? completedAt.map { .int($0) } ?? .null : .null),
            (
                "error",
                status == .failed
                    ? .object([
                        ("code", .string(Self.responseErrorCode(error))),
                        ("message", .string(error?.message ?? "The response failed.")),
                    ]) : .null
            ),
            ("incomplete_details", status == .incomplete ? .object([("reason", .string("max_output_tokens"))]) : .null),
            ("instructions", .optional(settings.instructions)),
            ("max_output_tokens", settings.maxOutputTokens.map { .int(Int64($0)) } ?? .null), ("max_tool_calls", .null),
            ("model", .string(settings.model)), ("output", .array(output)), ("parallel_tool_calls", .bool(true)),
            ("previous_response_id", .null), ("prompt_cache_key", .null),
            ("reasoning", .object([("effort", .null), ("summary", .null)])), ("safety_identifier", .null),
            ("service_tier", .string("default")), ("store", .bool(settings.store)),
            ("temperature", .number(settings.temperature ?? 1)),
            ("text", .object([("format", .object([("type", .string("text"))])), ("verbosity", .string("medium"))])),
            ("tool_choice", .string("auto")), ("tools", .array([])), ("top_logprobs", .int(0)),
            ("top_p", .number(settings.topP ?? 1)),
            ("truncation", .string("disabled")), ("usage", terminalUsage ? Self.json(usage) : .null), ("user", .null),
            ("metadata", .object(settings.metadata.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })),
        ])
    }

    /// The codes OpenAI's ResponseError allows (the SDK's enum): ours map onto `server_error` or a rate limit.
    private static func responseErrorCode(_ error: ChatEvent.Failure?) -> String {
        error?.code == "rate_limit_exceeded" ? "rate_limit_exceeded" : "server_error"
    }

    private static func json(_ usage: Usage?) -> JSONValue {
        guard let usage else { return .null }
        return .object([
            ("input_tokens", .int(Int64(usage.promptTokens))),
            ("input_tokens_details", .object([("cached_tokens", .int(0)), ("cache_write_tokens", .int(0))])),
            ("output_tokens", .int(Int64(usage.completionTokens))),
            ("output_tokens_details", .object([("reasoning_tokens", .int(0))])),
            ("total_tokens", .int(Int64(usage.totalTokens))),
        ])
    }

    private var itemMembers: [(String, JSONValue)] {
        [("item_id", .string(ResponseID.message(for: task))), ("output_index", .int(0))]
    }

    private func message(status: String, content: [JSONValue]) -> JSONValue {
        .object([
            ("id", .string(ResponseID.message(for: task))), ("type", .string("message")), ("status", .string(status)),
            ("role", .string("assistant")), ("content", .array(content)),
        ])
    }

    private func textPart(_ text: String) -> JSONValue {
        .object([
            ("type", .string("output_text")), ("text", .string(text)), ("annotations", .array([])),
            ("logprobs", .array([])),
        ])
    }

    private mutating func event(_ type: String, _ members: [(String, JSONValue)]) -> ResponseEvent {
        defer { next += 1 }
        return ResponseEvent(
            sequenceNumber: next, type: type,
            json: .object([("type", .string(type))] + members + [("sequence_number", .int(Int64(next)))]))
    }

    /// What rendering reads of a chat event.
    private struct ChatEvent: Decodable {
        let choices: [Choice]?
        let usage: Usage?
        let error: Failure?

        /// A chat error event's body: `{"error":{"message","code",…}}`.
        struct Failure: Decodable {
            let message: String
            let code: String?
        }

        struct Choice: Decodable {
            let delta: Delta?
            let finishReason: String?

            enum CodingKeys: String, CodingKey {
                case delta
                case finishReason = "finish_reason"
            }
        }

        struct Delta: Decodable {
            let content: String?
        }
    }
}
