import HandoffWire
import Synchronization

/// Runs `operation`, but gives up after `duration`: the caller gets `DeadlineExceeded` and the operation is
/// cancelled.
///
/// The caller does not wait for a cancelled operation to wind down, because some never do: PostgresNIO never
/// completes a query sent on a connection the server has just closed (seen here when Postgres restarts), and it
/// ignores cancellation. Waiting for it — as a task group does for its children — froze a whole SSE replica
/// after a Postgres restart. So the operation runs in a task of its own that the deadline abandons once it has
/// cancelled it: a stuck query costs that task, never the loop or the request that ran it.
package func withDeadline<Value: Sendable>(
    _ duration: Duration, _ operation: @escaping @Sendable () async throws -> Value
) async throws -> Value {
    let outcome = Outcome<Value>()
    let work = Task {
        let result = await Result { try await operation() }
        outcome.resolve(result)
    }
    let timer = LoopTimer.schedule(after: duration) {
        outcome.resolve(.failure(DeadlineExceeded(duration: duration)))
        work.cancel()
    }
    defer { timer.cancel() }
    return try await withTaskCancellationHandler {
        try await outcome.value()
    } onCancel: {
        outcome.resolve(.failure(CancellationError()))
        work.cancel()
    }
}

package struct DeadlineExceeded: Error, CustomStringConvertible {
    package let duration: Duration

    package var description: String { "no answer within \(duration)" }
}

/// The first of several results to arrive, handed to one waiter.
private final class Outcome<Value: Sendable>: Sendable {
    private struct State {
        var result: Result<Value, any Error>?
        var waiter: CheckedContinuation<Value, any Error>?
    }

    private let state = Mutex(State())

    func resolve(_ result: Result<Value, any Error>) {
        let waiter = state.withLock { state -> CheckedContinuation<Value, any Error>? in
            guard state.result == nil else { return nil }
            state.result = result
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(with: result)
    }

    func value() async throws -> Value {
        try await withCheckedThrowingContinuation { continuation in
            let result = state.withLock { state -> Result<Value, any Error>? in
                if state.result == nil { state.waiter = continuation }
                return state.result
            }
            if let result { continuation.resume(with: result) }
        }
    }
}

extension Result where Failure == any Error {
    init(_ body: () async throws -> Success) async {
        do {
            self = .success(try await body())
        } catch {
            self = .failure(error)
        }
    }
}
