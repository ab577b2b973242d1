import Foundation
import Synchronization

/// Why a running task must stop before its model is done.
enum StopReason: Sendable, Equatable {
    /// Its owner cancelled it.
    case cancelled
    /// No client has watched its stream for the abandonment grace period. It ends as a cancelled task does.
    case abandoned
    /// The worker is shutting down and the grace period for in-flight tasks is over.
    case shutdown
    /// Its lease ran out (an outage longer than it) and another worker has it now: this run writes nothing more.
    case lost
}

/// The stop signals of the tasks this worker runs. The cancel NOTIFY, the lease keeper's verdicts and the
/// shutdown set them; each task's executor waits on its own. Entries exist only while a task runs, so signals
/// for tasks that already ended (or run elsewhere) are dropped.
final class TaskCancellations: Sendable {
    private struct Entry {
        var reason: StopReason?
        var waiter: CheckedContinuation<StopReason?, Never>?
    }

    private let entries = Mutex<[UUID: Entry]>([:])

    func started(_ id: UUID) {
        entries.withLock { $0[id] = Entry() }
    }

    func finished(_ id: UUID) {
        let waiter = entries.withLock { $0.removeValue(forKey: id)?.waiter }
        waiter?.resume(returning: nil)
    }

    func stop(_ id: UUID, because reason: StopReason) {
        let waiter = entries.withLock { entries -> CheckedContinuation<StopReason?, Never>? in
            guard var entry = entries[id], entry.reason == nil else { return nil }
            entry.reason = reason
            defer {
                entry.waiter = nil
                entries[id] = entry
            }
            return entry.waiter
        }
        waiter?.resume(returning: reason)
    }

    /// The tasks this worker is running now.
    var running: [UUID] {
        entries.withLock { Array($0.keys) }
    }

    func stopAll(because reason: StopReason) {
        for id in running { stop(id, because: reason) }
    }

    /// Returns why `id` must stop, once it must; `nil` when the waiting task is cancelled first.
    func reason(toStop id: UUID) async -> StopReason? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let now = entries.withLock { entries -> StopReason?? in
                    guard var entry = entries[id] else { return .some(nil) }
                    if let reason = entry.reason { return .some(reason) }
                    if Task.isCancelled { return .some(nil) }
                    entry.waiter = continuation
                    entries[id] = entry
                    return .none
                }
                if let now { continuation.resume(returning: now) }
            }
        } onCancel: {
            let waiter = entries.withLock { entries in
                defer { entries[id]?.waiter = nil }
                return entries[id]?.waiter
            }
            waiter?.resume(returning: nil)
        }
    }
}
