import AsyncHTTPClient
import Foundation
import HandoffRuntime
import HandoffWire
import NIOCore
import NIOHTTP1
import Synchronization

/// One request to one upstream server: send the task's body, then relay the stream as it arrives, under two
/// clocks — the first chunk within `first_token_timeout_ms` of sending, each next one within
/// `between_tokens_timeout_ms` of the last. A watchdog task keeps both (one per call, not one per chunk).
/// Cancelling the call closes the HTTP request, so the server frees its slot at once.
struct UpstreamCall {
    let endpoint: UpstreamEndpoint
    let task: ClaimedTask
    let events: CompletionEvents
    let promptEstimate: Int
    /// The answer so far, when this call continues it.
    var continuing: UpstreamRequestBody.Continuing? = nil

    /// How the call ended, how many chunks reached the client first (a failure after one did cannot fail over), and
    /// what they added to the answer.
    struct Failed: Error {
        var failure: UpstreamFailure
        var relayed: Int
        var usage: Usage
        var partial: PartialAnswer
    }

    func run(output: ReplyOutput) async throws(Failed) -> ReplyEnding {
        let progress = Progress()
        do {
            let body = try UpstreamRequestBody.make(
                clientBody: task.body, upstreamModel: endpoint.configuration.model, tokenCap: task.tokenCap,
                continuing: continuing)
            return try await withThrowingTaskGroup(of: ReplyEnding?.self) { group in
                group.addTask {
                    try await watch(progress)
                    return nil
                }
                group.addTask { try await stream(body, progress: progress, output: output) }
                defer { group.cancelAll() }
                while let result = try await group.next() {
                    if let result { return result }
                }
                throw CancellationError()
            }
        } catch let error as Failed {
            throw error
        } catch {
            let failure: UpstreamFailure =
                switch error {
                case is WatchdogExpired: .timeout(firstToken: progress.relayed == 0)
                case let error as UpstreamFailure: error
                default: .broken("The request to the model's server did not complete.")
                }
            throw Failed(
                failure: failure, relayed: progress.relayed,
                usage: Usage(promptTokens: promptEstimate, completionTokens: progress.relayed),
                partial: progress.partial)
        }
    }

    /// Sends the request and relays its stream; any failure comes out as `Failed`, with what was relayed.
    private func stream(_ body: ByteBuffer, progress: Progress, output: ReplyOutput) async throws -> ReplyEnding {
        var relay = UpstreamRelay(
            events: events, promptEstimate: promptEstimate, secrets: endpoint.secrets, prefill: continuing?.text)
        do {
            return try await stream(body, relay: &relay, progress: progress, output: output)
        } catch let failure as UpstreamFailure {
            throw Failed(
                failure: failure, relayed: progress.relayed, usage: relay.usage ?? relay.countedUsage,
                partial: progress.partial)
        } catch  where !Task.isCancelled {
            // Before the server answered it was not reached; after, its connection broke.
            let failure: UpstreamFailure =
                progress.answered
                ? .broken("The model's server closed the connection before the reply was complete.") : .unreachable()
            throw Failed(
                failure: failure, relayed: progress.relayed, usage: relay.usage ?? relay.countedUsage,
                partial: progress.partial)
        }
    }

    private func stream(_ body: ByteBuffer, relay: inout UpstreamRelay, progress: Progress, output: ReplyOutput)
        async throws -> ReplyEnding
    {
        var request = HTTPClientRequest(url: endpoint.configuration.chatCompletionsURL)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Accept", value: "text/event-stream")
        if let key = endpoint.apiKey { request.headers.add(name: "Authorization", value: "Bearer \(key)") }
        request.body = .bytes(body)
        let response = try await endpoint.client.execute(request, deadline: .distantFuture)
        progress.answer()
        guard response.status == .ok else {
            let answer = (try? await response.body.collect(upTo: 64 * 1024)).map { Data(buffer: $0) } ?? Data()
            throw UpstreamFailure.rejected(
                status: Int(response.status.code), body: answer,
                retryAfter: response.headers.first(name: "Retry-After").flatMap { Int($0) }.map { .seconds($0) },
                secrets: endpoint.secrets)
        }
        var decoder = ServerSentEventDecoder(
            maxLineBytes: endpoint.configuration.maxLineBytes, maxStreamBytes: endpoint.configuration.maxReplyBytes)
        for try await buffer in response.body {
            let events: [ServerSentEventDecoder.Event]
            do {
                events = try decoder.feed(buffer)
            } catch {
                throw UpstreamFailure.oversized(error)
            }
            for event in events {
                if event.data == "[DONE]" { return try relay.ending() }
                let chunks = try relay.accept(event.data)
                for chunk in chunks { await output.emit(chunk) }
                progress.relayed(chunks.count, adding: relay.piece)
            }
        }
        // No [DONE]: over only if the finish reason came (llama.cpp ends so after an error event, handled above).
        return try relay.ending()
    }

    /// Sleeps to the current deadline, but never longer than a quarter of the between-tokens limit: a chunk that
    /// arrives meanwhile moves the deadline earlier (the first token's limit is usually the longer one), and the
    /// watchdog must notice a stall after it within 1.25 × the limit.
    private func watch(_ progress: Progress) async throws {
        let firstToken = Duration.milliseconds(endpoint.configuration.firstTokenTimeoutMs)
        let betweenTokens = Duration.milliseconds(endpoint.configuration.betweenTokensTimeoutMs)
        while true {
            let (last, relayed) = progress.snapshot
            let due = last + (relayed == 0 ? firstToken : betweenTokens)
            let now = ContinuousClock.now
            guard now < due else { throw WatchdogExpired() }
            try await LoopTimer.sleep(until: min(due, now + betweenTokens / 4))
        }
    }

    private struct WatchdogExpired: Error {}

    /// Whether the server answered, and when the last chunk reached the client (or the call started): for the
    /// watchdog and for naming a failure.
    final class Progress: Sendable {
        private struct State {
            var last = ContinuousClock.now
            var relayed = 0
            var answered = false
            /// What the client has of the answer: the text of the chunks relayed (not what is held back for the end).
            var partial = PartialAnswer()
        }

        private let state = Mutex(State())

        var snapshot: (last: ContinuousClock.Instant, relayed: Int) { state.withLock { ($0.last, $0.relayed) } }
        var relayed: Int { state.withLock { $0.relayed } }
        var answered: Bool { state.withLock { $0.answered } }
        var partial: PartialAnswer { state.withLock { $0.partial } }

        func answer() {
            state.withLock { $0.answered = true }
        }

        /// One payload's worth: `chunks` relayed to the client, adding `piece` to its answer. One lock per payload.
        func relayed(_ chunks: Int, adding piece: PartialAnswer) {
            guard chunks > 0 else { return }
            state.withLock { state in
                state.last = ContinuousClock.now
                state.relayed += chunks
                state.partial.append(piece)
            }
        }
    }
}
