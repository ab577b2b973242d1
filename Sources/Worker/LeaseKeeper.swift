import Logging
import ServiceLifecycle
import Shared

/// Renews the leases of the tasks this worker runs, every third of the lease, in one statement — which also
/// says which of them to stop: cancelled by their owner (a fallback for a missed cancel NOTIFY), or abandoned,
/// no client having watched them for `abandonAfter`. A missed renewal or two (a Postgres blip) costs nothing; a
/// worker that stops renewing loses its tasks to a rescuer.
struct LeaseKeeper: Service {
    let queue: TaskQueue
    let cancellations: TaskCancellations
    let workerID: String
    let lease: Duration
    let abandonAfter: Duration
    let logger: Logger

    func run() async throws {
        await repeatEvery(lease / 3) {
            do {
                let running = cancellations.running
                for task in try await queue.renewLeases(workerID: workerID, running: running, lease: lease, abandonAfter: abandonAfter) {
                    cancellations.stop(task.id, because: task.abandoned ? .abandoned : .cancelled)
                }
            } catch {
                logger.warning("lease renewal failed", metadata: ["error": "\(String(reflecting: error))"])
            }
        }
    }
}
