import Foundation

/// What every chunk event of one completion shares, so the stream table stores only what differs between them.
///
/// A rendered chunk repeats its completion's identity (`id`, `object`, `created`, `model`: about 110 bytes), and a
/// content chunk (the bulk of a stream) is that identity around a few bytes of text. Measured with `pg_waldump
/// --stats` on 1,000 demo streams at 5 tokens/s, rows held 240 bytes of chunk JSON per event of ~630 bytes of WAL
/// per event. So the worker stores each event in the shortest of three forms, and whoever reads the table (each SSE
/// replica, the API's Responses, the worker continuing an answer) renders it back, byte for byte, with the frame
/// made from the task's header:
///
/// - `"…"`, a JSON string: a content delta of choice 0, rendered inside `content`'s frame. This is how the demo
///   model's and Handoff's own content chunks are stored.
/// - `,…` (or `}` alone): a chunk without its identity, which comes first in every chunk: the identity's members
///   are put back in front. Role, finish and usage chunks, and every relayed upstream chunk, are stored so.
/// - anything else, `{…}`: the event as it is sent (an error event; and every row written before this form existed).
///
/// Rendering is pure: every replica and every replay of a stream produce the same bytes.
package struct ChunkFrame: Sendable {
    /// The identity object without its closing brace: `{"id":"chatcmpl-…","object":"chat.completion.chunk",…`.
    package let identityPrefix: String
    /// A content chunk around its escaped text.
    private let contentPrefix: String
    private let contentSuffix: String

    package init(id: String, created: Int64, model: String, includeUsage: Bool) {
        identityPrefix = String(
            JSONValue.object(ChatCompletionChunk.identity(id: id, created: created, model: model)).text.dropLast())
        // Rendered by the generic path with a marker text, then split around it: the frame cannot drift from it.
        let marker = "\u{0}"
        let template = ChatCompletionChunk(
            id: id, created: created, model: model, choices: [.init(delta: .init(content: marker))],
            usage: includeUsage ? .null : .omitted
        ).json.text
        let range = template.range(of: JSONValue.string(marker).text)!
        contentPrefix = String(template[..<range.lowerBound])
        contentSuffix = String(template[range.upperBound...])
    }

    /// The stored form of a content delta: its text as a JSON string.
    package func storedContent(_ text: String) -> String {
        JSONValue.string(text).text
    }

    /// The stored form of a rendered chunk of this completion: without its identity. An event that does not start
    /// with the identity (an error) is stored as it is.
    package func stored(_ event: String) -> String {
        guard event.hasPrefix(identityPrefix) else { return event }
        return String(event.utf8.dropFirst(identityPrefix.utf8.count))!
    }

    /// The event a stored form stands for, as clients receive it.
    package func rendered(_ stored: String) -> String {
        let (prefix, suffix) = framing(of: stored)
        return prefix + stored + suffix
    }

    /// What goes before and after a stored form to render it: a replica writes the three into its buffer, where
    /// `rendered` would first build the event as a string of its own.
    package func framing(of stored: String) -> (prefix: String, suffix: String) {
        switch stored.utf8.first {
        case UInt8(ascii: "\""): (contentPrefix, contentSuffix)
        case UInt8(ascii: ","), UInt8(ascii: "}"): (identityPrefix, "")
        default: ("", "")
        }
    }
}

extension ChunkFrame {
    /// The frame of a task's chunks, from its header as the stream table's readers find it.
    package init(task: UUID, created: Int64, model: String, includeUsage: Bool) {
        self.init(
            id: ClaimedTask.completionID(for: task), created: created, model: model, includeUsage: includeUsage)
    }
}
