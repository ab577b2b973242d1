import Foundation
import HandoffStore
import HandoffWire
import PostgresNIO
import Testing

/// The load caps of admission against a real database, driven as two API replicas drive them: a key's tasks queued or
/// running (`--max-concurrent-tasks`) and the whole queue (`HANDOFF_MAX_QUEUED`), both decided in the statement that
/// enqueues, so concurrency across replicas never overshoots; and the reply's cap stored with the task.
struct LoadCapTests {
    let request = ChatCompletionRequest(model: "demo", messages: [ChatMessage(role: "user", content: "hi")])
    static let body = #"{"model":"demo","messages":[{"role":"user","content":"hi"}]}"#

    func submission(_ key: APIKey?, tokenCap: Int? = 100) -> TaskSubmission {
        TaskSubmission(
            id: UUID(), request: request, body: Self.body, caller: key?.digest ?? "", tokenCap: tokenCap,
            reservationCeiling: 1024)
    }

    /// 30 requests of one key in 18 statements at once over two replicas, alone and in batches, against a cap of 7:
    /// exactly 7 in; once two of them end, exactly two more. (Statements of one key wait for each other: on a loaded CI
    /// machine many more would run out of even the tests' statement timeout.)
    @Test func concurrentTasksOfAKeyNeverOvershootAcrossReplicas() async throws {
        try await TestDatabase.with(poolSize: 4) { database in
            let store = APIKeyStore(client: database.client, logger: database.logger)
            let (_, key) = try await store.create(
                name: "seven", limits: RateLimits(), maxTokens: nil, maxConcurrentTasks: 7, expiresIn: nil)
            let (_, other) = try await store.create(name: "other", limits: RateLimits(), maxTokens: nil, expiresIn: nil)
            let admissions = try await database.withSecondClient(applicationName: "replica-2") { second in
                let replicas = [
                    TaskQueue(client: database.client, logger: database.logger),
                    TaskQueue(client: second, logger: database.logger),
                ]
                return try await withThrowingTaskGroup(of: [Admission].self) { group in
                    for index in 0..<18 {
                        let batch = (0...(index % 3 == 0 ? 2 : 0)).map { _ in submission(key) } + [submission(other)]
                        group.addTask { try await replicas[index % 2].enqueue(batch) }
                    }
                    return try await group.reduce(into: []) { $0 += $1 }
                }
            }
            // Counted outside #expect: its expansion of `$0` in a nested closure saw every element.
            let mine = admissions.filter { $0.limits?.keyName == "seven" }.map(\.verdict)
            let others = admissions.filter { $0.limits?.keyName == "other" }.map(\.verdict)
            let admitted = mine.filter { $0 == .admitted }.count
            let refused = mine.filter { $0 == .concurrency }.count
            #expect(mine.count == 30 && admitted == 7 && refused == 23)
            // Another key's tasks are not counted against it.
            #expect(others.count == 18 && Set(others) == [.admitted])
            // Two tasks end: exactly two more fit.
            try await database.client.perform(
                """
                UPDATE handoff_tasks SET status = 'succeeded', finished_at = now()
                WHERE id IN (SELECT t.id FROM handoff_tasks t JOIN handoff_api_keys k ON k.id = t.key_id WHERE k.name = 'seven' LIMIT 2)
                """, timeout: .seconds(5), logger: database.logger)
            let queue = TaskQueue(client: database.client, logger: database.logger)
            #expect(
                try await queue.enqueue((0..<4).map { _ in submission(key) }).map(\.verdict) == [
                    .admitted, .admitted, .concurrency, .concurrency,
                ])
        }
    }

    /// A full queue refuses the rest, over all keys and replicas, and stores nothing for them.
    @Test func aFullQueueRefusesBeforeStoringAnything() async throws {
        try await TestDatabase.with(poolSize: 4) { database in
            let store = APIKeyStore(client: database.client, logger: database.logger)
            let (_, key) = try await store.create(name: "any", limits: RateLimits(), maxTokens: nil, expiresIn: nil)
            let verdicts = try await database.withSecondClient(applicationName: "replica-2") { second in
                let replicas = [
                    TaskQueue(client: database.client, maxQueued: 15, logger: database.logger),
                    TaskQueue(client: second, maxQueued: 15, logger: database.logger),
                ]
                return try await withThrowingTaskGroup(of: [Admission.Verdict].self) { group in
                    for index in 0..<20 {
                        let batch = [submission(index % 2 == 0 ? key : nil), submission(nil)]
                        group.addTask { try await replicas[index % 2].enqueue(batch).map(\.verdict) }
                    }
                    return try await group.reduce(into: []) { $0 += $1 }
                }
            }
            let admitted = verdicts.filter { $0 == .admitted }.count
            let overloaded = verdicts.filter { $0 == .overloaded }.count
            #expect(admitted == 15 && overloaded == 40 - 15)
            #expect(
                try await database.client.perform(
                    "SELECT count(*) FROM handoff_tasks", timeout: .seconds(5), logger: database.logger
                )
                .decode(Int.self).reduce(0, +) == 15)
            // Running tasks do not count: claiming ten makes room for ten.
            _ = try await TaskQueue(client: database.client, logger: database.logger).claim(
                workerID: "w", limit: 10, lease: .seconds(30))
            let queue = TaskQueue(client: database.client, maxQueued: 15, logger: database.logger)
            let more = try await queue.enqueue((0..<12).map { _ in submission(nil) }).map(\.verdict)
            #expect(more == Array(repeating: .admitted, count: 10) + [.overloaded, .overloaded])
        }
    }

    /// The reply's cap is the key's when it is lower, is stored with the task, and comes back with its claim; the
    /// reservation follows the same figure.
    @Test func theCapIsTheSmallestAndTravelsWithTheTask() async throws {
        try await TestDatabase.with { database in
            let store = APIKeyStore(client: database.client, logger: database.logger)
            let (_, low) = try await store.create(
                name: "low", limits: RateLimits(tokensPerMinute: 100_000), maxTokens: 12, expiresIn: nil)
            let (_, high) = try await store.create(
                name: "high", limits: RateLimits(tokensPerMinute: 100_000), maxTokens: 500, expiresIn: nil)
            let queue = TaskQueue(client: database.client, logger: database.logger)
            let submissions = [submission(low), submission(high), submission(nil), submission(nil, tokenCap: nil)]
            let admissions = try await queue.enqueue(submissions)
            #expect(admissions.map(\.verdict) == [.admitted, .admitted, .admitted, .admitted])
            #expect(admissions[0].limits?.reservation == submissions[0].promptTokens + 12)
            #expect(admissions[1].limits?.reservation == submissions[1].estimate)
            let claimed = try await queue.claim(workerID: "w", limit: 10, lease: .seconds(30))
            let caps = Dictionary(uniqueKeysWithValues: claimed.map { ($0.id, $0.tokenCap) })
            #expect(submissions.map { caps[$0.id] ?? -1 } == [12, 100, 100, nil])
        }
    }
}
