import HandoffWire
import Logging
import Metrics

/// A model served by OpenAI-compatible upstream servers (llama.cpp, vLLM, Ollama, OpenAI).
///
/// Each request goes to the least busy server with a free slot (servers that failed lately last; ties by their
/// order in the catalogue). When a server fails before the reply's first chunk — refused connection, timeout,
/// 5xx, 429 — the next one is tried, and the client's stream shows no trace of it; the failed server is passed
/// over for its back-off (a 429's `Retry-After` when it gave one). After the first chunk a failure ends the
/// stream with an error event: a reply cannot be resumed on another server.
struct UpstreamModel: ChatModel {
    let name: String
    let endpoints: [UpstreamEndpoint]
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

    func reply(to task: ClaimedTask, events: CompletionEvents, output: ReplyOutput) async throws -> ReplyEnding {
        let promptEstimate = promptTokens(for: task.request)
        var tried: Set<Int> = []
        var last: UpstreamFailure?
        // Waiting for a slot counts against the first-token budget of the servers that are full.
        let deadline =
            ContinuousClock.now + .milliseconds(endpoints.map(\.configuration.firstTokenTimeoutMs).max() ?? 0)
        while let endpoint = try await acquire(excluding: tried, until: deadline) {
            tried.insert(endpoint.position)
            defer { endpoint.release() }
            requests.increment()
            do {
                let ending = try await UpstreamCall(
                    endpoint: endpoint, task: task, events: events, promptEstimate: promptEstimate
                )
                .run(output: output)
                if ending.usageCounted {
                    logger.notice(
                        "upstream sent no usage; charging the chunks streamed", metadata: meta(task, endpoint))
                }
                return ending
            } catch {
                try Task.checkCancellation()
                errors.increment()
                var metadata = meta(task, endpoint)
                metadata["error"] = "\(error.failure.error.message)"
                guard error.relayed == 0, error.failure.retryable else {
                    if error.relayed > 0 {
                        endpoint.passOver(for: .milliseconds(endpoint.configuration.backoffMs))
                        metadata["usage"] =
                            "\(error.usage.totalTokens) tokens (upstream's count, or the chunks streamed)"
                        logger.warning("upstream failed mid-stream", metadata: metadata)
                    }
                    throw ReplyFailure(error: error.failure.error, usage: error.relayed > 0 ? error.usage : nil)
                }
                logger.warning("upstream failed before its first token; trying the next", metadata: metadata)
                failovers.increment()
                endpoint.passOver(for: error.failure.retryAfter ?? .milliseconds(endpoint.configuration.backoffMs))
                last = error.failure
            }
        }
        throw ReplyFailure(error: last?.error ?? .upstreamUnavailable, usage: nil)
    }

    /// Upstream servers count tokens with their own tokenizer; without it, about four bytes of text make one.
    func promptTokens(for request: ChatCompletionRequest) -> Int {
        (request.messages.reduce(0) { $0 + $1.content.utf8.count } + 3) / 4
    }

    /// The server for the next attempt, with a slot taken: not yet tried, healthy before passed over, least busy,
    /// then first in the catalogue. `nil` when none is left, or none frees a slot before `deadline`.
    private func acquire(excluding tried: Set<Int>, until deadline: ContinuousClock.Instant) async throws
        -> UpstreamEndpoint?
    {
        while true {
            let candidates = endpoints.filter { !tried.contains($0.position) }
            guard !candidates.isEmpty else { return nil }
            let ranked = candidates.map { ($0, $0.standing) }.filter { !$0.1.full }.sorted { a, b in
                (a.1.passedOver ? 1 : 0, a.1.inFlight, a.0.position) < (
                    b.1.passedOver ? 1 : 0, b.1.inFlight, b.0.position
                )
            }
            if let endpoint = ranked.first(where: { $0.0.acquire() })?.0 { return endpoint }
            guard ContinuousClock.now < deadline else { return nil }
            try await Task.sleep(for: Self.slotPoll)
        }
    }

    private func meta(_ task: ClaimedTask, _ endpoint: UpstreamEndpoint) -> Logger.Metadata {
        ["task": .task(task.id), "model": "\(name)", "upstream": "\(endpoint.position)"]
    }
}
