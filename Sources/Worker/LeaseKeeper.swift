import HandoffRuntime
import HandoffStore
import Logging
import ServiceLifecycle

/// Renews the leases of the tasks this worker runs, every third of the lease, in one statement — which also
/// says which of them to stop: cancelled by their owner (a fallback for a missed cancel NOTIFY), or abandoned,
/// no client having watched them for `abandonAfter`. A worker that stops renewing loses its tasks to a rescuer.
/// Just after an outage it judges none abandoned (`OutageHold`): no replica could mark its streams watched meanwhile.
///
/// A failed renewal (Postgres unreachable) is retried every `retryInterval`, not a third of a lease later: each
/// failure also costs its statement deadline, so at the regular pace two failures in a row would push the next
/// attempt past the lease (seen in the multi-host test: a 5 s partition from Postgres cost a 10 s lease). Retried,
/// any outage shorter than two thirds of the lease costs nothing.
struct LeaseKeeper: Service {
    let queue: TaskQueue
    let cancellations: TaskCancellations
    let workerID: String
    let lease: Duration
    let abandonAfter: Duration
    let logger: Logger

    private var retryInterval: Duration { min(lease / 10, .seconds(1)) }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            let clock = ContinuousClock()
            // After an outage, the replicas need a refresh of `watched_at` to show the streams they serve are watched.
            var hold = OutageHold<ContinuousClock.Instant>(hold: StreamLog.watchRefresh)
            var wait = lease / 3
            while !Task.isCancelled {
                try? await LoopTimer.sleep(for: wait)
                guard !Task.isCancelled else { return }
                if await renew(judgingAbandonment: hold.next(at: clock.now) == .trust) {
                    hold.answered(at: clock.now)
                    wait = lease / 3
                } else {
                    hold.failed()
                    wait = retryInterval
                }
            }
        }
    }

    /// One renewal; `false` when it failed.
    private func renew(judgingAbandonment: Bool) async -> Bool {
        do {
            let running = cancellations.running
            for task in try await queue.renewLeases(
                workerID: workerID, running: running, lease: lease,
                abandonAfter: judgingAbandonment ? abandonAfter : nil)
            {
                cancellations.stop(task.id, because: task.lost ? .lost : task.abandoned ? .abandoned : .cancelled)
            }
            return true
        } catch {
            logger.warning("lease renewal failed", metadata: ["error": "\(String(reflecting: error))"])
            return false
        }
    }
}
