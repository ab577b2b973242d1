import Foundation
import HandoffStore
import HandoffWire
import PostgresNIO
import Testing

struct TaskQueueTests {
    /// Two workers, each with its own connection pool, race for 200 tasks in rounds: both claim in each round, at
    /// once, and every task is claimed exactly once.
    @Test func claimsAreExclusive() async throws {
        try await TestDatabase.with { database in
            let tasks = Set(try await database.enqueue(200))
            let workers = ["worker-a", "worker-b"]
            // Each round starts once both workers are in it: on a loaded machine one worker could otherwise claim
            // everything before the other's first claim. 15 rounds of 2 x 7 cover the 200 tasks.
            let barrier = RoundBarrier(parties: workers.count)
            let claims = try await withThrowingTaskGroup(of: (String, [UUID]).self) { group in
                for worker in workers {
                    group.addTask {
                        try await database.withSecondClient(applicationName: worker) { client in
                            let queue = TaskQueue(client: client, logger: database.logger)
                            _ = try await client.query("SELECT 1", logger: database.logger)
                            var mine: [UUID] = []
                            for _ in 0..<15 {
                                await barrier.arrive()
                                mine += try await queue.claim(workerID: worker, limit: 7, lease: .seconds(30)).map(\.id)
                            }
                            let late = try await queue.claim(workerID: worker, limit: 7, lease: .seconds(30))
                            #expect(late.isEmpty, "nothing is left after 15 rounds")
                            return (worker, mine)
                        }
                    }
                }
                return try await group.reduce(into: [String: [UUID]]()) { $0[$1.0] = $1.1 }
            }
            let all = claims.values.flatMap { $0 }
            #expect(all.count == 200, "no task claimed twice")
            #expect(Set(all) == tasks, "every task claimed")
            #expect(claims.values.allSatisfy { !$0.isEmpty }, "both workers got work: \(claims.mapValues(\.count))")

            let rows = try await database.client.query(
                "SELECT id, worker_id, status, attempts FROM handoff_tasks", logger: database.logger)
            for try await (id, worker, status, attempts) in rows.decode((UUID, String, String, Int).self) {
                #expect(claims[worker]?.contains(id) == true)
                #expect(status == "running")
                #expect(attempts == 1)
            }
        }
    }

    @Test func claimReturnsTheStoredRequestOldestFirst() async throws {
        try await TestDatabase.with { database in
            let ids = try await database.enqueue(3, prompt: "order")
            let claimed = try await TaskQueue(client: database.client, logger: database.logger)
                .claim(workerID: "w", limit: 2, lease: .seconds(30))
            #expect(claimed.map(\.id) == Array(ids.prefix(2)))
            #expect(claimed[0].request.messages == [ChatMessage(role: "user", content: "order 0")])
            #expect(
                claimed[0].completionID == "chatcmpl-"
                    + ids[0].uuidString.lowercased().replacingOccurrences(of: "-", with: ""))
        }
    }

    @Test func statusOfUnknownTaskIsNil() async throws {
        try await TestDatabase.with { database in
            let queue = TaskQueue(client: database.client, logger: database.logger)
            #expect(try await queue.status(of: UUID()) == nil)
            let id = try await database.enqueue(1)[0]
            #expect(try await queue.status(of: id) == .queued)
        }
    }

    @Test func aRejectedEnqueueThrows() async throws {
        try await TestDatabase.with { database in
            let id = try await database.enqueue(1)[0]
            await #expect(throws: PSQLError.self) {
                try await TaskQueue(client: database.client, logger: database.logger)
                    .enqueue(
                        id: id,
                        request: ChatCompletionRequest(
                            model: "demo", messages: [ChatMessage(role: "user", content: "again")]))
            }
        }
    }
}
