import Foundation
import HandoffStore
import HandoffWire
import Synchronization
import Testing

@testable import Worker

/// A task whose worker was lost after it streamed part of its answer: requeued with the answer kept, and continued
/// by the next worker in the same stream.
struct ContinuationRescueTests {
    let demo = TaskQueue.Continuable(models: ["demo"], max: 2)

    func expireAndRescue(_ database: TestDatabase, continuable: TaskQueue.Continuable) async throws -> TaskQueue.Rescue
    {
        try await database.client.perform(
            "UPDATE handoff_tasks SET lease_expires_at = now() - interval '1 second' WHERE status = 'running'",
            timeout: .seconds(10), logger: database.logger)
        return try await TaskQueue(client: database.client, logger: database.logger)
            .rescueExpired(maxAttempts: 3, continuable: continuable)
    }

    /// A running demo task that streamed its role chunk and `tokens` content chunks of its real answer, as the lost
    /// worker would have.
    func partlyStreamed(_ database: TestDatabase, tokens: Int) async throws -> ClaimedTask {
        _ = try await database.enqueue(1, prompt: "continue me")
        let task = try #require(try await database.claimAll(worker: "lost").first)
        let events = CompletionEvents(task: task)
        var pieces: [String] = []
        for try await delta in DemoModel(tokenDelay: .zero).deltas(for: task.request, cap: task.tokenCap) {
            if case .content(let text) = delta, pieces.count < tokens { pieces.append(text) }
        }
        try await StreamLog(client: database.client, logger: database.logger).append(
            [
                StreamBatch(
                    task: task.id, sequence: 1 + tokens, events: [events.role()] + pieces.map(events.content),
                    final: false)
            ],
            outcomes: [], workerID: "lost")
        return task
    }

    @Test func aStreamedAnswerIsRequeuedWithItsEventsKept() async throws {
        try await TestDatabase.with { database in
            let task = try await partlyStreamed(database, tokens: 4)
            #expect(try await expireAndRescue(database, continuable: demo) == .init(requeued: 1, failed: 0))
            let again = try #require(try await database.claimAll(worker: "next").first)
            #expect(again.id == task.id)
            #expect(again.streamedHead == 5 && again.continuesAnswer && again.continuations == 1)
            let events = try await database.renderedEvents(of: task.id)
            let answer = ContinuedAnswer(events: events, continuedBefore: 0)
            #expect(answer.outputEvents == 4)
            #expect(!answer.partial.text.isEmpty && !answer.partial.toolCalls)
        }
    }

    @Test func continuationsAreBoundedAndOtherModelsStillFail() async throws {
        try await TestDatabase.with { database in
            let task = try await partlyStreamed(database, tokens: 2)
            for _ in 0..<2 {
                #expect(try await expireAndRescue(database, continuable: demo).requeued == 1)
                _ = try await database.claimAll(worker: "next")
            }
            #expect(try await expireAndRescue(database, continuable: demo) == .init(requeued: 0, failed: 1))
            #expect(
                try await TaskQueue(client: database.client, logger: database.logger).status(of: task.id) == .failed)

            _ = try await partlyStreamed(database, tokens: 2)
            let none = TaskQueue.Continuable(models: ["other"], max: 2)
            #expect(try await expireAndRescue(database, continuable: none) == .init(requeued: 0, failed: 1))
        }
    }

    /// The next worker's run: one role chunk in the whole stream, its numbers going on without a gap, and the text
    /// the answer would have had undisturbed.
    @Test(arguments: [1, 7])
    func theNextWorkerFinishesTheSameAnswer(streamed: Int) async throws {
        try await TestDatabase.with { database in
            let task = try await partlyStreamed(database, tokens: streamed)
            _ = try await expireAndRescue(database, continuable: demo)
            let claimed = try #require(try await database.claimAll(worker: "next").first)
            let writer = database.writer(worker: "next")
            let executor = database.executor(writer: writer, worker: "next")
            await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await writer.run() }
                await executor.run(claimed)
                group.cancelAll()
            }
            #expect(
                try await TaskQueue(client: database.client, logger: database.logger).status(of: task.id) == .succeeded)
            let events = try await database.renderedEvents(of: task.id)
            let chunks = try events.map { try JSONDecoder().decode(ChatCompletionChunk.self, from: Data($0.utf8)) }
            #expect(chunks.filter { $0.choices.first?.delta.role != nil }.count == 1, "one role chunk")
            let text = chunks.compactMap { $0.choices.first?.delta.content }.joined()
            #expect(text == (try await DemoModelTests().collect(task.request, cap: task.tokenCap).text))
            #expect(chunks.last?.choices.first?.finishReason == "stop")
            let rows = try await StreamLog(client: database.client, logger: database.logger).read(
                task: task.id, after: .start)
            // Both runs store the slim form; rendering gives every chunk the task's one identity (`ChunkFrame`).
            #expect(rows.flatMap(\.events).allSatisfy { !$0.hasPrefix(#"{"id""#) })
            #expect(
                rows.first?.firstSequence == 1
                    && zip(rows, rows.dropFirst()).allSatisfy { $1.firstSequence == $0.sequence + 1 })
        }
    }

    /// A worker shutting down hands a streamed answer back for another worker to continue, rather than failing it.
    @Test func aWorkerShuttingDownHandsTheAnswerOnToTheNext() async throws {
        try await TestDatabase.with { database in
            _ = try await database.enqueue(1, prompt: "hand me on")
            let task = try #require(try await database.claimAll(worker: "leaving").first)
            let cancellations = TaskCancellations()
            let writer = database.writer(worker: "leaving")
            // The reply stalls after a few tokens, so the shutdown always lands mid-answer however slow the machine.
            let stalling = DemoModel(tokenDelay: .milliseconds(1), timer: StallingTimer(passing: 4))
            let leaving = database.executor(
                writer: writer, worker: "leaving", models: ModelRegistry(["demo": stalling]),
                cancellations: cancellations, continuable: demo)
            await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await writer.run() }
                await withTaskGroup(of: Void.self) { run in
                    run.addTask { await leaving.run(task) }
                    let streamed = try? await eventually {
                        try await database.client.perform(
                            "SELECT 1 FROM handoff_stream WHERE task_id = \(task.id) AND seq >= 3",
                            timeout: .seconds(10), logger: database.logger
                        ).count > 0
                    }
                    #expect(streamed == true)
                    cancellations.stopAll(because: .shutdown)
                }
                group.cancelAll()
            }
            let queue = TaskQueue(client: database.client, logger: database.logger)
            #expect(try await queue.status(of: task.id) == .queued)
            let next = try #require(try await database.claimAll(worker: "next").first)
            #expect(next.continuesAnswer && next.continuations == 1 && next.attempt == 2)
            let writer2 = database.writer(worker: "next")
            await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await writer2.run() }
                await database.executor(writer: writer2, worker: "next").run(next)
                group.cancelAll()
            }
            #expect(try await queue.status(of: task.id) == .succeeded)
            let events = try await database.renderedEvents(of: task.id)
            let chunks = try events.map { try JSONDecoder().decode(ChatCompletionChunk.self, from: Data($0.utf8)) }
            let text = chunks.compactMap { $0.choices.first?.delta.content }.joined()
            #expect(text == (try await DemoModelTests().collect(task.request, cap: task.tokenCap).text))
        }
    }

    /// A worker whose own task was requeued while it still ran it (its lease ran out in an outage) does not claim it
    /// again until that run has stopped: two runs of one worker would both pass the stream's write guard.
    @Test func aWorkerDoesNotClaimATaskItStillRuns() async throws {
        try await TestDatabase.with { database in
            let task = try await partlyStreamed(database, tokens: 2)
            _ = try await expireAndRescue(database, continuable: demo)
            let queue = TaskQueue(client: database.client, logger: database.logger)
            let whileRunning = try await queue.claim(
                workerID: "lost", limit: 10, lease: .seconds(30), except: [task.id])
            #expect(whileRunning.isEmpty)
            let stops = try await queue.renewLeases(
                workerID: "lost", running: [task.id], lease: .seconds(30), abandonAfter: .seconds(60))
            #expect(stops == [LeaseStop(id: task.id, lost: true)])
            let afterwards = try await queue.claim(workerID: "lost", limit: 10, lease: .seconds(30), except: [])
            #expect(afterwards.map(\.id) == [task.id])
            #expect(afterwards.first?.continuesAnswer == true)
        }
    }

    /// A worker cut off longer than its lease (a failover, a partition) learns at its next renewal that the task it
    /// still runs was given to another worker, and stops its run.
    @Test func aWorkerThatLostItsTaskLearnsItAtItsNextRenewal() async throws {
        try await TestDatabase.with { database in
            let task = try await partlyStreamed(database, tokens: 2)
            _ = try await expireAndRescue(database, continuable: demo)
            let stops = try await TaskQueue(client: database.client, logger: database.logger).renewLeases(
                workerID: "lost", running: [task.id], lease: .seconds(30), abandonAfter: .seconds(60))
            #expect(stops == [LeaseStop(id: task.id, lost: true)])
        }
    }
}

/// Lets the first `passing` waits between tokens return at once, then waits until the caller is cancelled.
private final class StallingTimer: TokenTimer {
    let passing: Int
    private let waits = Mutex(0)

    init(passing: Int) { self.passing = passing }

    func sleep(until deadline: ContinuousClock.Instant) async throws {
        let wait = waits.withLock { count in
            count += 1
            return count
        }
        if wait <= passing { return }
        try await Task.sleep(for: .seconds(3600))
    }
}
