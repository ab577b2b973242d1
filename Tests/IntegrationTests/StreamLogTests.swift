import Foundation
import HandoffRuntime
import HandoffStore
import HandoffWire
import PostgresNIO
import Testing

struct StreamLogTests {
    /// A writer appends 300 events in batches of varying size while a reader tails from the start: the reader
    /// sees every event once, in order, and the stream's end.
    @Test func appendAndTailKeepOrder() async throws {
        try await TestDatabase.with { database in
            let task = try await database.runningTasks(1)[0]
            let log = StreamLog(client: database.client, logger: database.logger)
            let total = 300

            async let written: Void = {
                var sequence = 0
                var size = 1
                while sequence < total {
                    let count = min(size, total - sequence)
                    let events = (sequence + 1...sequence + count).map { "event \($0)" }
                    sequence += count
                    let final = sequence == total
                    try await log.append(
                        [StreamBatch(task: task, sequence: sequence, events: events, final: final)],
                        outcomes: final
                            ? [
                                TaskOutcome(
                                    task: task, status: .succeeded,
                                    usage: Usage(promptTokens: 1, completionTokens: total))
                            ] : [],
                        workerID: "w")
                    size = size % 7 + 1
                }
            }()

            var received: [String] = []
            var cursor = StreamCursor.start
            var ended = false
            let deadline = ContinuousClock.now + .seconds(30)
            while !ended, ContinuousClock.now < deadline {
                for batch in try await log.read(task: task, after: cursor, limit: 5) {
                    for event in batch.events(after: cursor) {
                        #expect(event.cursor.sequence == cursor.sequence + 1, "no gap, no repeat")
                        received.append(event.data)
                        cursor = event.cursor
                    }
                    ended = batch.final
                }
            }
            try await written
            #expect(ended)
            #expect(received == (1...total).map { "event \($0)" })
            #expect(
                try await TaskQueue(client: database.client, logger: database.logger).status(of: task) == .succeeded)
        }
    }

    /// A flush retried after an unknown commit outcome re-sends the same positions: readers see no duplicate.
    /// A retried flush collides with what its first attempt wrote and runs again skipping it: the rest of the flush
    /// (another task's batch, an outcome) still lands.
    @Test func retriedAndOverlappingBatchesAreHarmless() async throws {
        try await TestDatabase.with { database in
            let tasks = try await database.runningTasks(2)
            let task = tasks[0]
            let log = StreamLog(client: database.client, logger: database.logger)
            let first = StreamBatch(task: task, sequence: 2, events: ["a", "b"], final: false)
            try await log.append([first], outcomes: [], workerID: "w")
            try await log.append(
                [first, StreamBatch(task: tasks[1], sequence: 1, events: ["z"], final: true)],
                outcomes: [TaskOutcome(task: tasks[1], status: .succeeded)], workerID: "w")
            let other = try await log.read(task: tasks[1], after: .start).map(\.encodedEvents)
            #expect(other == ["z"])
            let status = try await TaskQueue(client: database.client, logger: database.logger).status(of: tasks[1])
            #expect(status == .succeeded)
            try await log.append(
                [StreamBatch(task: task, sequence: 4, events: ["a", "b", "c", "d"], final: true)], outcomes: [],
                workerID: "w")
            var cursor = StreamCursor.start
            var received: [String] = []
            for batch in try await log.read(task: task, after: cursor) {
                for event in batch.events(after: cursor) {
                    received.append(event.data)
                    cursor = event.cursor
                }
            }
            #expect(received == ["a", "b", "c", "d"])
        }
    }

    @Test func outcomeOnlyAppliesToTheWorkerHoldingTheTask() async throws {
        try await TestDatabase.with { database in
            let task = try await database.runningTasks(1, worker: "holder")[0]
            let log = StreamLog(client: database.client, logger: database.logger)
            try await log.append(
                [StreamBatch(task: task, sequence: 1, events: ["x"], final: true)],
                outcomes: [TaskOutcome(task: task, status: .succeeded)], workerID: "intruder")
            #expect(try await TaskQueue(client: database.client, logger: database.logger).status(of: task) == .running)
        }
    }

    @Test func headsReportTheNewestSequencePerTaskAndMarkThemWatched() async throws {
        try await TestDatabase.with { database in
            let tasks = try await database.runningTasks(3)
            let log = StreamLog(client: database.client, logger: database.logger)
            try await log.append(
                [
                    StreamBatch(task: tasks[0], sequence: 2, events: ["a", "b"], final: false),
                    StreamBatch(task: tasks[1], sequence: 1, events: ["a"], final: false),
                ],
                outcomes: [], workerID: "w")
            try await log.append(
                [StreamBatch(task: tasks[0], sequence: 5, events: ["c", "d", "e"], final: false)], outcomes: [],
                workerID: "w")
            #expect(try await log.heads(ofWatched: tasks).heads == [tasks[0]: 5, tasks[1]: 1])
            let rows = try await database.client.query(
                "SELECT count(*) FROM handoff_tasks WHERE watched_at > now() - interval '1 minute'",
                logger: database.logger)
            for try await watched in rows.decode(Int.self) {
                #expect(watched == 3, "every watched task, streamed or not")
            }
        }
    }

    /// A statement Postgres rejects must surface as an error, not be dropped with its unread result.
    @Test func aRejectedAppendThrows() async throws {
        try await TestDatabase.with { database in
            let task = try await database.runningTasks(1)[0]
            let log = StreamLog(client: database.client, logger: database.logger)
            await #expect(throws: PSQLError.self) {
                // Postgres text cannot hold NUL.
                try await log.append(
                    [StreamBatch(task: task, sequence: 1, events: ["a\u{0}b"], final: false)], outcomes: [],
                    workerID: "w")
            }
        }
    }

    /// Rows from a worker that no longer holds the task (its lease was taken back) are not written.
    @Test func onlyTheHoldingWorkerWritesTheStream() async throws {
        try await TestDatabase.with { database in
            let task = try await database.runningTasks(1, worker: "holder")[0]
            let log = StreamLog(client: database.client, logger: database.logger)
            try await log.append(
                [StreamBatch(task: task, sequence: 1, events: ["zombie"], final: false)], outcomes: [],
                workerID: "zombie")
            #expect(try await log.read(task: task, after: .start).isEmpty)
            try await log.append(
                [StreamBatch(task: task, sequence: 1, events: ["holder"], final: false)], outcomes: [],
                workerID: "holder")
            #expect(try await log.read(task: task, after: .start).flatMap(\.events) == ["holder"])
        }
    }

    @Test func aReaderAtTheEndStillSeesTheFinalBatch() async throws {
        try await TestDatabase.with { database in
            let task = try await database.runningTasks(1)[0]
            let log = StreamLog(client: database.client, logger: database.logger)
            try await log.append(
                [StreamBatch(task: task, sequence: 2, events: ["a", "b"], final: true)], outcomes: [], workerID: "w")
            for cursor in [2, 99] {
                let batches = try await log.read(task: task, after: StreamCursor(sequence: cursor))
                #expect(batches.map(\.final) == [true])
                #expect(batches.allSatisfy { Array($0.events(after: StreamCursor(sequence: cursor))).isEmpty })
            }
        }
    }

    /// What a flush's NOTIFYs say, read off a raw LISTEN: a small flush travels whole, a big one as row keys; no
    /// payload reaches Postgres's limit (it refuses one of 8,000 bytes); every inserted row is announced once.
    @Test func announcementsCarrySmallFlushesWholeAndBigOnesAsKeys() async throws {
        try await TestDatabase.with { database in
            let tasks = try await database.runningTasks(1013)
            let log = StreamLog(client: database.client, logger: database.logger)
            // 13 rows of about 3.6 kB: just under what one flush carries, each row near the most a payload packs.
            let small = tasks.prefix(13).enumerated().map { index, task in
                StreamBatch(
                    task: task, sequence: 1, events: [String(repeating: "s", count: 3_590 + index)], final: false)
            }
            // A thousand rows of every size, some too large to carry even alone.
            let big = tasks.dropFirst(13).enumerated().map { index, task in
                StreamBatch(
                    task: task, sequence: 1, events: ["é" + String(repeating: "b", count: index * 37 % 4_200)],
                    final: false)
            }
            let connection = try await PostgresConnection.connect(
                configuration: database.settings.connectionConfiguration(applicationName: "payload-listener"), id: 1,
                logger: database.logger)
            let payloads = try await connection.listen(on: NotifyChannel.streamAppended) { notifications in
                try await log.append(small, outcomes: [], workerID: "w")
                try await log.append(big, outcomes: [], workerID: "w")
                return try await withDeadline(.seconds(20)) {
                    var payloads: [String] = []
                    var announced = 0
                    for try await notification in notifications {
                        payloads.append(notification.payload)
                        let announcement = StreamAppendPayload.decode(notification.payload) { _ in true }
                        announced += announcement.batches.count + announcement.toFetch.count
                        if announced >= tasks.count { break }
                    }
                    return payloads
                }
            }
            try await connection.close()
            #expect(payloads.allSatisfy { $0.utf8.count < 8_000 })
            let announcements = payloads.map { StreamAppendPayload.decode($0) { _ in true } }
            let carried = announcements.flatMap(\.batches)
            #expect(carried.count == small.count, "the small flush whole")
            #expect(
                Dictionary(uniqueKeysWithValues: carried.map { ($0.task, $0.events) })
                    == Dictionary(uniqueKeysWithValues: small.map { ($0.task, $0.events) }))
            #expect(Set(announcements.flatMap(\.toFetch).map(\.task)) == Set(big.map(\.task)))
            #expect(announcements.flatMap(\.toFetch).count == big.count)
        }
    }
}
