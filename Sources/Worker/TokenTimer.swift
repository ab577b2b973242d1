/// How the demo model waits between tokens.
protocol TokenTimer: Sendable {
    /// Returns after `delay`, or throws `CancellationError` once the calling task is cancelled.
    func sleep(for delay: Duration) async throws
}

/// One timer of the executor per wait: right for a few replies at a time (the tests).
struct TaskSleepTimer: TokenTimer {
    func sleep(for delay: Duration) async throws {
        try await Task.sleep(for: delay)
    }
}
