import Foundation
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

    /// An answer to be continued: the request gets one more message, the assistant's text so far, and the tokens
    /// already produced come off its token limit.
    struct Continuing: Sendable {
        var text: String
        var produced: Int
        var mode: UpstreamContinuation
    }

    /// `tokenCap` is the task's cap from admission: sent as `max_tokens` when the client set neither `max_tokens` nor
    /// `max_completion_tokens`, so the upstream stops where Handoff's limits do instead of at its own default.
    static func make(clientBody: String, upstreamModel: String, tokenCap: Int? = nil, continuing: Continuing? = nil)
        throws -> ByteBuffer
    {
        var body = "{\"model\":"
        JSONValue.string(upstreamModel).write(to: &body)
        body += ",\"stream\":true,\"stream_options\":{\"include_usage\":true}"
        var seen: Set<String> = []
        var replaced: Set<String> = ["model", "stream", "stream_options"]
        if continuing?.mode == .continueFinalMessage {
            replaced.formUnion(["continue_final_message", "add_generation_prompt"])
        }
        for (key, value) in try JSONText.members(clientBody[...]) {
            // The stored body is jsonb, whose text never repeats a key; one that does was not what admission checked.
            guard seen.insert(key).inserted else { throw Ambiguous(key: key) }
            guard !replaced.contains(key) else { continue }
            body += ","
            JSONValue.string(key).write(to: &body)
            body += ":"
            if let continuing {
                body += continued(key, value, continuing)
            } else {
                body += value
            }
        }
        if let tokenCap, seen.isDisjoint(with: ["max_tokens", "max_completion_tokens"]) {
            body += ",\"max_tokens\":\(remaining(tokenCap, continuing))"
        }
        if continuing?.mode == .continueFinalMessage {
            body += ",\"continue_final_message\":true,\"add_generation_prompt\":false"
        }
        body += "}"
        return ByteBuffer(string: body)
    }

    /// A member of a continued request: the messages end with the answer so far, the token limits are what is left.
    private static func continued(_ key: String, _ value: Substring, _ continuing: Continuing) -> String {
        switch key {
        case "messages":
            var messages = String(value.dropLast(value.reversed().prefix { $0 != "]" }.count + 1))
            messages += ",{\"role\":\"assistant\",\"content\":"
            JSONValue.string(continuing.text).write(to: &messages)
            return messages + "}]"
        case "max_tokens", "max_completion_tokens":
            guard let limit = Int(value.trimmingCharacters(in: .whitespaces)) else { return String(value) }
            return "\(remaining(limit, continuing))"
        default:
            return String(value)
        }
    }

    /// A limit less what earlier attempts produced; at least 1, as upstreams refuse 0.
    private static func remaining(_ limit: Int, _ continuing: Continuing?) -> Int {
        max(1, limit - (continuing?.produced ?? 0))
    }
}
