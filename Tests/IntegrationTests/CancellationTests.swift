import Foundation
import HandoffStore
import HandoffWire
import Logging
import PostgresNIO
import Testing

@testable import Worker

/// Stopping tasks early, against a real database: explicit cancel, abandonment, hand-back at shutdown, pruning.
struct CancellationTests {
    func chunks(_ database: TestDatabase, _ task: UUID) async throws -> [String] {
        try await database.renderedEvents(of: task)
    }

    func decode(_ event: String) throws -> ChatCompletionChunk {
        try JSONDecoder().decode(ChatCompletionChunk.self, from: Data(event.utf8))
    }

    /// Runs `body` with a writer running, like the worker's service group does.
    func withWriter(_ writer: StreamWriter, _ body: @Sendable () async throws -> Void) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await writer.run() }
            try await body()
            group.cancelAll()
        }
    }

    func queue(_ database: TestDatabase) -> TaskQueue {
        TaskQueue(client: database.client, logger: database.logger)
    }

    @Test func aCancelledTaskStopsWithinAWindowAndEndsWithItsUsage() async throws {
        try await TestDatabase.with { database in
            // 500 tokens at 20 ms: ten seconds of story unless the cancel stops it.
            let id = UUID()
            try await queue(database).enqueue(
                id: id,
                request: ChatCompletionRequest(
                    model: "demo", messages: [ChatMessage(role: "user", content: "a long one")], maxTokens: 500,
                    stream: true))
            let task = try #require(try await database.claimAll(worker: "w").first)
            let cancellations = TaskCancellations()
            let writer = database.writer(worker: "w")
            let executor = database.executor(
                writer: writer, worker: "w", tokenDelay: .milliseconds(20), cancellations: cancellations)
            let clock = ContinuousClock()
            let stoppedAfter = try await withThrowingTaskGroup(of: Duration?.self) { group in
                group.addTask {
                    try await writer.run()
                    return nil
                }
                defer { group.cancelAll() }
                return try await withThrowingTaskGroup(of: Void.self, returning: Duration.self) { run in
                    run.addTask { await executor.run(task) }
                    try await Task.sleep(for: .milliseconds(150))
                    #expect(try await queue(database).requestCancel(id) == .running)
                    let asked = clock.now
                    cancellations.stop(id, because: .cancelled)  // what the worker's cancel NOTIFY does
                    try await run.waitForAll()
                    return clock.now - asked
                }
            }
            // Within a window or so; a loaded machine may take a second or more, but nothing near the story's ten.
            #expect(stoppedAfter < .seconds(3), "stopped soon after the cancel, not at the story's end")
            let events = try await chunks(database, id)
            let contents = try events.dropFirst().dropLast().map { try decode($0).choices.first?.delta.content }
            #expect(
                contents.allSatisfy { $0 != nil } && (1...60).contains(contents.count),
                "\(contents.count) tokens before the cancel")
            let finish = try decode(events.last!)
            #expect(finish.choices.first?.finishReason == "cancelled")
            #expect(try await queue(database).status(of: id) == .cancelled)
            #expect(try await queue(database).requestCancel(id) == .cancelled, "a second cancel finds it over")
        }
    }

    @Test func aTaskCancelledWhileQueuedEndsAtOnceWithoutRunningTheModel() async throws {
        try await TestDatabase.with { database in
            let id = try await database.enqueue(1)[0]
            #expect(try await queue(database).requestCancel(id) == .queued)
            let task = try #require(try await database.claimAll(worker: "w").first)
            #expect(task.cancelRequested)
            let writer = database.writer(worker: "w")
            try await withWriter(writer) {
                await database.executor(writer: writer, worker: "w", tokenDelay: .seconds(60)).run(task)
            }
            let events = try await chunks(database, id)
            #expect(events.count == 1)
            #expect(try decode(events[0]).choices.first?.finishReason == "cancelled")
            #expect(try await queue(database).requestCancel(UUID()) == nil, "an unknown task is nil, not an error")
        }
    }

    @Test func leaseRenewalNamesTasksNobodyWatches() async throws {
        try await TestDatabase.with { database in
            let ids = try await database.runningTasks(3, worker: "w")
            let queue = queue(database)
            // One watched just now, one cancelled explicitly, one nobody looked at since it started a minute ago.
            try await database.client.perform(
                """
                UPDATE handoff_tasks SET started_at = now() - interval '60 seconds',
                    watched_at = CASE WHEN id = \(ids[0]) THEN now() END,
                    cancel_requested_at = CASE WHEN id = \(ids[1]) THEN now() END
                """, timeout: .seconds(10), logger: database.logger)
            // Just after an outage (no abandonment judged) only the explicit cancel stops a task.
            let afterOutage = try await queue.renewLeases(
                workerID: "w", running: ids, lease: .seconds(10), abandonAfter: nil)
            #expect(afterOutage == [LeaseStop(id: ids[1], abandoned: false)])
            let stop = try await queue.renewLeases(
                workerID: "w", running: ids, lease: .seconds(10), abandonAfter: .seconds(30))
            #expect(Set(stop.map(\.id)) == [ids[1], ids[2]])
            #expect(stop.first { $0.id == ids[2] }?.abandoned == true, "the unwatched one is named abandoned")
            // The abandoned one stays marked: a later renewal with a longer grace still names it.
            #expect(
                Set(
                    try await queue.renewLeases(
                        workerID: "w", running: ids, lease: .seconds(10), abandonAfter: .seconds(120)
                    ).map(\.id)) == [ids[1], ids[2]])
            // Only its own tasks: another worker that says it runs them is told they are lost to it.
            let foreign = try await queue.renewLeases(
                workerID: "other", running: ids, lease: .seconds(10), abandonAfter: .zero)
            #expect(Set(foreign) == Set(ids.map { LeaseStop(id: $0, lost: true) }))
            // A background response is meant to run with nobody watching: never abandoned.
            try await database.client.perform(
                """
                UPDATE handoff_tasks SET response = \(ResponseSettings(model: "demo", background: true).stored)::jsonb,
                    cancel_requested_at = NULL WHERE id = \(ids[2])
                """, timeout: .seconds(10), logger: database.logger)
            let afterBackground = try await queue.renewLeases(
                workerID: "w", running: ids, lease: .seconds(10), abandonAfter: .zero)
            #expect(afterBackground.map(\.id) == [ids[1]])
        }
    }

    /// At shutdown a task that streamed only its role chunk goes back to the queue; one with content fails visibly.
    @Test func shutdownHandsBackWhatHasNotStreamedAndFailsTheRest() async throws {
        try await TestDatabase.with { database in
            let ids = [UUID(), UUID()]
            for id in ids {
                try await queue(database).enqueue(
                    id: id,
                    request: ChatCompletionRequest(
                        model: "demo", messages: [ChatMessage(role: "user", content: "a long one")], maxTokens: 500,
                        stream: true))
            }
            let tasks = try await database.claimAll(worker: "w")
            let cancellations = TaskCancellations()
            let writer = database.writer(worker: "w")
            // The first task gets its content committed; the second sleeps before its first token.
            let fast = database.executor(
                writer: writer, worker: "w", tokenDelay: .milliseconds(10), cancellations: cancellations)
            let slow = database.executor(
                writer: writer, worker: "w", tokenDelay: .seconds(60), cancellations: cancellations)
            try await withWriter(writer) {
                try await withThrowingTaskGroup(of: Void.self) { run in
                    run.addTask { await fast.run(tasks.first { $0.id == ids[0] }!) }
                    run.addTask { await slow.run(tasks.first { $0.id == ids[1] }!) }
                    let contentCommitted = try await eventually {
                        try await database.client.perform(
                            "SELECT 1 FROM handoff_stream WHERE task_id = \(ids[0]) AND seq > 1", timeout: .seconds(10),
                            logger: database.logger
                        ).count > 0
                    }
                    #expect(contentCommitted)
                    cancellations.stopAll(because: .shutdown)
                    try await run.waitForAll()
                }
            }
            let queue = queue(database)
            #expect(try await queue.status(of: ids[0]) == .failed)
            let last = try await chunks(database, ids[0]).last!
            #expect(try JSONDecoder().decode(OpenAIError.self, from: Data(last.utf8)).code == "worker_shutdown")
            #expect(try await queue.status(of: ids[1]) == .queued)
            let again = try #require(try await database.claimAll(worker: "w2").first)
            #expect(again.id == ids[1] && again.attempt == 1, "handing back does not use up an attempt")
        }
    }

    /// Deleting a response erases its stream at once. A queued one goes; a running one's row stays, hidden and
    /// cancelled, because its worker may be flushing (stream rows have no foreign key): the worker ends it, and
    /// what it wrote meanwhile goes with the row when it is pruned.
    @Test func deletingARunningResponseHidesAndCancelsIt() async throws {
        try await TestDatabase.with { database in
            let running = try await database.runningTasks(1, worker: "w")[0]
            let queued = try await database.enqueue(1)[0]
            try await database.client.perform(
                "UPDATE handoff_tasks SET response = '{}'::jsonb", timeout: .seconds(10), logger: database.logger)
            let log = StreamLog(client: database.client, logger: database.logger)
            try await log.append(
                [StreamBatch(task: running, sequence: 1, events: ["x"], final: false)], outcomes: [], workerID: "w")
            let queue = queue(database)
            #expect(try await queue.delete(running))
            #expect(try await queue.delete(queued))
            #expect(try await queue.status(of: queued) == nil)
            #expect(try await queue.responseRecord(running) == nil, "gone from the Responses API")
            #expect(try await queue.delete(running) == false)
            let marked = try await database.client.perform(
                "SELECT 1 FROM handoff_tasks WHERE id = \(running) AND cancel_requested_at IS NOT NULL",
                timeout: .seconds(10), logger: database.logger)
            #expect(marked.count == 1, "its worker is told to stop")
            #expect(try await log.read(task: running, after: .start).isEmpty, "its stream is erased")
            // The worker, still flushing, ends it; its last rows go when the task is pruned.
            try await log.append(
                [StreamBatch(task: running, sequence: 2, events: ["y"], final: true)],
                outcomes: [TaskOutcome(task: running, status: .cancelled)], workerID: "w")
            try await database.client.perform(
                "UPDATE handoff_tasks SET finished_at = now() - interval '2 hours'", timeout: .seconds(10),
                logger: database.logger)
            #expect(try await queue.prune(retention: .seconds(3600)) == 1)
            let rows = try await database.client.perform(
                "SELECT count(*) FROM handoff_stream", timeout: .seconds(10), logger: database.logger)
            #expect(try rows.decode(Int.self).map(\.self) == [0])
        }
    }

    @Test func pruningDeletesOnlyTasksFinishedBeforeTheRetention() async throws {
        try await TestDatabase.with { database in
            let ids = try await database.runningTasks(3, worker: "w")
            try await StreamLog(client: database.client, logger: database.logger).append(
                ids.map { StreamBatch(task: $0, sequence: 1, events: ["x"], final: true) },
                outcomes: ids.map { TaskOutcome(task: $0, status: .succeeded) }, workerID: "w")
            try await database.client.perform(
                "UPDATE handoff_tasks SET finished_at = now() - interval '2 hours' WHERE id <> \(ids[2])",
                timeout: .seconds(10), logger: database.logger)
            let queue = queue(database)
            #expect(try await queue.prune(retention: .seconds(3600)) == 2)
            #expect(try await queue.status(of: ids[0]) == nil)
            #expect(try await queue.status(of: ids[2]) == .succeeded)
            #expect(try await queue.prune(retention: .seconds(3600)) == 0)
            let rows = try await database.client.query("SELECT count(*) FROM handoff_stream", logger: database.logger)
            for try await count in rows.decode(Int.self) { #expect(count == 1, "stream rows go with their task") }
        }
    }
}
