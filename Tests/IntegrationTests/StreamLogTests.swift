import Foundation
import PostgresNIO
import Shared
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
                        outcomes: final ? [TaskOutcome(task: task, status: .succeeded, usage: Usage(promptTokens: 1, completionTokens: total))] : [],
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
            #expect(try await TaskQueue(client: database.client, logger: database.logger).status(of: task) == .succeeded)
        }
    }

    /// A flush retried after an unknown commit outcome re-sends the same positions: readers see no duplicate.
    @Test func retriedAndOverlappingBatchesAreHarmless() async throws {
        try await TestDatabase.with { database in
            let task = try await database.runningTasks(1)[0]
            let log = StreamLog(client: database.client, logger: database.logger)
            let first = StreamBatch(task: task, sequence: 2, events: ["a", "b"], final: false)
            try await log.append([first], outcomes: [], workerID: "w")
            try await log.append([first], outcomes: [], workerID: "w")
            try await log.append([StreamBatch(task: task, sequence: 4, events: ["a", "b", "c", "d"], final: true)], outcomes: [], workerID: "w")
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
                [StreamBatch(task: tasks[0], sequence: 2, events: ["a", "b"], final: false),
                 StreamBatch(task: tasks[1], sequence: 1, events: ["a"], final: false)],
                outcomes: [], workerID: "w")
            try await log.append([StreamBatch(task: tasks[0], sequence: 5, events: ["c", "d", "e"], final: false)], outcomes: [], workerID: "w")
            #expect(try await log.heads(ofWatched: tasks) == [tasks[0]: 5, tasks[1]: 1])
            let rows = try await database.client.query(
                "SELECT count(*) FROM handoff_tasks WHERE watched_at > now() - interval '1 minute'", logger: database.logger)
            for try await watched in rows.decode(Int.self) { #expect(watched == 3, "every watched task, streamed or not") }
        }
    }

    /// A statement Postgres rejects must surface as an error, not be dropped with its unread result.
    @Test func aRejectedAppendThrows() async throws {
        try await TestDatabase.with { database in
            let task = try await database.runningTasks(1)[0]
            let log = StreamLog(client: database.client, logger: database.logger)
            await #expect(throws: PSQLError.self) {
                // Postgres text cannot hold NUL.
                try await log.append([StreamBatch(task: task, sequence: 1, events: ["a\u{0}b"], final: false)], outcomes: [], workerID: "w")
            }
        }
    }

    /// Rows from a worker that no longer holds the task (its lease was taken back) are not written.
    @Test func onlyTheHoldingWorkerWritesTheStream() async throws {
        try await TestDatabase.with { database in
            let task = try await database.runningTasks(1, worker: "holder")[0]
            let log = StreamLog(client: database.client, logger: database.logger)
            try await log.append([StreamBatch(task: task, sequence: 1, events: ["zombie"], final: false)], outcomes: [], workerID: "zombie")
            #expect(try await log.read(task: task, after: .start).isEmpty)
            try await log.append([StreamBatch(task: task, sequence: 1, events: ["holder"], final: false)], outcomes: [], workerID: "holder")
            #expect(try await log.read(task: task, after: .start).flatMap(\.events) == ["holder"])
        }
    }

    @Test func aReaderAtTheEndStillSeesTheFinalBatch() async throws {
        try await TestDatabase.with { database in
            let task = try await database.runningTasks(1)[0]
            let log = StreamLog(client: database.client, logger: database.logger)
            try await log.append([StreamBatch(task: task, sequence: 2, events: ["a", "b"], final: true)], outcomes: [], workerID: "w")
            for cursor in [2, 99] {
                let batches = try await log.read(task: task, after: StreamCursor(sequence: cursor))
                #expect(batches.map(\.final) == [true])
                #expect(batches.allSatisfy { Array($0.events(after: StreamCursor(sequence: cursor))).isEmpty })
            }
        }
    }
}
