import Foundation

/// Where the Responses API lives: `POST <prefix>/responses` (the `/v1` base URL, where Caddy follows the hand-off
/// itself, and `/api`, where the client sees the 302), `GET|DELETE <prefix>/responses/<id>`,
/// `POST <prefix>/responses/<id>/cancel` — and the SSE server's rendering of a task as Responses events.
package enum ResponsesRoute {
    package static let path = "/responses"
    package static let cancelSuffix = "/cancel"
    package static let ssePrefix = "/sse/responses"
    package static let streamParameter = "stream"
    /// Every event with a larger `sequence_number` is sent (all of them when absent).
    package static let startingAfterParameter = "starting_after"

    /// The SSE URL of a Responses task: a stream of events, or (without `stream`) the Response once it has ended.
    /// A `starting_after` value: -1 (before the first event) up to the largest sequence number a stream holds;
    /// `nil` for anything else.
    package static func startingAfter(_ text: String) -> Int? {
        guard let value = Int(text), (-1...StreamCursor.maxSequence).contains(value) else { return nil }
        return value
    }

    package static func location(task: UUID, token: String, stream: Bool, startingAfter: Int? = nil) -> String {
        var location = "\(ssePrefix)/\(task.uuidString.lowercased())?\(StreamRoute.tokenParameter)=\(token)"
        if stream { location += "&\(streamParameter)=true" }
        if let startingAfter { location += "&\(startingAfterParameter)=\(startingAfter)" }
        return location
    }
}
