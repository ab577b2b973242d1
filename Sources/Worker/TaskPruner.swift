import HandoffRuntime
import HandoffStore
import Logging
import ServiceLifecycle

/// Deletes tasks (and their streams) that finished longer than the retention ago. Every worker runs one; the
/// statement takes its rows with `SKIP LOCKED`, so any number can run together, and it deletes in bounded
/// batches so no transaction grows with the backlog.
struct TaskPruner: Service {
    let queue: TaskQueue
    let retention: Duration
    let logger: Logger

    func run() async throws {
        await repeatEvery(min(retention / 10, .seconds(60))) {
            do {
                var pruned = 0
                while !Task.isCancelled {
                    let count = try await queue.prune(retention: retention, limit: 1000)
                    pruned += count
                    if count < 1000 { break }
                }
                if pruned > 0 { logger.info("pruned finished tasks", metadata: ["tasks": "\(pruned)"]) }
            } catch {
                logger.warning("prune failed", metadata: ["error": "\(String(reflecting: error))"])
            }
        }
    }
}
