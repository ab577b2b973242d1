import NIOCore
import Shared

/// The body an upstream server gets: the client's request as it sent it — every field, those Handoff does not
/// read (`tools`, `response_format`, `logprobs`, `reasoning_effort`, ...) byte for byte — with the model renamed
/// to the upstream's and a stream with usage always asked for: the task is charged the upstream's own count, and
/// a non-streaming client's answer is assembled from the stream like any other.
enum UpstreamRequestBody {
    static func make(clientBody: String, upstreamModel: String) throws -> ByteBuffer {
        var body = "{\"model\":"
        JSONValue.string(upstreamModel).write(to: &body)
        body += ",\"stream\":true,\"stream_options\":{\"include_usage\":true}"
        for (key, value) in try JSONText.members(clientBody[...]) where !["model", "stream", "stream_options"].contains(key) {
            body += ","
            JSONValue.string(key).write(to: &body)
            body += ":"
            body += value
        }
        body += "}"
        return ByteBuffer(string: body)
    }
}
