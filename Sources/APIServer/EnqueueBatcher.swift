import Foundation
import HandoffRuntime
import HandoffStore
import HandoffWire
import Logging
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// Group commit for new tasks.
///
/// Requests hand their task to the batcher and wait. When idle it flushes at once, so a lone request pays no
/// window; while a flush is in flight, newcomers gather and go together in the next one — one statement, one
/// coalesced NOTIFY. The database deadline bounds one statement, not a queue for pooled connections, so a
/// burst on a busy but healthy database is not mistaken for an outage. When a flush misses the deadline,
/// everyone waiting fails with it: Postgres is not answering, and the API says 503 at once (the flush's tasks are
/// withdrawn should it commit after all, `EnqueueWithdrawal`). When Postgres
/// rejects the batch instead, each task is retried alone, so one bad request cannot fail its neighbours.
final class EnqueueBatcher: Service {
    private struct Entry {
        let submission: TaskSubmission
        let continuation: CheckedContinuation<Admission, any Error>
    }

    private let queue: TaskQueue
    /// Where the tasks of a flush that missed its deadline go: it may still commit.
    private let withdrawal: EnqueueWithdrawal
    private let maxBatch: Int
    private let logger: Logger
    private let pending = Mutex<[Entry]>([])
    private let doorbell = Doorbell()

    init(queue: TaskQueue, withdrawal: EnqueueWithdrawal, maxBatch: Int = 500, logger: Logger) {
        self.queue = queue
        self.withdrawal = withdrawal
        self.maxBatch = maxBatch
        self.logger = logger
    }

    /// Returns what admission decided once that is committed (an admitted task is queued and workers are
    /// notified); throws if it may not be.
    func enqueue(_ submission: TaskSubmission) async throws -> Admission {
        try await withCheckedThrowingContinuation { continuation in
            pending.withLock { $0.append(Entry(submission: submission, continuation: continuation)) }
            doorbell.ring()
        }
    }

    func run() async throws {
        await withGracefulShutdownHandler {
            while !Task.isCancelled, !Task.isShuttingDownGracefully {
                await doorbell.wait()
                await flush()
            }
            // Requests still in flight when the HTTP server stopped get their answer.
            await flush()
        } onGracefulShutdown: {
            self.doorbell.ring()
        }
        for entry in pending.withLock({ pending in
            defer { pending.removeAll() }
            return pending
        }) {
            entry.continuation.resume(throwing: CancellationError())
        }
    }

    private func insert(_ entries: [Entry]) async throws {
        let admissions = try await queue.enqueue(entries.map(\.submission))
        for (entry, admission) in zip(entries, admissions) { entry.continuation.resume(returning: admission) }
    }

    private static func meansUnavailable(_ error: any Error) -> Bool {
        switch error {
        case is DeadlineExceeded, is CancellationError, is EnqueueMissedDeadline: true
        case let error as PSQLError: error.meansDatabaseUnavailable
        default: false
        }
    }

    private func flush() async {
        while !Task.isCancelled {
            let batch = pending.withLock { pending -> [Entry] in
                let batch = Array(pending.prefix(maxBatch))
                pending.removeFirst(batch.count)
                return batch
            }
            guard !batch.isEmpty else { return }
            do {
                try await insert(batch)
            } catch let error where Self.meansUnavailable(error) {
                let waiting = pending.withLock { pending in
                    defer { pending.removeAll() }
                    return pending
                }
                logger.error(
                    "enqueue failed",
                    metadata: ["tasks": "\(batch.count + waiting.count)", "error": "\(String(reflecting: error))"])
                // Unless Postgres itself found the deadline passed, the statement may still commit (a deadline, not a
                // refusal): its tasks are withdrawn once it can tell.
                if !(error is EnqueueMissedDeadline) { withdrawal.doubt(batch.map(\.submission.id)) }
                for entry in batch + waiting { entry.continuation.resume(throwing: error) }
            } catch {
                // Postgres rejected something in this batch: retry each alone, so only the culprit fails.
                for entry in batch {
                    do {
                        try await insert([entry])
                    } catch {
                        logger.error(
                            "enqueue rejected",
                            metadata: ["task": .task(entry.submission.id), "error": "\(String(reflecting: error))"])
                        entry.continuation.resume(throwing: error)
                    }
                }
            }
        }
    }
}
