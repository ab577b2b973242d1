import HandoffRuntime
import HandoffWire
import PostgresNIO

extension OpenAIError {
    /// The OpenAI error for any error: our own pass through; Postgres being unreachable or too slow is 503; anything
    /// else is a 500 that says nothing of its cause.
    package init(_ error: any Error) {
        switch error {
        case let error as OpenAIError:
            self = error
        case is DeadlineExceeded, is EnqueueMissedDeadline:
            self = .databaseUnavailable
        case let error as PSQLError where error.meansDatabaseUnavailable:
            self = .databaseUnavailable
        default:
            self = .server("The server had an error while processing your request.")
        }
    }
}
