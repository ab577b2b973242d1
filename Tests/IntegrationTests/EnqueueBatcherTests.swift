import Foundation
import HandoffStore
import HandoffWire
import Logging
import PostgresNIO
import Testing

@testable import APIServer

struct EnqueueBatcherTests {
    func running<R: Sendable>(_ batcher: EnqueueBatcher, _ body: @Sendable () async throws -> R) async throws -> R {
        try await withThrowingTaskGroup(of: R?.self) { group in
            group.addTask {
                try await batcher.run()
                return nil
            }
            defer { group.cancelAll() }
            return try await body()
        }
    }

    func batcher(_ queue: TaskQueue, _ logger: Logger) -> EnqueueBatcher {
        EnqueueBatcher(queue: queue, withdrawal: EnqueueWithdrawal(queue: queue, logger: logger), logger: logger)
    }

    let request = ChatCompletionRequest(model: "demo", messages: [ChatMessage(role: "user", content: "hi")])
    let body = #"{"model":"demo","messages":[{"role":"user","content":"hi"}]}"#

    func submission(_ id: UUID) -> TaskSubmission {
        TaskSubmission(
            id: id, request: request, body: body, caller: "", tokenCap: request.tokenLimit, reservationCeiling: 16)
    }

    /// Two hundred requests at once on a pool of two connections: all committed, in a few statements.
    @Test func aBurstIsCommittedInFewStatements() async throws {
        try await TestDatabase.with(poolSize: 2) { database in
            let batcher = batcher(TaskQueue(client: database.client, logger: database.logger), database.logger)
            let ids = (0..<200).map { _ in UUID() }
            try await running(batcher) {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for id in ids {
                        group.addTask {
                            let admission = try await batcher.enqueue(submission(id))
                            #expect(admission.verdict == .admitted)
                        }
                    }
                    try await group.waitForAll()
                }
            }
            // now() is the transaction's start: rows committed by one statement share it.
            let rows = try await database.client.query(
                "SELECT count(*), count(DISTINCT created_at) FROM handoff_tasks WHERE status = 'queued'",
                logger: database.logger)
            for try await (tasks, transactions) in rows.decode((Int, Int).self) {
                #expect(tasks == 200)
                #expect(transactions <= 20, "\(transactions) transactions for 200 tasks")
            }
        }
    }

    /// A task Postgres rejects (here: an id that already exists) fails alone; its batch neighbours commit.
    @Test func oneRejectedTaskDoesNotFailItsBatch() async throws {
        try await TestDatabase.with(poolSize: 2) { database in
            let taken = try await database.enqueue(1)[0]
            let batcher = batcher(TaskQueue(client: database.client, logger: database.logger), database.logger)
            let ids = (0..<40).map { _ in UUID() } + [taken]
            let failed = try await running(batcher) {
                await withTaskGroup(of: UUID?.self) { group in
                    for id in ids.shuffled() {
                        group.addTask { (try? await batcher.enqueue(submission(id))) == nil ? id : nil }
                    }
                    return await group.reduce(into: [UUID]()) { if let id = $1 { $0.append(id) } }
                }
            }
            #expect(failed == [taken])
            let rows = try await database.client.query("SELECT count(*) FROM handoff_tasks", logger: database.logger)
            for try await count in rows.decode(Int.self) { #expect(count == 41) }
        }
    }

    /// A statement Postgres runs once its deadline has passed (held up before it ran, as by a connection still
    /// opening to a new primary) queues none of its batch, and says so: its callers were told 503, and no task is
    /// made behind their back.
    @Test func anEnqueueRunAfterItsDeadlineQueuesNothing() async throws {
        try await TestDatabase.with { database in
            let queue = TaskQueue(client: database.client, logger: database.logger)
            let ids = [UUID(), UUID()]
            await #expect(throws: EnqueueMissedDeadline.self) {
                try await queue.enqueue(ids.map(submission), before: Date.now.addingTimeInterval(-0.001))
            }
            let rows = try await database.client.perform(
                "SELECT count(*) FROM handoff_tasks", timeout: .seconds(10), logger: database.logger)
            #expect(try rows.decode(Int.self).map(\.self) == [0])
            // In time, the same batch is queued whole.
            let admissions = try await queue.enqueue(ids.map(submission), before: Date.now.addingTimeInterval(60))
            #expect(admissions.count == 2)
        }
    }

    /// Postgres that does not answer (here: nothing listens on the port) fails callers within the deadline.
    @Test func anUnreachableDatabaseFailsFast() async throws {
        let settings = try DatabaseSettings(
            settings: Settings(environment: ["DATABASE_URL": "postgres://postgres@127.0.0.1:9/none"]))
        let client = PostgresClient(configuration: settings.clientConfiguration(applicationName: "unreachable"))
        let logger = Logger(label: "test")
        let queue = TaskQueue(client: client, timeout: .milliseconds(300), logger: logger)
        let withdrawal = EnqueueWithdrawal(queue: queue, logger: logger)
        let batcher = EnqueueBatcher(queue: queue, withdrawal: withdrawal, logger: logger)
        let started = ContinuousClock.now
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            _ = try? await running(batcher) {
                await withTaskGroup(of: Void.self) { callers in
                    for _ in 0..<5 {
                        callers.addTask {
                            await #expect(throws: (any Error).self) { try await batcher.enqueue(submission(UUID())) }
                        }
                    }
                }
            }
            group.cancelAll()
        }
        // The deadline is 300 ms; the bound leaves room for a loaded machine.
        #expect(ContinuousClock.now - started < .seconds(10))
        // Failed for want of an answer, not refused: each may still commit, so each is to be withdrawn.
        #expect(withdrawal.doubted.count == 5)
    }
}
