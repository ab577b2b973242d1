import Foundation
import HandoffStore
import HandoffWire
import Testing

@testable import APIServer

/// Tasks whose enqueue was answered with an error at its deadline are withdrawn: cancelled if the statement committed
/// after all, forgotten once it can no longer have.
struct EnqueueWithdrawalTests {
    typealias Doubts = DoubtfulEnqueues<ContinuousClock.Instant>

    @Test func aDoubtIsSettledWhenFoundOrWhenItCanNoLongerCommit() {
        let start = ContinuousClock.now
        var doubts = Doubts(settleAfter: .seconds(30), capacity: 10)
        let (found, missing) = (UUID(), UUID())
        #expect(doubts.doubt([found, missing], at: start) == 0)
        doubts.withdrawn(found: [found], at: start + .seconds(1))
        #expect(doubts.ids == [missing], "a doubt not found yet may still commit")
        doubts.withdrawn(found: [], at: start + .seconds(30))
        #expect(doubts.isEmpty)
    }

    @Test func theOldestDoubtsGoPastTheCapacity() {
        let start = ContinuousClock.now
        var doubts = Doubts(settleAfter: .seconds(30), capacity: 2)
        let ids = [UUID(), UUID(), UUID()]
        #expect(doubts.doubt(ids, at: start) == 1)
        #expect(doubts.ids == Array(ids.dropFirst()))
    }

    /// A queued task that was doubted is cancelled (its worker ends it without running the model); one that never
    /// was is forgotten.
    @Test func aCommittedTaskIsCancelledAndAMissingOneForgotten() async throws {
        try await TestDatabase.with { database in
            let committed = try await database.enqueue(1)[0]
            let queue = TaskQueue(client: database.client, logger: database.logger)
            let withdrawal = EnqueueWithdrawal(queue: queue, settleAfter: .zero, logger: database.logger)
            withdrawal.doubt([committed, UUID()])
            await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await withdrawal.run() }
                defer { group.cancelAll() }
                #expect(await eventually { withdrawal.doubted.isEmpty })
            }
            let marked = try await database.client.perform(
                "SELECT 1 FROM handoff_tasks WHERE id = \(committed) AND cancel_requested_at IS NOT NULL",
                timeout: .seconds(10), logger: database.logger)
            #expect(marked.count == 1)
        }
    }
}
