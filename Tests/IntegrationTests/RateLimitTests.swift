import Foundation
import HandoffStore
import HandoffWire
import PostgresNIO
import Testing

/// Admission, reservation and settlement against a real database: the SQL of `RateLimitLedger`, driven as the API
/// (two replicas: two clients) and the worker drive it.
struct RateLimitTests {
    let request = ChatCompletionRequest(
        model: "demo", messages: [ChatMessage(role: "user", content: "hi")], maxTokens: 20)
    static let body = #"{"model":"demo","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}"#

    func submission(_ key: APIKey?) -> TaskSubmission {
        TaskSubmission(
            id: UUID(), request: request, body: Self.body, caller: key?.digest ?? "", tokenCap: request.tokenLimit,
            reservationCeiling: 1024)
    }

    /// Waits out the last seconds of a UTC minute: a test that reads back this minute's counters must not straddle
    /// two fixed windows (it did once, and found half its requests in the next minute's).
    func awayFromAMinuteBoundary() async throws {
        let intoMinute = Date().timeIntervalSince1970.truncatingRemainder(dividingBy: 60)
        if intoMinute > 50 { try await Task.sleep(for: .milliseconds(Int((60.2 - intoMinute) * 1000))) }
    }

    func usage(_ database: TestDatabase, _ key: String = "") async throws -> [RateLimitScope] {
        try await APIKeyStore(client: database.client, logger: database.logger).usage(key).map(\.scope)
    }

    /// 50 requests at once, split over two API replicas, against a limit that fits 10 reservations: exactly 10 in.
    @Test func concurrentRequestsOnTwoReplicasNeverOvershoot() async throws {
        try await TestDatabase.with(poolSize: 4) { database in
            let store = APIKeyStore(client: database.client, logger: database.logger)
            try await awayFromAMinuteBoundary()
            let reservation = submission(nil).estimate
            let (_, key) = try await store.create(
                name: "ten", limits: RateLimits(tokensPerMinute: 10 * reservation + reservation - 1), maxTokens: nil,
                expiresIn: nil)
            let admitted = try await database.withSecondClient(applicationName: "replica-2") { second in
                let replicas = [
                    TaskQueue(client: database.client, logger: database.logger),
                    TaskQueue(client: second, logger: database.logger),
                ]
                return try await withThrowingTaskGroup(of: [Admission].self) { group in
                    for index in 0..<50 {
                        // Some alone, some in batches of up to 5, as the batcher sends them.
                        let batch = (0...(index % 5 == 0 ? 4 : 0)).map { _ in submission(key) }
                        group.addTask { try await replicas[index % 2].enqueue(batch) }
                    }
                    return try await group.reduce(into: []) { $0 += $1 }.filter { $0.verdict == .admitted }.count
                }
            }
            #expect(admitted == 10)
            let standing = try await usage(database)
            #expect(standing.map(\.reserved) == [10 * reservation])
            #expect(standing.map(\.requestsThisMinute) == [10])
        }
    }

    @Test func requestsPerMinuteAdmitsExactlyTheLimit() async throws {
        try await TestDatabase.with { database in
            let (_, key) = try await APIKeyStore(client: database.client, logger: database.logger)
                .create(name: "five", limits: RateLimits(requestsPerMinute: 5), maxTokens: nil, expiresIn: nil)
            let queue = TaskQueue(client: database.client, logger: database.logger)
            let admissions = try await queue.enqueue((0..<8).map { _ in submission(key) })
            #expect(
                admissions.map(\.verdict) == Array(repeating: .admitted, count: 5)
                    + Array(repeating: .requests, count: 3))
            let refusal = try #require(admissions.last?.limits).refusal(.requests)
            #expect(
                refusal.error.status == 429 && refusal.error.type == "requests"
                    && refusal.error.code == "rate_limit_exceeded")
            #expect(
                refusal.error.message.hasPrefix(
                    "Rate limit reached for key 'five' on requests per min (RPM): Limit 5, Used 5, Requested 1."))
        }
    }

    @Test func unknownRevokedAndExpiredKeysAndTheKeysCapAreRefused() async throws {
        try await TestDatabase.with { database in
            let store = APIKeyStore(client: database.client, logger: database.logger)
            let (_, revoked) = try await store.create(name: "old", limits: RateLimits(), maxTokens: nil, expiresIn: nil)
            #expect(try await store.revoke("old") == 1)
            let (_, expired) = try await store.create(
                name: "brief", limits: RateLimits(), maxTokens: nil, expiresIn: .seconds(1))
            try await database.client.perform(
                "UPDATE handoff_api_keys SET expires_at = now() - interval '1 second' WHERE name = 'brief'",
                timeout: .seconds(5), logger: database.logger)
            let (_, capped) = try await store.create(
                name: "capped", limits: RateLimits(), maxTokens: 10, expiresIn: nil)
            let queue = TaskQueue(client: database.client, logger: database.logger)
            let verdicts = try await queue.enqueue([
                submission(APIKey.generate()), submission(revoked), submission(expired), submission(capped),
                submission(nil),
            ])
            .map(\.verdict)
            #expect(verdicts == [.invalidAPIKey, .invalidAPIKey, .invalidAPIKey, .maxTokens, .admitted])
            #expect(try await store.authenticate(digest: revoked.digest) == nil)
            #expect(try await store.authenticate(digest: capped.digest)?.keyName == "capped")
            let tasks = try await database.client.perform(
                "SELECT count(*) FROM handoff_tasks", timeout: .seconds(5), logger: database.logger)
            #expect(try tasks.decode(Int.self) == [1], "only the keyless request (auth off) was queued")
        }
    }

    /// The outcome's statement charges real usage and releases the reservation, for every outcome; a failure before
    /// any token charges nothing.
    @Test func settlementChargesUsageAndReleasesTheReservation() async throws {
        try await TestDatabase.with { database in
            let store = APIKeyStore(client: database.client, logger: database.logger)
            try await awayFromAMinuteBoundary()
            let (_, key) = try await store.create(
                name: "k", limits: RateLimits(tokensPerDay: 100_000), maxTokens: nil, expiresIn: nil)
            let queue = TaskQueue(client: database.client, logger: database.logger)
            let admissions = try await queue.enqueue((0..<3).map { _ in submission(key) })
            #expect(admissions.allSatisfy { $0.verdict == .admitted })
            let tasks = try await database.claimAll(worker: "w")
            #expect(try await usage(database).map(\.reserved) == [3 * submission(nil).estimate])
            let outcomes = [
                TaskOutcome(
                    task: tasks[0].id, status: .succeeded, usage: Usage(promptTokens: 10, completionTokens: 20)),
                TaskOutcome(task: tasks[1].id, status: .cancelled, usage: Usage(promptTokens: 10, completionTokens: 5)),
                TaskOutcome(task: tasks[2].id, status: .failed, error: .upstreamUnavailable),
            ]
            let log = StreamLog(client: database.client, logger: database.logger)
            try await log.append([], outcomes: outcomes, workerID: "w")
            let standing = try await usage(database)
            #expect(standing.map(\.reserved) == [0])
            #expect(standing.map(\.tokensToday) == [30 + 15])
            #expect(standing.map(\.tokensThisMinute) == [45])
            // A retried outcome finds its task ended: charged once.
            try await log.append([], outcomes: outcomes, workerID: "w")
            #expect(try await usage(database).map(\.tokensToday) == [45])
        }
    }

    /// A worker that dies mid-stream: the rescue charges the prompt estimate and the content events streamed, and
    /// releases the reservation; a task that streamed nothing keeps its reservation for its next attempt.
    @Test func theLeaseRescueSettlesWhatAWorkerStreamed() async throws {
        try await TestDatabase.with { database in
            try await awayFromAMinuteBoundary()
            let (_, key) = try await APIKeyStore(client: database.client, logger: database.logger)
                .create(name: "k", limits: RateLimits(tokensPerMinute: 100_000), maxTokens: nil, expiresIn: nil)
            let queue = TaskQueue(client: database.client, logger: database.logger)
            _ = try await queue.enqueue([submission(key), submission(key)])
            let tasks = try await database.claimAll(worker: "dead")
            let log = StreamLog(client: database.client, logger: database.logger)
            // The role chunk and 6 content events.
            try await log.append(
                [StreamBatch(task: tasks[0].id, sequence: 7, events: (1...7).map { "e\($0)" }, final: false)],
                outcomes: [], workerID: "dead")
            try await database.client.perform(
                "UPDATE handoff_tasks SET lease_expires_at = now() - interval '1 second'", timeout: .seconds(5),
                logger: database.logger)
            #expect(try await queue.rescueExpired(maxAttempts: 3) == .init(requeued: 1, failed: 1))
            let estimate = submission(nil)
            let standing = try await usage(database)
            #expect(standing.map(\.tokensThisMinute) == [estimate.promptTokens + 6])
            #expect(standing.map(\.reserved) == [estimate.estimate], "the requeued task still holds its reservation")
        }
    }

    /// Windows roll: what was charged in an earlier minute no longer counts against this one.
    @Test func aPastWindowCountsAsNothing() async throws {
        try await TestDatabase.with { database in
            let (_, key) = try await APIKeyStore(client: database.client, logger: database.logger)
                .create(name: "k", limits: RateLimits(requestsPerMinute: 1), maxTokens: nil, expiresIn: nil)
            let queue = TaskQueue(client: database.client, logger: database.logger)
            #expect(try await queue.enqueue([submission(key)]).map(\.verdict) == [.admitted])
            #expect(try await queue.enqueue([submission(key)]).map(\.verdict) == [.requests])
            try await database.client.perform(
                "UPDATE handoff_rate_limits SET minute_start = minute_start - interval '1 minute'",
                timeout: .seconds(5), logger: database.logger)
            #expect(try await queue.enqueue([submission(key)]).map(\.verdict) == [.admitted])
        }
    }
}
