import HandoffRuntime
import ServiceLifecycle
import Synchronization

/// One timer for every demo reply of the worker.
///
/// A thousand replies at 20 tokens/s each armed 20,000 executor timers a second, and the timer heap and the
/// thread wake-ups behind them took about a third of the worker's CPU (perf, scenario 2 at 20 tokens/s) — more
/// than writing the streams. The clock keeps its sleepers by tick and, every `resolution`, wakes those whose
/// deadline has passed: a token comes at most one tick late. While nobody sleeps, it waits on a doorbell.
final class DemoClock: Service, TokenTimer {
    private struct State {
        /// The sleepers due at each tick, by id; an id whose sleeper was cancelled is skipped.
        var due: [Int64: [Int]] = [:]
        var sleepers: [Int: CheckedContinuation<Void, any Error>] = [:]
        var nextID = 0
        var stopped = false
    }

    private let resolution: Duration
    private let origin = ContinuousClock.now
    private let state = Mutex(State())
    private let doorbell = Doorbell()

    init(resolution: Duration = .milliseconds(1)) {
        self.resolution = resolution
    }

    func sleep(until deadline: ContinuousClock.Instant) async throws {
        let tick = self.tick(at: deadline, .up)
        let id = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let accepted = state.withLock { state in
                    guard !state.stopped, !Task.isCancelled else { return false }
                    state.sleepers[id] = continuation
                    state.due[tick, default: []].append(id)
                    return true
                }
                if accepted { doorbell.ring() } else { continuation.resume(throwing: CancellationError()) }
            }
        } onCancel: {
            state.withLock { $0.sleepers.removeValue(forKey: id) }?.resume(throwing: CancellationError())
        }
    }

    /// Ticks until the worker shuts down, which reaches the clock after the replies that sleep on it have ended;
    /// a sleeper left then is woken with `CancellationError`.
    func run() async {
        await cancelWhenGracefulShutdown {
            var next = ContinuousClock.now
            while !Task.isCancelled {
                if self.state.withLock({ $0.sleepers.isEmpty }) {
                    await self.doorbell.wait()
                    next = .now
                }
                // A clock that fell behind wakes everyone due at once and ticks on from now, not through every tick it
                // missed.
                next = max(next + self.resolution, .now)
                try? await LoopTimer.sleep(until: next)
                self.wake(upTo: self.tick(at: .now, .down))
            }
        }
        let left = state.withLock { state in
            state.stopped = true
            defer {
                state.sleepers.removeAll()
                state.due.removeAll()
            }
            return Array(state.sleepers.values)
        }
        for continuation in left { continuation.resume(throwing: CancellationError()) }
    }

    private func wake(upTo now: Int64) {
        let woken = state.withLock { state in
            var woken: [CheckedContinuation<Void, any Error>] = []
            for tick in state.due.keys where tick <= now {
                for id in state.due.removeValue(forKey: tick) ?? [] {
                    if let continuation = state.sleepers.removeValue(forKey: id) { woken.append(continuation) }
                }
            }
            return woken
        }
        for continuation in woken { continuation.resume() }
    }

    /// The tick at or after `instant` (`.up`: a sleeper's due tick) or at or before it (`.down`: the ticks that
    /// have passed), so that a sleeper is never woken before its deadline.
    private func tick(at instant: ContinuousClock.Instant, _ rule: FloatingPointRoundingRule) -> Int64 {
        Int64(((instant - origin) / resolution).rounded(rule))
    }
}
