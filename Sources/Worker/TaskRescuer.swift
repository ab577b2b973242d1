import HandoffRuntime
import HandoffStore
import HandoffWire
import Logging
import Metrics
import ServiceLifecycle

/// Takes back tasks whose worker stopped renewing their lease. Every worker runs one; `SKIP LOCKED` lets them
/// run at the same time without taking the same task twice. The check is one statement on a partial index, so
/// it runs every second: a client learns of a dead worker at most a lease and a second after it died.
struct TaskRescuer: Service {
    let queue: TaskQueue
    let lease: Duration
    let maxAttempts: Int
    /// The streamed tasks that are requeued to be continued, rather than failed.
    let continuable: TaskQueue.Continuable
    let logger: Logger

    func run() async throws {
        await repeatEvery(min(lease / 2, .seconds(1))) {
            do {
                let rescue = try await queue.rescueExpired(maxAttempts: maxAttempts, continuable: continuable)
                Counter(label: MetricName.tasksRescued.rawValue, dimensions: [("result", "requeued")]).increment(
                    by: rescue.requeued)
                Counter(label: MetricName.tasksRescued.rawValue, dimensions: [("result", "failed")]).increment(
                    by: rescue.failed)
                if rescue.requeued + rescue.failed > 0 {
                    logger.notice(
                        "rescued tasks with expired leases",
                        metadata: [
                            "requeued": "\(rescue.requeued)", "failed": "\(rescue.failed)",
                        ])
                }
            } catch {
                logger.warning("rescue failed", metadata: ["error": "\(String(reflecting: error))"])
            }
        }
    }
}
