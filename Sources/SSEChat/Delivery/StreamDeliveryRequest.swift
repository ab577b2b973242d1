import Foundation
import HandoffWire

/// What a stream is asked for, and how it ended.
extension StreamDelivery {
    enum Outcome {
        /// `[DONE]` and the end of the response were written: the connection can serve another request.
        case completed
        /// The replica stopped the stream early with an error event; the connection closes.
        case interrupted
        /// Nothing was written: the handler answers with this error instead.
        case refused(OpenAIError)
        /// A non-streaming client's `chat.completion`: the handler sends it as the whole response.
        case answered(JSONValue)
        /// The client left, or the server closes the connection.
        case cancelled

        /// For the log line of a stream's end.
        var name: String {
            switch self {
            case .completed: "completed"
            case .interrupted: "interrupted"
            case .refused(let error): "refused \(error.status)"
            case .answered: "answered"
            case .cancelled: "client gone"
            }
        }
    }

    /// How the task's events reach the client.
    enum Form: Equatable {
        /// As they were written: chat completion chunks.
        case chat
        /// As Responses events after `startingAfter` — or, without `streaming`, as the Response once it ended.
        case responses(streaming: Bool, startingAfter: Int)
    }

    struct Request {
        var task: UUID
        var start: StreamCursor
        var form: Form
        /// Caddy followed the hand-off for this client (`StreamRoute.followedHeader`): it has no URL to come back to.
        var followed = false
    }
}
