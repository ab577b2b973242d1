import Foundation
import HandoffRuntime
import HandoffStore
import Logging
import ServiceLifecycle
import Synchronization

/// Cancels the tasks whose only client left and cannot come back: a non-streaming client that Caddy handed off
/// transparently (`StreamRoute.followedHeader`) never saw a URL to resume from, so the rest of its reply would be
/// spent, and charged, for nobody. Streams that can be resumed keep the abandonment grace (`HANDOFF_ABANDON_SECONDS`).
///
/// Deliveries report on their event loops; this service owns the statements. At most `limit` tasks wait: past it a
/// report is dropped, and that task falls back to the grace.
final class AbandonedTasks: Service {
    static let limit = 10_000

    private let queue: TaskQueue
    private let logger: Logger
    private let pending = Mutex<Set<UUID>>([])
    private let doorbell = Doorbell()

    init(queue: TaskQueue, logger: Logger) {
        self.queue = queue
        self.logger = logger
    }

    func report(_ task: UUID) {
        let added = pending.withLock { pending in pending.count < Self.limit && pending.insert(task).inserted }
        if added { doorbell.ring() }
    }

    func run() async {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await self.doorbell.wait()
                for task in self.pending.withLock({ pending in
                    defer { pending.removeAll() }
                    return pending
                }) {
                    do {
                        _ = try await self.queue.requestCancel(task)
                        self.logger.info("client gone for good; task cancelled", metadata: ["task": .task(task)])
                    } catch {
                        self.logger.warning(
                            "cancel failed", metadata: ["task": .task(task), "error": "\(String(reflecting: error))"])
                    }
                }
            }
        }
    }
}
