import Foundation
import HandoffStore
import HandoffWire
import Testing

@testable import Worker

/// What the writer holds between flushes, and the sequence numbers it hands out.
struct PendingStreamsTests {
    let task = UUID()
    let other = UUID()

    func outcome(_ task: UUID) -> TaskOutcome {
        TaskOutcome(task: task, status: .succeeded)
    }

    @Test func eachFlushNumbersOnFromTheLastCommit() {
        var pending = PendingStreams(limit: 100)
        pending.append(["a", "b"], to: task)
        let first = pending.batches().batches
        #expect(first == [StreamBatch(task: task, sequence: 2, events: ["a", "b"], final: false)])
        let ended = pending.committed(first)
        #expect(ended.isEmpty)
        pending.append(["c"], to: task)
        #expect(pending.batches().batches == [StreamBatch(task: task, sequence: 3, events: ["c"], final: false)])
        #expect(pending.count == 1)
    }

    @Test func aFailedFlushIsBuiltAgainWithTheSameNumbers() {
        var pending = PendingStreams(limit: 100)
        pending.append(["a"], to: task)
        let failed = pending.batches().batches
        pending.append(["b"], to: task)
        #expect(pending.batches().batches == [StreamBatch(task: task, sequence: 2, events: ["a", "b"], final: false)])
        #expect(failed[0].sequence == 1)
    }

    @Test func eventsAppendedDuringAFlushStayPending() {
        var pending = PendingStreams(limit: 100)
        pending.append(["a"], to: task)
        let inFlight = pending.batches().batches
        pending.append(["b"], to: task)
        _ = pending.committed(inFlight)
        #expect(pending.batches().batches == [StreamBatch(task: task, sequence: 2, events: ["b"], final: false)])
    }

    @Test func aFinishedStreamEndsWithItsOutcomeAndIsForgotten() {
        var pending = PendingStreams(limit: 100)
        pending.append(["a"], to: task)
        pending.finish(task, events: ["end"], outcome: outcome(task))
        pending.append(["x"], to: other)
        let (batches, outcomes) = pending.batches()
        #expect(outcomes.map(\.task) == [task])
        let ending = batches.first { $0.task == task }
        #expect(ending == StreamBatch(task: task, sequence: 2, events: ["a", "end"], final: true))
        let ended = pending.committed(batches)
        #expect(ended == [task])
        #expect(pending.count == 0)
        #expect(pending.batches().batches.isEmpty)
    }

    @Test func aTaskDiscardedDuringAFlushStaysGone() {
        var pending = PendingStreams(limit: 100)
        pending.append(["a", "b"], to: task)
        let inFlight = pending.batches().batches
        pending.discard(task)
        #expect(pending.count == 0)
        let ended = pending.committed(inFlight)
        #expect(ended.isEmpty)
        #expect(pending.count == 0)
        pending.append(["again"], to: task)
        #expect(pending.batches().batches[0].sequence == 1, "its next run numbers from the start")
    }

    @Test func theLimitCountsEveryTasksEvents() {
        var pending = PendingStreams(limit: 3)
        pending.append(["a", "b"], to: task)
        #expect(!pending.isOverLimit)
        pending.append(["c"], to: other)
        #expect(pending.isOverLimit)
        _ = pending.committed(pending.batches().batches)
        #expect(!pending.isOverLimit)
    }
}
