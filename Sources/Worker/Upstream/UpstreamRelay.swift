import Foundation
import HandoffWire

/// What happens to one upstream stream, apart from any I/O: each `data:` payload goes in, the chunk events for the
/// client come out.
///
/// - Every chunk is re-issued under the task's identity — Handoff's `id`, `created` and the public model name —
///   and every other member passes through byte for byte (tool calls, reasoning, logprobs, refusal, timings...).
///   The events are the stored form (`ChunkFrame`): the upstream's members without the identity, which readers of
///   the stream put in front.
/// - Handoff wrote its own role chunk already: an upstream chunk that only announces the role is dropped.
/// - `usage` reaches the client only if it asked for it; the upstream is always asked, so the task is charged
///   the upstream's own count, or (when none came) the chunks that were streamed.
/// - The chunk that carries the finish reason, and the usage chunk after it, are held back: they close the stream
///   and commit with the task's outcome.
/// - An error payload is a `UpstreamFailure`, before or after the first chunk; the caller tells which.
/// - A continuation's reply that starts by repeating the prefill (`PrefillEcho`) has the repeat dropped: the client
///   has that text already.
/// - What each accepted payload added to the answer (`piece`: its text, and whether it held tool calls, reasoning or
///   logprobs) is kept for a continuation.
struct UpstreamRelay {
    private let events: CompletionEvents
    private let promptEstimate: Int
    /// Never to appear in an error a client sees (the upstream's API key).
    private let secrets: [String]
    private let identityKeys: Set<String>
    private(set) var relayed = 0
    private var closing: [String] = []
    private var finishReason: String?
    private(set) var usage: Usage?
    /// What the last accepted payload added to the answer.
    private(set) var piece = PartialAnswer()
    private var echo: PrefillEcho

    /// `prefill`: the answer so far, when this stream continues it.
    init(events: CompletionEvents, promptEstimate: Int, secrets: [String], prefill: String? = nil) {
        self.echo = PrefillEcho(prefill: prefill)
        self.identityKeys = Set(
            ChatCompletionChunk.identity(id: events.id, created: events.created, model: events.model).map(\.0))
        self.events = events
        self.promptEstimate = promptEstimate
        self.secrets = secrets
    }

    /// The events for the client that `data` makes, now (possibly none).
    mutating func accept(_ data: String) throws(UpstreamFailure) -> [String] {
        piece = PartialAnswer()
        let members: [(key: String, value: Substring)]
        do {
            members = try JSONText.members(data[...])
        } catch {
            throw .broken("The model's server sent a malformed stream event.")
        }
        if let error = members.first(where: { $0.key == "error" }) {
            throw UpstreamFailure.reported(status: nil, error: error.value, secrets: secrets)
        }
        let choices = members.first { $0.key == "choices" }.flatMap { try? JSONText.elements($0.value) } ?? []
        if let usage = members.first(where: { $0.key == "usage" }).flatMap({ Self.usage($0.value) }) {
            self.usage = usage
        }
        if choices.isEmpty {
            // The usage chunk: the client's only if it asked for usage, and always after the finish chunk.
            guard usage != nil, events.includeUsage else { return [] }
            closing.append(rewrite(members))
            return []
        }
        let deltas = choices.compactMap { try? JSONText.members($0) }
        let read = deltas.map(PartialAnswer.read(choice:))
        for choice in read { piece.append(choice.piece) }
        let carriesOutput = read.contains { $0.carriesOutput }
        let reason = deltas.lazy.compactMap { choice in
            choice.first { $0.key == "finish_reason" }.flatMap { JSONText.string($0.value) }
        }.first
        if let reason {
            // Held back for the end: not part of the answer the client has, should this stream break first.
            piece = PartialAnswer()
            finishReason = reason
            closing.insert(rewrite(members), at: 0)
            if carriesOutput { relayed += 1 }
            return echo.isOpen ? released(echo.release()) : []
        }
        guard carriesOutput else { return [] }
        guard echo.isOpen, !piece.text.isEmpty else {
            relayed += 1
            return [rewrite(members)]
        }
        switch echo.next(text: piece.text, chunk: rewrite(members)) {
        case .hold:
            piece.text = ""
            return []
        case .strip(let rest):
            piece.text = rest
            guard !rest.isEmpty else { return [] }
            relayed += 1
            return [events.content(rest)]
        case .send(let held):
            relayed += 1
            return released(.send(held: held)) + [rewrite(members)]
        }
    }

    /// The chunks a settled echo releases: the server's own text after all, which comes before the payload's.
    private mutating func released(_ step: PrefillEcho.Step) -> [String] {
        guard case .send(let held) = step else { return [] }
        piece.text = held.map(\.text).joined() + piece.text
        relayed += held.count
        return held.map(\.chunk)
    }

    /// How the reply ended once the upstream's stream did. Without a finish reason it did not end: a truncated
    /// reply is a failure, never a silent success.
    func ending() throws(UpstreamFailure) -> ReplyEnding {
        guard finishReason != nil, !closing.isEmpty else {
            throw .broken("The model's server ended the stream before the reply was complete.")
        }
        return ReplyEnding(closing: closing, usage: usage ?? countedUsage, usageCounted: usage == nil)
    }

    /// What was streamed, when the upstream gave no count of its own: a chunk is about a token.
    var countedUsage: Usage {
        Usage(promptTokens: promptEstimate, completionTokens: relayed)
    }

    private static func usage(_ text: Substring) -> Usage? {
        guard text != "null", let usage = try? JSONDecoder().decode(Usage.self, from: Data(text.utf8)) else {
            return nil
        }
        return usage
    }

    /// The chunk under the task's identity, stored without it; `usage` only when the client asked for it.
    private func rewrite(_ members: [(key: String, value: Substring)]) -> String {
        var chunk = ""
        for (key, value) in members where !identityKeys.contains(key) {
            if key == "usage", !events.includeUsage { continue }
            chunk += ","
            JSONValue.string(key).write(to: &chunk)
            chunk += ":"
            chunk += value
        }
        chunk += "}"
        return chunk
    }
}
