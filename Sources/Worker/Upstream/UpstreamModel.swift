import HandoffRuntime
import HandoffWire
import Logging
import Metrics

/// A model served by OpenAI-compatible upstream servers (llama.cpp, vLLM, Ollama, OpenAI).
///
/// Each request goes to the least busy server with a free slot (servers that failed lately last; ties by their
/// order in the catalogue). When a server fails before the reply's first chunk — refused connection, timeout,
/// 5xx, 429 — the next one is tried, and the client's stream shows no trace of it; the failed server is passed
/// over for its back-off (a 429's `Retry-After` when it gave one). When it fails after the first chunk, the answer
/// is continued where the `ContinuationPolicy` allows: the same request with the text so far as a trailing
/// assistant message goes to another server that continues answers (`"continuation"` in the catalogue), or to the
/// same one once its back-off has passed, and its chunks follow on in the same stream. Otherwise the stream ends
/// with an error event that says why it was not continued. An answer whose worker was lost is continued the same
/// way by the worker that claims it next.
struct UpstreamModel: ChatModel {
    let name: String
    let endpoints: [UpstreamEndpoint]
    let continuation: ContinuationPolicy
    let logger: Logger
    /// How often a request waiting for a free slot looks again.
    private static let slotPoll = Duration.milliseconds(20)

    /// Requests to this model's servers, failed ones, and moves to the next server (labelled by the public model name).
    private var requests: Counter {
        Counter(label: MetricName.upstreamRequests.rawValue, dimensions: [("model", name)])
    }
    private var errors: Counter { Counter(label: MetricName.upstreamErrors.rawValue, dimensions: [("model", name)]) }
    private var failovers: Counter {
        Counter(label: MetricName.upstreamFailovers.rawValue, dimensions: [("model", name)])
    }

    /// An answer being continued: what it streamed and used so far, and how often it was continued.
    private struct Continued {
        var partial = PartialAnswer()
        var usage = Usage(promptTokens: 0, completionTokens: 0)
        var count = 0
    }

    func reply(to task: ClaimedTask, events: CompletionEvents, output: ReplyOutput, continuing: ContinuedAnswer?)
        async throws -> ReplyEnding
    {
        let promptEstimate = promptTokens(for: task.request)
        var tried: Set<Int> = []
        var last: UpstreamFailure?
        var continued = try continuing.map { try continuation(of: $0, task: task, promptEstimate: promptEstimate) }
        // Waiting for a slot counts against the first-token budget of the servers that are full.
        var deadline = ContinuousClock.now + firstTokenBudget
        while let endpoint = try await acquire(excluding: tried, until: deadline, continuing: continued != nil) {
            tried.insert(endpoint.position)
            defer { endpoint.release() }
            requests.increment()
            do {
                var ending = try await UpstreamCall(
                    endpoint: endpoint, task: task, events: events, promptEstimate: promptEstimate,
                    continuing: continued.map {
                        .init(
                            text: $0.partial.text, produced: $0.usage.completionTokens,
                            mode: endpoint.configuration.continuation)
                    }
                )
                .run(output: output)
                if ending.usageCounted {
                    logger.notice(
                        "upstream sent no usage; charging the chunks streamed", metadata: meta(task, endpoint))
                }
                if let continued {
                    // The client's usage is the whole answer's: every attempt's prompt and completion.
                    ending.usage = continued.usage + ending.usage
                    if events.includeUsage { ending.closing = ending.closing.prefix(1) + [events.usage(ending.usage)] }
                    ContinuationOutcome.completed.count(model: name)
                }
                return ending
            } catch {
                try Task.checkCancellation()
                errors.increment()
                var metadata = meta(task, endpoint)
                metadata["error"] = "\(error.failure.error.message)"
                if error.relayed == 0, error.failure.retryable {
                    logger.warning("upstream failed before its first token; trying the next", metadata: metadata)
                    failovers.increment()
                    endpoint.passOver(for: error.failure.retryAfter ?? .milliseconds(endpoint.configuration.backoffMs))
                    last = error.failure
                    continue
                }
                guard error.relayed > 0 else {
                    // Refused outright (a 4xx), before or instead of continuing: not for another server to retry.
                    if continued != nil { ContinuationOutcome.failed.count(model: name) }
                    throw ReplyFailure(error: error.failure.error, usage: continued?.usage)
                }
                endpoint.passOver(for: .milliseconds(endpoint.configuration.backoffMs))
                var answer = continued ?? Continued()
                answer.partial.append(error.partial)
                answer.usage = answer.usage + error.usage
                metadata["usage"] = "\(error.usage.totalTokens) tokens (upstream's count, or the chunks streamed)"
                let decision = continuation.decide(
                    answer.partial, choices: task.request.n ?? 1, continued: answer.count,
                    modes: endpoints.map(\.configuration.continuation))
                guard decision == .continueAnswer else {
                    logger.warning("upstream failed mid-stream", metadata: metadata)
                    if case .end(let reason) = decision, reason != .notSupported {
                        (continued == nil ? ContinuationOutcome.notContinuable : .failed).count(model: name)
                    }
                    throw ReplyFailure(error: Self.notContinued(error.failure.error, decision), usage: answer.usage)
                }
                logger.warning("upstream failed mid-stream; continuing the answer", metadata: metadata)
                answer.count += 1
                continued = answer
                // Any server of the model may continue it, the failed one too once its back-off has passed.
                tried = []
                deadline = ContinuousClock.now + firstTokenBudget
            }
        }
        if continued != nil { ContinuationOutcome.failed.count(model: name) }
        throw ReplyFailure(error: last?.error ?? .upstreamUnavailable, usage: continued?.usage)
    }

    /// An answer whose worker was lost, to be continued here; `ReplyFailure` (`worker_lost`, saying why) when it
    /// cannot be. What the lost run streamed is charged as counted: the prompt estimate and a token a chunk.
    private func continuation(of answer: ContinuedAnswer, task: ClaimedTask, promptEstimate: Int) throws -> Continued {
        let usage = Usage(promptTokens: promptEstimate, completionTokens: answer.outputEvents)
        let decision = continuation.decide(
            answer.partial, choices: task.request.n ?? 1, continued: answer.continuedBefore,
            modes: endpoints.map(\.configuration.continuation))
        guard decision == .continueAnswer else {
            ContinuationOutcome.notContinuable.count(model: name)
            throw ReplyFailure(error: Self.notContinued(.workerLost, decision), usage: usage)
        }
        return Continued(partial: answer.partial, usage: usage, count: answer.continuedBefore + 1)
    }

    /// The longest first-token budget of the model's servers: how long a request may wait for one of them.
    private var firstTokenBudget: Duration {
        .milliseconds(endpoints.map(\.configuration.firstTokenTimeoutMs).max() ?? 0)
    }

    /// The failure a client sees when its answer was not continued: why, unless the model never continues.
    private static func notContinued(_ error: OpenAIError, _ decision: ContinuationPolicy.Decision) -> OpenAIError {
        guard case .end(let reason) = decision, reason != .notSupported else { return error }
        var error = error
        error.message += " The answer was not continued: \(reason.explanation)."
        return error
    }

    /// Upstream servers count tokens with their own tokenizer; without it, about four bytes of text make one.
    func promptTokens(for request: ChatCompletionRequest) -> Int {
        (request.messages.reduce(0) { $0 + $1.content.utf8.count } + 3) / 4
    }

    /// The server for the next attempt, with a slot taken: not yet tried, healthy before passed over, least busy,
    /// then first in the catalogue. `nil` when none is left, or none frees a slot before `deadline`. A continuation
    /// goes only to a server that continues answers, and waits for one that is passed over to come back.
    private func acquire(excluding tried: Set<Int>, until deadline: ContinuousClock.Instant, continuing: Bool)
        async throws -> UpstreamEndpoint?
    {
        while true {
            let candidates = endpoints.filter {
                !tried.contains($0.position) && (!continuing || $0.configuration.continuation != .none)
            }
            guard !candidates.isEmpty else { return nil }
            let ranked = candidates.map { ($0, $0.standing) }.filter { !$0.1.full && !(continuing && $0.1.passedOver) }
                .sorted { a, b in
                    (a.1.passedOver ? 1 : 0, a.1.inFlight, a.0.position) < (
                        b.1.passedOver ? 1 : 0, b.1.inFlight, b.0.position
                    )
                }
            if let endpoint = ranked.first(where: { $0.0.acquire() })?.0 { return endpoint }
            guard ContinuousClock.now < deadline else { return nil }
            try await LoopTimer.sleep(for: Self.slotPoll)
        }
    }

    private func meta(_ task: ClaimedTask, _ endpoint: UpstreamEndpoint) -> Logger.Metadata {
        ["task": .task(task.id), "model": "\(name)", "upstream": "\(endpoint.position)"]
    }
}
