import Synchronization

/// A coalescing wake-up for one waiting loop: any number of rings while nobody waits make the next `wait`
/// return at once, exactly once. Waiters treat a wake-up as "look again", so a spurious one is harmless.
package final class Doorbell: Sendable {
    private struct State {
        var rung = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    package init() {}

    package func ring() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            state.rung = true
            return nil
        }
        waiter?.resume()
    }

    /// Returns when rung (or at once if rung since the last wait), or when the task is cancelled.
    package func wait() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let resumeNow = state.withLock { state in
                    if state.rung || Task.isCancelled {
                        state.rung = false
                        return true
                    }
                    state.waiter = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            ring()
        }
    }

    /// Like `wait()`, but returns after `timeout` at the latest: the poll fallback of every waiting loop. The timeout
    /// rings the bell; should it ring just as a real ring ends the wait, the next wait returns at once, harmlessly.
    package func wait(timeout: Duration) async {
        let timer = LoopTimer.schedule(after: timeout) { self.ring() }
        defer { timer.cancel() }
        await wait()
    }
}
