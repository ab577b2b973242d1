import Foundation
import HandoffStore
import HandoffWire
import Testing

/// What happens to the tasks of a worker that stopped renewing its leases.
struct LeaseRescueTests {
    func expireLeases(_ database: TestDatabase) async throws {
        try await database.client.perform(
            "UPDATE handoff_tasks SET lease_expires_at = now() - interval '1 second' WHERE status = 'running'",
            timeout: .seconds(10), logger: database.logger)
    }

    func status(_ database: TestDatabase, _ task: UUID) async throws -> TaskStatus? {
        try await TaskQueue(client: database.client, logger: database.logger).status(of: task)
    }

    func rescue(_ database: TestDatabase, maxAttempts: Int = 3) async throws -> TaskQueue.Rescue {
        try await TaskQueue(client: database.client, logger: database.logger)
            .rescueExpired(maxAttempts: maxAttempts)
    }

    @Test func aTaskThatStreamedNothingIsRequeuedAndRunsAgain() async throws {
        try await TestDatabase.with { database in
            let task = try await database.runningTasks(1, worker: "dead")[0]
            #expect(try await rescue(database) == .init(requeued: 0, failed: 0), "the lease has not expired yet")
            try await expireLeases(database)
            #expect(try await rescue(database) == .init(requeued: 1, failed: 0))
            #expect(try await status(database, task) == .queued)
            let again = try await database.claimAll(worker: "alive")
            #expect(again.map(\.id) == [task])
            #expect(again.first?.attempt == 2)
        }
    }

    /// Its clients have part of the reply: they get an error event and the end, never silence.
    @Test func aTaskThatStreamedFailsWithAnErrorEventAndTheEnd() async throws {
        try await TestDatabase.with { database in
            let task = try await database.runningTasks(1, worker: "dead")[0]
            let log = StreamLog(client: database.client, logger: database.logger)
            try await log.append(
                [StreamBatch(task: task, sequence: 3, events: ["a", "b", "c"], final: false)], outcomes: [],
                workerID: "dead")
            try await expireLeases(database)
            #expect(try await rescue(database) == .init(requeued: 0, failed: 1))
            #expect(try await status(database, task) == .failed)
            let batches = try await log.read(task: task, after: StreamCursor(sequence: 3))
            #expect(batches.map(\.sequence) == [4])
            #expect(batches.last?.final == true)
            let error = try JSONDecoder().decode(
                OpenAIError.self, from: Data(try #require(batches.last?.events.first).utf8))
            #expect(error.code == "worker_lost")
            // The dead worker, should it wake up, can no longer write.
            try await log.append(
                [StreamBatch(task: task, sequence: 5, events: ["late"], final: false)], outcomes: [], workerID: "dead")
            #expect(try await log.heads(ofWatched: [task]).heads == [task: 4])
        }
    }

    @Test func attemptsAreBounded() async throws {
        try await TestDatabase.with { database in
            let task = try await database.runningTasks(1, worker: "dead")[0]
            for _ in 1..<3 {
                try await expireLeases(database)
                #expect(try await rescue(database).requeued == 1)
                _ = try await database.claimAll(worker: "dead")
            }
            try await expireLeases(database)
            #expect(try await rescue(database) == .init(requeued: 0, failed: 1), "third attempt lost: no fourth")
            #expect(try await status(database, task) == .failed)
        }
    }

    @Test func renewedLeasesAreLeftAlone() async throws {
        try await TestDatabase.with { database in
            let tasks = try await database.runningTasks(3, worker: "alive")
            try await expireLeases(database)
            _ = try await TaskQueue(client: database.client, logger: database.logger)
                .renewLeases(workerID: "alive", running: tasks, lease: .seconds(30), abandonAfter: .seconds(60))
            #expect(try await rescue(database) == .init(requeued: 0, failed: 0))
        }
    }

    /// A claim that committed after its worker stopped waiting for it (a partition healing mid-claim, seen in the
    /// multi-host test) leaves a task the table says the worker holds but the worker never runs: its lease is not
    /// renewed, so the rescue takes it back and another claim runs it.
    @Test func aTaskItsWorkerDoesNotRunIsNotRenewedAndIsRescued() async throws {
        try await TestDatabase.with { database in
            let tasks = try await database.runningTasks(3, worker: "alive")
            try await expireLeases(database)
            _ = try await TaskQueue(client: database.client, logger: database.logger)
                .renewLeases(
                    workerID: "alive", running: Array(tasks.prefix(2)), lease: .seconds(30), abandonAfter: .seconds(60))
            #expect(try await rescue(database) == .init(requeued: 1, failed: 0))
            #expect(try await status(database, tasks[2]) == .queued)
        }
    }

    /// Every worker runs a rescuer: together they take each expired task back exactly once.
    @Test func concurrentRescuersTakeEachTaskOnce() async throws {
        try await TestDatabase.with { database in
            _ = try await database.runningTasks(50, worker: "dead")
            try await expireLeases(database)
            let rescues = try await withThrowingTaskGroup(of: TaskQueue.Rescue.self) { group in
                for _ in 0..<4 { group.addTask { try await rescue(database) } }
                return try await group.reduce(into: [TaskQueue.Rescue]()) { $0.append($1) }
            }
            #expect(rescues.reduce(0) { $0 + $1.requeued } == 50)
            #expect(rescues.allSatisfy { $0.failed == 0 })
        }
    }
}
