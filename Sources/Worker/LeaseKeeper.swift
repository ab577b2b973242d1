import Logging
import ServiceLifecycle
import Shared

/// Renews the leases of the tasks this worker runs, every third of the lease, in one statement. A missed
/// renewal or two (a Postgres blip) costs nothing; a worker that stops renewing loses its tasks to a rescuer.
struct LeaseKeeper: Service {
    let queue: TaskQueue
    let workerID: String
    let lease: Duration
    let logger: Logger

    func run() async throws {
        await repeatEvery(lease / 3) {
            do {
                try await queue.renewLeases(workerID: workerID, lease: lease)
            } catch {
                logger.warning("lease renewal failed", metadata: ["error": "\(String(reflecting: error))"])
            }
        }
    }
}
