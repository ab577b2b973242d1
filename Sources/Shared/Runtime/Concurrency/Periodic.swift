import ServiceLifecycle

/// Runs `body` every `interval` until the task is cancelled or the service group shuts down gracefully.
package func repeatEvery(_ interval: Duration, _ body: @escaping @Sendable () async -> Void) async {
    await cancelWhenGracefulShutdown {
        while !Task.isCancelled {
            try? await LoopTimer.sleep(for: interval)
            guard !Task.isCancelled else { return }
            await body()
        }
    }
}
