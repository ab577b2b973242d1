import Foundation
import HandoffStore
import HandoffWire
import PostgresNIO
import Testing

/// `Idempotency-Key` against a real database: retries find their first task, a reused key is refused, and two
/// attempts racing with the same key queue one task.
struct IdempotencyTests {
    let request = ChatCompletionRequest(
        model: "demo", messages: [ChatMessage(role: "user", content: "once")], stream: true)

    static let body = #"{"model":"demo","stream":true,"messages":[{"role":"user","content":"once"}]}"#

    func enqueue(
        _ database: TestDatabase, scope: String = "s", body: String = Self.body, window: Duration = .seconds(60)
    ) async throws
        -> (UUID, TaskQueue.IdempotentEnqueue)
    {
        let id = UUID()
        let submission = TaskSubmission(
            id: id, request: request, body: body, caller: "", tokenCap: request.tokenLimit, reservationCeiling: 16)
        let result = try await TaskQueue(client: database.client, logger: database.logger).enqueue(
            submission, scope: scope, window: window)
        return (id, result.outcome)
    }

    func taskCount(_ database: TestDatabase) async throws -> Int {
        try await database.client.perform(
            "SELECT count(*) FROM handoff_tasks", timeout: .seconds(10), logger: database.logger
        )
        .decode(Int.self).first ?? -1
    }

    @Test func aRetryGetsTheFirstTaskAndAReusedKeyIsRefused() async throws {
        try await TestDatabase.with { database in
            let (first, queued) = try await enqueue(database)
            #expect(queued == .queued)
            #expect(try await enqueue(database).1 == .existing(first))
            // The same request spelled differently is a retry; a different field (one Handoff does not read) is not.
            #expect(
                try await enqueue(
                    database,
                    body: #"{ "stream": true, "messages": [{"content":"once","role":"user"}], "model":"demo" }"#
                ).1
                    == .existing(first))
            #expect(
                try await enqueue(database, body: Self.body.replacingOccurrences(of: "}]}", with: "}],\"tools\":[]}")).1
                    == .keyReused)
            #expect(try await enqueue(database, scope: "another caller").1 == .queued)
            #expect(try await taskCount(database) == 2)
        }
    }

    @Test func aKeyOlderThanItsWindowStartsANewTask() async throws {
        try await TestDatabase.with { database in
            _ = try await enqueue(database)
            try await database.client.perform(
                "UPDATE handoff_idempotency SET created_at = now() - interval '2 minutes'", timeout: .seconds(10),
                logger: database.logger)
            #expect(
                try await enqueue(database, body: #"{"model":"demo","messages":[{"role":"user","content":"other"}]}"#).1
                    == .queued)
            #expect(try await taskCount(database) == 2)
        }
    }

    @Test func concurrentAttemptsWithOneKeyQueueOneTask() async throws {
        try await TestDatabase.with { database in
            let results = try await withThrowingTaskGroup(of: TaskQueue.IdempotentEnqueue.self) { group in
                for _ in 0..<8 { group.addTask { try await enqueue(database).1 } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(results.filter { $0 == .queued }.count == 1)
            #expect(try await taskCount(database) == 1)
        }
    }

    @Test func theScopeHidesTheCaller() throws {
        let a = try #require(try IdempotencyKey("k-1", authorization: "Bearer sk-a"))
        #expect(a != (try IdempotencyKey("k-1", authorization: "Bearer sk-b")))
        #expect(!a.scope.contains("sk-a") && a.scope.count == 64)
        #expect(try IdempotencyKey(nil, authorization: "x") == nil)
        #expect(throws: OpenAIError.self) { try IdempotencyKey("has space", authorization: nil) }
    }
}
