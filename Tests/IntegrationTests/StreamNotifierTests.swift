import Foundation
import HandoffRuntime
import HandoffStore
import HandoffWire
import Logging
import PostgresNIO
import Testing

@testable import SSEChat

/// The SSE server's fan-out, on a real LISTEN connection.
struct StreamNotifierTests {
    func makeNotifier(_ database: TestDatabase, listener: String?, poll: Duration = .seconds(600)) -> StreamNotifier {
        StreamNotifier(
            configuration: .init(pollInterval: poll, keepaliveInterval: .seconds(600)),
            log: StreamLog(client: database.client, logger: database.logger),
            listenerEndpoint: listener.map { database.settings.listenerEndpoint(applicationName: $0) },
            logger: database.logger)
    }

    /// Runs `notifier` for the duration of `body`.
    func running<R: Sendable>(_ notifier: StreamNotifier, _ body: @Sendable () async throws -> R) async throws -> R {
        try await withThrowingTaskGroup(of: R?.self) { group in
            group.addTask {
                try await notifier.run()
                return nil
            }
            defer { group.cancelAll() }
            return try await body()
        }
    }

    /// Runs a listening notifier for `count` new tasks, each subscribed, for the duration of `body`.
    func withSubscribedNotifier(
        _ database: TestDatabase, listener: String, tasks count: Int,
        _ body: @Sendable (StreamNotifier, [UUID], [TestSubscription]) async throws -> Void
    ) async throws {
        let notifier = makeNotifier(database, listener: listener)
        let tasks = try await insertTasks(database, count: count)
        try await running(notifier) {
            _ = try await listeningBackend(database, listener)
            let subscriptions = tasks.map { notifier.subscribe(to: $0) }
            defer { subscriptions.forEach(notifier.unsubscribe) }
            try await body(notifier, tasks, subscriptions)
        }
    }

    /// The pid of the listener's backend once it is listening (and is not `previous`).
    func listeningBackend(_ database: TestDatabase, _ name: String, replacing previous: Int? = nil) async throws -> Int
    {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            let rows = try await database.client.query(
                "SELECT pid FROM pg_stat_activity WHERE application_name = \(name) AND query LIKE 'LISTEN%'",
                logger: database.logger)
            for try await pid in rows.decode(Int.self) where pid != previous { return pid }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TestSetupError("listener \(name) never listened")
    }

    func insertTasks(_ database: TestDatabase, count: Int) async throws -> [UUID] {
        let rows = try await database.client.query(
            """
            INSERT INTO handoff_tasks (id, model, request, status, worker_id)
            SELECT gen_random_uuid(), 'demo', '{}', 'running', 'w' FROM generate_series(1, \(count)) RETURNING id
            """,
            logger: database.logger)
        var ids: [UUID] = []
        for try await id in rows.decode(UUID.self) { ids.append(id) }
        return ids
    }

    @Test func oneNotifierWakesAThousandWaitersOnDifferentTasks() async throws {
        try await TestDatabase.with { database in
            try await withSubscribedNotifier(database, listener: "fanout-listener", tasks: 1000) {
                notifier, tasks, subscriptions in
                let log = StreamLog(client: database.client, logger: database.logger)
                let woken = try await withDeadline(.seconds(20)) {
                    try await withThrowingTaskGroup(of: Bool.self) { group in
                        for subscription in subscriptions {
                            group.addTask {
                                for await _ in subscription.signals where notifier.head(of: subscription.task) == 1 {
                                    return true
                                }
                                return false
                            }
                        }
                        // One group commit for all thousand tasks: several NOTIFY payloads, one transaction.
                        try await log.append(
                            tasks.map { StreamBatch(task: $0, sequence: 1, events: ["x"], final: false) }, outcomes: [],
                            workerID: "w")
                        return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
                    }
                }
                #expect(woken == 1000)
            }
        }
    }

    @Test func aNotifyThatNeverArrivesIsRecoveredByThePoll() async throws {
        try await TestDatabase.with { database in
            let notifier = makeNotifier(database, listener: "poll-listener", poll: .milliseconds(200))
            let task = try await insertTasks(database, count: 1)[0]
            try await running(notifier) {
                _ = try await listeningBackend(database, "poll-listener")
                let subscription = notifier.subscribe(to: task)
                defer { notifier.unsubscribe(subscription) }
                // Written behind the notifier's back: no NOTIFY at all.
                try await database.client.perform(
                    "INSERT INTO handoff_stream (task_id, seq, event_count, events) VALUES (\(task), 3, 3, 'a\nb\nc')",
                    timeout: .seconds(10), logger: database.logger)
                let recovered = await eventually(timeout: .seconds(5)) { notifier.head(of: task) == 3 }
                #expect(recovered)
            }
        }
    }

    @Test func theListenerSurvivesTerminationOfItsBackend() async throws {
        try await TestDatabase.with { database in
            let notifier = makeNotifier(database, listener: "doomed-listener")
            let task = try await insertTasks(database, count: 1)[0]
            try await running(notifier) {
                let first = try await listeningBackend(database, "doomed-listener")
                let subscription = notifier.subscribe(to: task)
                defer { notifier.unsubscribe(subscription) }
                // Committed without a NOTIFY, like one sent while the listener is down: only a look at the table finds
                // it. (Inserted before the termination: the reconnect can be quicker than an insert after it.)
                try await database.client.perform(
                    "INSERT INTO handoff_stream (task_id, seq, event_count, events) VALUES (\(task), 1, 1, 'x')",
                    timeout: .seconds(10), logger: database.logger)
                try await database.client.perform(
                    "SELECT pg_terminate_backend(\(first)::int)", timeout: .seconds(10), logger: database.logger)
                let second = try await listeningBackend(database, "doomed-listener", replacing: first)
                #expect(second != first)
                // The timed poll is effectively off (10 minutes): the reconnect itself must look at the table.
                #expect(await eventually(timeout: .seconds(5)) { notifier.head(of: task) == 1 })
                // And the new connection carries NOTIFYs again.
                try await StreamLog(client: database.client, logger: database.logger).append(
                    [StreamBatch(task: task, sequence: 2, events: ["y"], final: false)], outcomes: [], workerID: "w")
                #expect(await eventually(timeout: .seconds(5)) { notifier.head(of: task) == 2 })
                #expect(try await database.backends(applicationName: "doomed-listener").count == 1)
            }
        }
    }

    /// Announced rows come with their events, straight into the cache clients are served from; a row too large to
    /// travel in a NOTIFY is read once, by the notifier.
    @Test func announcedBatchesAreCachedWithTheirEvents() async throws {
        try await TestDatabase.with { database in
            let notifier = makeNotifier(database, listener: "cache-listener")
            let task = try await insertTasks(database, count: 1)[0]
            try await running(notifier) {
                _ = try await listeningBackend(database, "cache-listener")
                let subscription = notifier.subscribe(to: task)
                defer { notifier.unsubscribe(subscription) }
                let log = StreamLog(client: database.client, logger: database.logger)
                let large = String(repeating: "z", count: 9_000)
                try await log.append(
                    [StreamBatch(task: task, sequence: 2, events: ["a", "b"], final: false)], outcomes: [],
                    workerID: "w")
                try await log.append(
                    [StreamBatch(task: task, sequence: 3, events: [large], final: false)], outcomes: [], workerID: "w")
                try await log.append(
                    [StreamBatch(task: task, sequence: 4, events: ["c"], final: true)], outcomes: [], workerID: "w")
                #expect(
                    await eventually(timeout: .seconds(5)) {
                        notifier.cachedBatches(of: task, after: .start)?.last?.sequence == 4
                    })
                let cached = try #require(notifier.cachedBatches(of: task, after: .start))
                #expect(cached.flatMap(\.events) == ["a", "b", large, "c"])
                #expect(cached.map(\.final) == [false, false, true])
                #expect(notifier.cachedBatches(of: task, after: StreamCursor(sequence: 3))?.flatMap(\.events) == ["c"])
            }
        }
    }

    /// One flush of a thousand tasks, with events of every size up to past what a NOTIFY may carry: Postgres
    /// accepts every payload (it refuses one of 8,000 bytes and more), and every row reaches the cache exactly.
    @Test func aFlushOfEverySizeIsAnnouncedWithinThePayloadLimit() async throws {
        try await TestDatabase.with { database in
            try await withSubscribedNotifier(database, listener: "sizes-listener", tasks: 1000) { notifier, tasks, _ in
                let batches = tasks.enumerated().map { index, task in
                    StreamBatch(
                        task: task, sequence: 2,
                        events: ["é" + String(repeating: "x", count: index * 37 % 4_200), "\(index)"], final: false)
                }
                try await StreamLog(client: database.client, timeout: .seconds(10), logger: database.logger).append(
                    batches, outcomes: [], workerID: "w")
                let all = await eventually(timeout: .seconds(10)) {
                    zip(tasks, batches).allSatisfy { task, batch in
                        notifier.cachedBatches(of: task, after: .start)?.flatMap(\.events) == batch.events
                    }
                }
                #expect(all)
            }
        }
    }

    /// A row the insert skipped — its task held by another worker — is never announced: what a replica is told is
    /// what the table holds.
    @Test func aSkippedRowIsNotAnnounced() async throws {
        try await TestDatabase.with { database in
            try await withSubscribedNotifier(database, listener: "skipped-listener", tasks: 2) { notifier, tasks, _ in
                let log = StreamLog(client: database.client, logger: database.logger)
                try await log.append(
                    [StreamBatch(task: tasks[0], sequence: 1, events: ["stale"], final: false)], outcomes: [],
                    workerID: "other")
                try await log.append(
                    [StreamBatch(task: tasks[1], sequence: 1, events: ["live"], final: false)], outcomes: [],
                    workerID: "w")
                // Announcements arrive in commit order: once the second is here, the first would have been.
                #expect(await eventually(timeout: .seconds(5)) { notifier.head(of: tasks[1]) == 1 })
                #expect(notifier.head(of: tasks[0]) == 0)
                #expect(notifier.cachedBatches(of: tasks[0], after: .start) == nil)
            }
        }
    }

    @Test func unsubscribingForgetsTheTask() async throws {
        try await TestDatabase.with { database in
            let notifier = makeNotifier(database, listener: nil)
            let task = UUID()
            let subscription = notifier.subscribe(to: task)
            notifier.advance(task, to: 4)
            #expect(notifier.head(of: task) == 4)
            notifier.unsubscribe(subscription)
            #expect(notifier.subscriberCount == 0)
            #expect(notifier.head(of: task) == 0)
            notifier.advance(task, to: 5)
            subscription.end()
            var wakes = 0
            for await _ in subscription.signals { wakes += 1 }
            #expect(wakes == 1, "only the wake-up from before unsubscribing")
        }
    }
}

/// A subscription whose wake-ups come out as an async sequence, for tests that watch the notifier alone.
struct TestSubscription: Sendable {
    final class Subscriber: StreamSubscriber {
        let continuation: AsyncStream<Void>.Continuation

        init(_ continuation: AsyncStream<Void>.Continuation) {
            self.continuation = continuation
        }

        func wake() {
            continuation.yield()
        }

        func ownerLapsed() {
            continuation.yield()
        }
    }

    let id: Int
    let task: UUID
    let signals: AsyncStream<Void>
    let subscriber: Subscriber

    func end() {
        subscriber.continuation.finish()
    }
}

extension StreamNotifier {
    func subscribe(to task: UUID) -> TestSubscription {
        let (signals, continuation) = AsyncStream.makeStream(of: Void.self)
        let subscriber = TestSubscription.Subscriber(continuation)
        return TestSubscription(
            id: subscribe(subscriber, to: task)!, task: task, signals: signals, subscriber: subscriber)
    }

    func unsubscribe(_ subscription: TestSubscription) {
        unsubscribe(subscription.id, from: subscription.task)
    }
}
