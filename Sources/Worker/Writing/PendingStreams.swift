import Foundation
import HandoffStore
import HandoffWire

/// What the stream writer holds between flushes, as a value: each running task's uncommitted events and outcome,
/// and the sequence numbers they get.
///
/// Sequence numbers are assigned when a flush's batches are built and only consumed once its commit succeeded, so a
/// failed flush is built again with the same numbers and nothing is lost or numbered twice.
struct PendingStreams: Sendable {
    private struct Buffer {
        var committedSequence = 0
        var pending: [String] = []
        var outcome: TaskOutcome?
    }

    private var buffers: [UUID: Buffer] = [:]
    /// Events held for all tasks.
    private(set) var count = 0
    /// How many events may be held before appending executors must wait: the bound on the writer's memory.
    let limit: Int

    init(limit: Int) {
        self.limit = limit
    }

    var isOverLimit: Bool { count >= limit }

    mutating func append(_ events: [String], to task: UUID) {
        buffers[task, default: Buffer()].pending += events
        count += events.count
    }

    /// `task`'s stream already holds events up to `sequence` (an earlier run's): its next events follow them.
    mutating func resume(_ task: UUID, at sequence: Int) {
        buffers[task, default: Buffer()].committedSequence = sequence
    }

    /// Ends `task`'s stream with `events` and `outcome`: its next flush is its last.
    mutating func finish(_ task: UUID, events: [String], outcome: TaskOutcome) {
        append(events, to: task)
        buffers[task]!.outcome = outcome
    }

    /// Forgets `task`: it was handed back to the queue and its events belong to its next run.
    mutating func discard(_ task: UUID) {
        count -= buffers.removeValue(forKey: task)?.pending.count ?? 0
    }

    /// One batch per task with events pending, and the outcomes of the tasks whose streams they end.
    func batches() -> (batches: [StreamBatch], outcomes: [TaskOutcome]) {
        var batches: [StreamBatch] = []
        var outcomes: [TaskOutcome] = []
        for (task, buffer) in buffers where !buffer.pending.isEmpty {
            batches.append(
                StreamBatch(
                    task: task, sequence: buffer.committedSequence + buffer.pending.count, events: buffer.pending,
                    final: buffer.outcome != nil))
            if let outcome = buffer.outcome { outcomes.append(outcome) }
        }
        return (batches, outcomes)
    }

    /// Records that `batches` were committed; returns the tasks whose streams they ended. Events appended since the
    /// batches were built stay pending; a task discarded meanwhile is already gone.
    mutating func committed(_ batches: [StreamBatch]) -> [UUID] {
        var ended: [UUID] = []
        for batch in batches where buffers[batch.task] != nil {
            count -= batch.events.count
            if batch.final {
                buffers.removeValue(forKey: batch.task)
                ended.append(batch.task)
            } else {
                buffers[batch.task]!.committedSequence = batch.sequence
                buffers[batch.task]!.pending.removeFirst(batch.events.count)
            }
        }
        return ended
    }

    /// Forgets everything: the writer stopped.
    mutating func removeAll() {
        buffers.removeAll()
        count = 0
    }
}
