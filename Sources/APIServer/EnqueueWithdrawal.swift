import Foundation
import HandoffRuntime
import HandoffStore
import Logging
import ServiceLifecycle
import Synchronization

/// Cancels the tasks whose enqueue the API answered with a 503 but which may have been committed after all
/// (`DoubtfulEnqueues`): every quarter second while there are any, in one statement, until each is settled. A
/// worker claims a task within milliseconds of its commit and a short answer ends within a second, so a slower
/// withdrawal finds the task already answered, for nobody (once in the HA test's runs at a one-second cadence).
final class EnqueueWithdrawal: Service, Sendable {
    private let queue: TaskQueue
    private let logger: Logger
    private let doubts: Mutex<DoubtfulEnqueues<ContinuousClock.Instant>>
    private let doorbell = Doorbell()

    init(queue: TaskQueue, settleAfter: Duration = .seconds(30), capacity: Int = 10_000, logger: Logger) {
        self.queue = queue
        self.logger = logger
        self.doubts = Mutex(DoubtfulEnqueues(settleAfter: settleAfter, capacity: capacity))
    }

    /// The enqueue of `ids` failed without an answer from Postgres: they may exist.
    func doubt(_ ids: [UUID]) {
        let dropped = doubts.withLock { $0.doubt(ids, at: .now) }
        if dropped > 0 {
            logger.error("too many doubtful enqueues; some are not withdrawn", metadata: ["dropped": "\(dropped)"])
        }
        doorbell.ring()
    }

    /// The tasks still to be withdrawn.
    var doubted: [UUID] {
        doubts.withLock { $0.ids }
    }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await self.doorbell.wait(timeout: .milliseconds(250))
                let ids = self.doubted
                guard !ids.isEmpty else { continue }
                do {
                    let found = try await self.queue.withdraw(ids)
                    self.doubts.withLock { $0.withdrawn(found: found, at: .now) }
                    if !found.isEmpty {
                        self.logger.notice(
                            "withdrew tasks committed after their enqueue was answered 503",
                            metadata: ["tasks": "\(found.count)"])
                    }
                } catch {
                    self.logger.debug(
                        "withdrawal failed; trying again", metadata: ["error": "\(String(reflecting: error))"])
                }
            }
        }
    }
}
