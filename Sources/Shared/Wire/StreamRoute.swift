import Foundation

/// Where the API server sends a client, and what the SSE server answers: the hand-off URL contract.
public enum StreamRoute {
    public static let pathPrefix = "/sse/chat/completions"
    public static let tokenParameter = "token"
    public static let lastEventIDParameter = "last_event_id"
    public static let lastEventIDHeader = "Last-Event-ID"

    /// A same-origin relative URL, so the hand-off works behind any host name Caddy answers to.
    public static func location(task: UUID, token: String) -> String {
        "\(pathPrefix)/\(task.uuidString.lowercased())?\(tokenParameter)=\(token)"
    }
}
