import HandoffWire
import Metrics
import Synchronization

/// Whether this process should be sent work: what `/readyz` answers and `handoff_ready` shows.
///
/// Ready means Postgres answered the last check within its deadline (`ReadinessProbe`), the LISTEN connection is
/// listening (for a process that has one), and the process is not draining. Not ready until the first check
/// passed. The state is kept here, apart from the I/O that feeds it, so that `/readyz` answers from memory and
/// can never hang on the database it reports on.
package final class Readiness: Sendable {
    /// Why a process is not ready; `nil` when it is.
    package enum Problem: String, Sendable {
        case starting = "Not checked Postgres yet."
        case database = "Postgres did not answer within the readiness deadline."
        case listener = "The LISTEN connection to Postgres is down."
        case draining = "This process is draining."
        case full = "This stream server holds as many connections as it may (HANDOFF_SSE_MAX_CONNECTIONS)."
    }

    private struct State {
        var databaseAnswered: Bool?
        var listening: Bool
        var draining = false
    }

    private let state: Mutex<State>
    private let gauge = Gauge(label: MetricName.ready.rawValue)

    /// `listens`: the process has a LISTEN connection, and is ready only while it listens.
    package init(listens: Bool) {
        state = Mutex(State(listening: !listens))
        gauge.record(0)
    }

    package var problem: Problem? {
        state.withLock { Self.problem($0) }
    }

    package func databaseChecked(answered: Bool) {
        update { $0.databaseAnswered = answered }
    }

    /// The listener's connection started listening (`true`) or was lost (`false`).
    package func listener(listening: Bool) {
        update { $0.listening = listening }
    }

    /// From now on, not ready: the process is shutting down.
    package func drain() {
        update { $0.draining = true }
    }

    private func update(_ change: (inout State) -> Void) {
        let ready = state.withLock { state in
            change(&state)
            return Self.problem(state) == nil
        }
        gauge.record(ready ? 1 : 0)
    }

    private static func problem(_ state: State) -> Problem? {
        if state.draining { return .draining }
        switch state.databaseAnswered {
        case nil: return .starting
        case false?: return .database
        case true?: return state.listening ? nil : .listener
        }
    }
}

extension OpenAIError {
    /// `/readyz` of a process that should not be sent work now.
    package static func notReady(_ problem: Readiness.Problem) -> OpenAIError {
        OpenAIError(status: 503, message: problem.rawValue, type: "server_error", code: "not_ready")
    }
}
