import Foundation
import HandoffWire
import NIOCore
import NIOHTTP1

/// A client of the whole stack: POST through Caddy, follow the 302, read the stream to `[DONE]`.
struct CompletionClient: Sendable {
    let origin: HTTPExchange
    /// Where the stream is read when not through `origin`: straight from a replica, to measure Caddy's hop.
    var streamOrigin: HTTPExchange? = nil
    /// The model asked for: `demo`, or a catalogue model in front of an upstream.
    var model = "demo"
    /// Sent as `Authorization: Bearer` on the POST only. The stream is opened by the token in the Location, as a
    /// browser's `EventSource` opens it (it cannot send headers): that is the hand-off's common client, and the
    /// key's cost is all on the POST (lookup, limit check, reservation).
    var apiKey: String? = nil

    struct Timing: Sendable {
        /// From the moment the request was due (open loop) to the API's 302.
        var redirect: Duration
        /// ... to the stream's response head.
        var firstByte: Duration
        /// ... to its first `data:` event (Handoff's role chunk, written before the model starts).
        var firstEvent: Duration
        /// ... to the event after it: the model's first token.
        var firstToken: Duration
        /// ... to `[DONE]`.
        var done: Duration
        var events: Int
        var replica: String
    }

    static func body(model: String, tokens: Int, prompt: String) -> String {
        JSONValue.object([
            ("model", .string(model)), ("stream", .bool(true)), ("max_tokens", .int(Int64(tokens))),
            ("messages", .array([.object([("role", .string("user")), ("content", .string(prompt))])])),
        ]).text
    }

    /// Runs one completion, handing the stream's response head to `onHead` and every event to `onEvent`;
    /// returns how many events came before `[DONE]`.
    func stream(
        tokens: Int, prompt: String, onRedirect: (_ location: String) -> Void = { _ in },
        onHead: (HTTPExchange.Head) -> Void = { _ in },
        onEvent: (ServerSentEventDecoder.Event) -> Void
    ) async throws -> Int {
        let location = try await origin.handoff(
            path: CompletionsRoute.handoff, json: Self.body(model: model, tokens: tokens, prompt: prompt),
            headers: authorization)
        onRedirect(location)
        return try await (streamOrigin ?? origin).run(method: .GET, path: location) { head, parts in
            guard head.status == 200 else { throw BenchError.unexpectedStatus(head.status) }
            onHead(head)
            var decoder = ServerSentEventDecoder.benchmark
            var events = 0
            while let part = try await parts.next() {
                guard case .body(let buffer) = part else { break }
                for event in try decoder.feed(buffer.readableBytesView) {
                    if event.data == "[DONE]" { return events }
                    events += 1
                    onEvent(event)
                }
            }
            throw BenchError.protocolViolation("stream ended without [DONE]")
        }
    }

    private var authorization: [(String, String)] {
        apiKey.map { [("Authorization", "Bearer \($0)")] } ?? []
    }

    func complete(tokens: Int, prompt: String, due: ContinuousClock.Instant) async throws -> Timing {
        var redirect: Duration = .zero
        var firstByte: Duration = .zero
        var firstEvent: Duration?
        var firstToken: Duration?
        var replica = "?"
        let events = try await stream(tokens: tokens, prompt: prompt) { _ in
            redirect = ContinuousClock.now - due
        } onHead: { head in
            firstByte = ContinuousClock.now - due
            replica = head.headers.first(name: StreamRoute.replicaHeader) ?? "?"
        } onEvent: { _ in
            if firstEvent == nil {
                firstEvent = ContinuousClock.now - due
            } else if firstToken == nil {
                firstToken = ContinuousClock.now - due
            }
        }
        let done = ContinuousClock.now - due
        return Timing(
            redirect: redirect, firstByte: firstByte, firstEvent: firstEvent ?? done, firstToken: firstToken ?? done,
            done: done,
            events: events, replica: replica)
    }
}
