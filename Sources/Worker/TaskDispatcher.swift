import HandoffRuntime
import HandoffStore
import HandoffWire
import Logging
import ServiceLifecycle
import Synchronization

/// Claims queued tasks and runs up to `concurrency` of them at once.
///
/// It claims when a NOTIFY rings its doorbell, when a slot frees up, and at least every `pollInterval`, so a
/// lost notification costs latency, never a task. On graceful shutdown it stops claiming, gives the tasks it
/// holds `grace` to finish, then stops the rest: each is handed back to the queue if it streamed no content yet,
/// or failed with an error event its clients see.
final class TaskDispatcher: Service {
    struct Configuration: Sendable {
        var workerID: String
        var concurrency: Int
        var pollInterval: Duration
        var lease: Duration
        var grace: Duration
    }

    let configuration: Configuration
    let queue: TaskQueue
    let executor: TaskExecutor
    let cancellations: TaskCancellations
    let doorbell: Doorbell
    let logger: Logger
    private let running = Atomic<Int>(0)

    init(
        configuration: Configuration, queue: TaskQueue, executor: TaskExecutor, cancellations: TaskCancellations,
        doorbell: Doorbell, logger: Logger
    ) {
        self.configuration = configuration
        self.queue = queue
        self.executor = executor
        self.cancellations = cancellations
        self.doorbell = doorbell
        self.logger = logger
    }

    func run() async throws {
        await withDiscardingTaskGroup { group in
            await withGracefulShutdownHandler {
                while !Task.isCancelled, !Task.isShuttingDownGracefully {
                    let free = configuration.concurrency - self.running.load(ordering: .relaxed)
                    var claimed: [ClaimedTask] = []
                    if free > 0 {
                        do {
                            claimed = try await queue.claim(
                                workerID: configuration.workerID, limit: free, lease: configuration.lease,
                                except: cancellations.running)
                        } catch {
                            logger.warning("claim failed", metadata: ["error": "\(String(reflecting: error))"])
                        }
                    }
                    for task in claimed {
                        self.running.add(1, ordering: .relaxed)
                        logger.debug("claimed", metadata: ["task": .task(task.id), "attempt": "\(task.attempt)"])
                        group.addTask {
                            await self.executor.run(task)
                            self.running.subtract(1, ordering: .relaxed)
                            self.doorbell.ring()
                        }
                    }
                    // A full claim means more may be queued: look again at once.
                    if claimed.isEmpty || claimed.count < free {
                        await doorbell.wait(timeout: configuration.pollInterval)
                    }
                }
            } onGracefulShutdown: {
                self.doorbell.ring()
            }
            let deadline = ContinuousClock.now + configuration.grace
            while self.running.load(ordering: .relaxed) > 0, ContinuousClock.now < deadline, !Task.isCancelled {
                try? await LoopTimer.sleep(for: .milliseconds(50))
            }
            let left = self.running.load(ordering: .relaxed)
            if left > 0 {
                logger.notice("grace period over; stopping tasks", metadata: ["tasks": "\(left)"])
                cancellations.stopAll(because: .shutdown)
            }
        }
    }
}
