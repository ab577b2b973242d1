import NIOCore
import NIOPosix

/// Sleeping on a NIO event loop's own timer instead of `Task.sleep`.
///
/// Every Handoff process runs its tasks on NIO's event loops (`ConcurrencyPool.useEventLoops`), but NIO takes over
/// only the executor's immediate jobs: `Task.sleep` still arms a Dispatch timer, which Dispatch's manager thread
/// fires and a Dispatch worker thread hands back to an event loop — three thread wake-ups per sleep. perf on a
/// worker streaming 1,000 demo replies at 5 tokens/s found 29 % of its CPU in Dispatch's threads. An event loop
/// fires its own timers inside its epoll wait, on a thread that runs tasks anyway.
package enum LoopTimer {
    /// Returns after `duration` (after a yield if it is not positive, so a loop that has fallen behind still lets others
    /// run), or throws `CancellationError` once the calling task is cancelled. The event loops are the process's
    /// singleton group, which never shuts down, so no other error comes.
    package static func sleep(for duration: Duration) async throws {
        try Task.checkCancellation()
        guard duration > .zero else {
            await Task.yield()
            return
        }
        let timer = schedule(after: duration) {}
        try await withTaskCancellationHandler {
            do {
                try await timer.futureResult.get()
            } catch EventLoopError.cancelled {
                throw CancellationError()
            }
        } onCancel: {
            timer.cancel()
        }
    }

    /// `sleep(for:)` until `deadline`.
    package static func sleep(until deadline: ContinuousClock.Instant) async throws {
        try await sleep(for: ContinuousClock.now.duration(to: deadline))
    }

    /// Runs `body` on an event loop after `duration`, unless the returned timer is cancelled first.
    package static func schedule(after duration: Duration, _ body: @escaping @Sendable () -> Void) -> Scheduled<Void> {
        let loop = MultiThreadedEventLoopGroup.currentEventLoop ?? MultiThreadedEventLoopGroup.singleton.next()
        return loop.scheduleTask(in: TimeAmount(duration), body)
    }
}
