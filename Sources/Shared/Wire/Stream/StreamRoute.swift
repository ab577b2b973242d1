import Foundation

/// Where clients POST a completion: `/api` is the visible hand-off (302), `/v1` the OpenAI-style base URL.
package enum CompletionsRoute {
    package static let prefixes = ["/api", "/v1"]
    package static let path = "/chat/completions"

    /// The path a client that follows redirects uses, e.g. `curl -L`.
    package static let handoff = "/api/chat/completions"

    /// `POST <prefix>/chat/completions/<id>/cancel`, where `<id>` is the completion's id or its task id and the
    /// stream token proves ownership (the `token` query parameter, or this header).
    package static let cancelSuffix = "/cancel"
    package static let tokenHeader = "X-Handoff-Stream-Token"
}

/// Where the API server sends a client, and what the SSE server answers: the hand-off URL contract.
package enum StreamRoute {
    package static let pathPrefix = "/sse/chat/completions"
    package static let tokenParameter = "token"
    package static let lastEventIDParameter = "last_event_id"
    package static let lastEventIDHeader = "Last-Event-ID"
    /// Names the SSE replica that serves a stream, so operators and tests behind the load balancer see who it is.
    package static let replicaHeader = "X-Handoff-Replica"
    /// Set to `1` by Caddy on the request it makes when it follows a 302 itself (the transparent hand-off under
    /// `/v1`): that client never saw the stream's URL, so a non-streaming one that leaves cannot come back, and its
    /// task is cancelled at once instead of after the abandonment grace. Sent by anyone else, it only lets a token's
    /// holder cancel its own task by hanging up.
    package static let followedHeader = "X-Handoff-Followed"

    /// A same-origin relative URL, so the hand-off works behind any host name Caddy answers to.
    package static func location(task: UUID, token: String) -> String {
        "\(pathPrefix)/\(task.uuidString.lowercased())?\(tokenParameter)=\(token)"
    }
}
