import HandoffRuntime

/// How the demo model waits between tokens.
protocol TokenTimer: Sendable {
    /// Returns at `deadline`, or throws `CancellationError` once the calling task is cancelled.
    func sleep(until deadline: ContinuousClock.Instant) async throws
}

/// One event-loop timer per wait: right for a few replies at a time (the tests).
struct LoopSleepTimer: TokenTimer {
    func sleep(until deadline: ContinuousClock.Instant) async throws {
        try await LoopTimer.sleep(until: deadline)
    }
}
