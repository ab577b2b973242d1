import HandoffWire
import NIOCore

/// The body an upstream server gets: the client's request as it sent it — every field, those Handoff does not
/// read (`tools`, `response_format`, `logprobs`, `reasoning_effort`, ...) byte for byte — with the model renamed
/// to the upstream's and a stream with usage always asked for: the task is charged the upstream's own count, and
/// a non-streaming client's answer is assembled from the stream like any other.
enum UpstreamRequestBody {
    /// A body the API would have refused: it never reaches an upstream, even if a row was written by other means.
    struct Ambiguous: Error {
        var key: String
    }

    /// `tokenCap` is the task's cap from admission: sent as `max_tokens` when the client set neither `max_tokens` nor
    /// `max_completion_tokens`, so the upstream stops where Handoff's limits do instead of at its own default.
    static func make(clientBody: String, upstreamModel: String, tokenCap: Int? = nil) throws -> ByteBuffer {
        var body = "{\"model\":"
        JSONValue.string(upstreamModel).write(to: &body)
        body += ",\"stream\":true,\"stream_options\":{\"include_usage\":true}"
        var seen: Set<String> = []
        for (key, value) in try JSONText.members(clientBody[...]) {
            // The stored body is jsonb, whose text never repeats a key; one that does was not what admission checked.
            guard seen.insert(key).inserted else { throw Ambiguous(key: key) }
            guard !["model", "stream", "stream_options"].contains(key) else { continue }
            body += ","
            JSONValue.string(key).write(to: &body)
            body += ":"
            body += value
        }
        if let tokenCap, seen.isDisjoint(with: ["max_tokens", "max_completion_tokens"]) {
            body += ",\"max_tokens\":\(tokenCap)"
        }
        body += "}"
        return ByteBuffer(string: body)
    }
}
