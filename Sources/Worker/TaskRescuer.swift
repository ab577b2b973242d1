import HandoffRuntime
import HandoffStore
import HandoffWire
import Logging
import Metrics
import ServiceLifecycle

/// Takes back tasks whose worker stopped renewing their lease. Every worker runs one; `SKIP LOCKED` lets them
/// run at the same time without taking the same task twice. The check is one statement on a partial index, so
/// it runs every second: a client learns of a dead worker at most a lease and a second after it died. After an
/// outage of its own it holds off (`OutageHold`) while the living workers renew the leases that ran out meanwhile.
struct TaskRescuer: Service {
    let queue: TaskQueue
    let lease: Duration
    let maxAttempts: Int
    /// The streamed tasks that are requeued to be continued, rather than failed.
    let continuable: TaskQueue.Continuable
    let logger: Logger

    /// Half a lease: a living worker's keeper, retrying each second, renews long before that once Postgres answers,
    /// and a dead worker's tasks wait no more than that longer for their rescue.
    private var holdAfterOutage: Duration { lease / 2 }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            let clock = ContinuousClock()
            var hold = OutageHold<ContinuousClock.Instant>(hold: holdAfterOutage)
            while !Task.isCancelled {
                try? await LoopTimer.sleep(for: min(lease / 2, .seconds(1)))
                guard !Task.isCancelled else { return }
                switch hold.next(at: clock.now) {
                case .trust:
                    if !(await rescue()) { hold.failed() }
                case .probe:
                    do {
                        try await queue.ping()
                        hold.answered(at: clock.now)
                        logger.notice(
                            "Postgres answers again; rescuing expired leases after a hold",
                            metadata: ["hold": "\(holdAfterOutage)"])
                    } catch {
                        hold.failed()
                    }
                case .wait:
                    continue
                }
            }
        }
    }

    /// One rescue; `false` when it failed.
    private func rescue() async -> Bool {
        do {
            let rescue = try await queue.rescueExpired(maxAttempts: maxAttempts, continuable: continuable)
            Counter(label: MetricName.tasksRescued.rawValue, dimensions: [("result", "requeued")]).increment(
                by: rescue.requeued)
            Counter(label: MetricName.tasksRescued.rawValue, dimensions: [("result", "failed")]).increment(
                by: rescue.failed)
            if rescue.requeued + rescue.failed > 0 {
                logger.notice(
                    "rescued tasks with expired leases",
                    metadata: ["requeued": "\(rescue.requeued)", "failed": "\(rescue.failed)"])
            }
            return true
        } catch {
            logger.warning("rescue failed", metadata: ["error": "\(String(reflecting: error))"])
            return false
        }
    }
}
