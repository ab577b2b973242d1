import Foundation
import HandoffStore
import HandoffWire
import Logging
import Testing

@testable import Worker

struct DemoModelTests {
    func collect(_ request: ChatCompletionRequest, cap: Int? = nil) async throws -> (
        text: String, tokens: Int, finish: DemoDelta?
    ) {
        var text = ""
        var tokens = 0
        var finish: DemoDelta?
        for try await delta in DemoModel(tokenDelay: .zero).deltas(for: request, cap: cap) {
            switch delta {
            case .content(let piece):
                text += piece
                tokens += 1
            case .finished:
                finish = delta
            }
        }
        return (text, tokens, finish)
    }

    let seed = ChatCompletionRequest(
        model: "demo",
        messages: [ChatMessage(role: "user", content: "Tell me a three sentence bedtime story about a unicorn.")])

    @Test func replyIsDeterministicAndDependsOnThePrompt() async throws {
        let first = try await collect(seed)
        #expect(try await collect(seed).text == first.text)
        var other = seed
        other.messages[0].content = "Another prompt"
        #expect(try await collect(other).text != first.text)
        #expect(first.text.filter { $0 == "." }.count == DemoModel.naturalSentences)
    }

    /// A request without `max_tokens` still stops at the cap admission stored with its task (its key's, its model's or
    /// the deployment's): at the cap with `length`, or at its natural end when that comes first.
    @Test func theTasksCapHoldsWhenTheRequestSetsNone() async throws {
        let natural = try await collect(seed)
        let capped = try await collect(seed, cap: 5)
        #expect(capped.tokens == 5 && natural.text.hasPrefix(capped.text))
        #expect(capped.finish == .finished(reason: .length, usage: Usage(promptTokens: 10, completionTokens: 5)))
        #expect(try await collect(seed, cap: natural.tokens + 100).text == natural.text)
        var limited = seed
        limited.maxTokens = 3
        #expect(try await collect(limited, cap: 3).tokens == 3)
    }

    @Test func naturalEndIsStopWithRealCounts() async throws {
        let reply = try await collect(seed)
        #expect(
            reply.finish == .finished(reason: .stop, usage: Usage(promptTokens: 10, completionTokens: reply.tokens)))
        #expect(reply.tokens == reply.text.split(separator: " ").count)
    }

    @Test(arguments: [1, 16, 100])
    func tokenLimitIsExactAndEndsWithLength(limit: Int) async throws {
        var request = seed
        request.maxTokens = limit
        let reply = try await collect(request)
        #expect(reply.tokens == limit)
        #expect(reply.finish == .finished(reason: .length, usage: Usage(promptTokens: 10, completionTokens: limit)))
    }

    /// The reply never contains a stop sequence, even one that spans tokens, and ends with `stop` before it.
    @Test(arguments: [
        ([" upon"], "Once"), (["upon a"], "Once "), (["Once"], ""), (["zzz", " upon"], "Once"),
    ])
    func stopSequencesEndTheReplyBeforeThem(stop: [String], expected: String) async throws {
        var request = seed
        request.stop = StopSequences(stop)
        let reply = try await collect(request)
        #expect(reply.text == expected)
        guard case .finished(let reason, let usage) = reply.finish else {
            Issue.record("no finish")
            return
        }
        #expect(reason == .stop)
        #expect(usage.completionTokens >= 1)
    }

    @Test func aStopSequenceThatNeverComesChangesNothing() async throws {
        var request = seed
        request.stop = StopSequences(["zzz", "unicorn!"])
        #expect(try await collect(request).text == (try await collect(seed).text))
    }

    @Test func cancellationStopsTheReply() async throws {
        let task = Task {
            var tokens = 0
            for try await _ in DemoModel(tokenDelay: .milliseconds(50)).deltas(for: seed) { tokens += 1 }
            return tokens
        }
        try await Task.sleep(for: .milliseconds(120))
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
    }
}

/// The executor and the group-committing writer against a real database.
struct ExecutionTests {
    @Test func tasksStreamTheOpenAIChunkSequenceInFewBatches() async throws {
        try await TestDatabase.with { database in
            let ids = try await database.enqueue(20, prompt: "story")
            let claimed = try await database.claimAll(worker: "w1")
            #expect(claimed.count == 20)
            let log = StreamLog(client: database.client, logger: database.logger)
            let writer = StreamWriter(
                configuration: .init(
                    window: .milliseconds(10), rowsPerSecond: 20_000, maxPendingEvents: 256, workerID: "w1"), log: log,
                logger: database.logger)
            let executor = database.executor(writer: writer, worker: "w1", tokenDelay: .milliseconds(1))
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await writer.run() }
                try await withThrowingTaskGroup(of: Void.self) { tasks in
                    for task in claimed { tasks.addTask { await executor.run(task) } }
                    try await tasks.waitForAll()
                }
                group.cancelAll()
            }

            let queue = TaskQueue(client: database.client, logger: database.logger)
            for task in claimed {
                #expect(try await queue.status(of: task.id) == .succeeded)
                let batches = try await log.read(task: task.id, after: .start)
                let events = batches.flatMap(\.events)
                #expect(batches.last?.final == true)
                #expect(batches.dropLast().allSatisfy { !$0.final })
                #expect(batches.count < events.count / 3, "tokens are batched, not committed one by one")
                let chunks = try await database.renderedEvents(of: task.id).map {
                    try JSONDecoder().decode(ChatCompletionChunk.self, from: Data($0.utf8))
                }
                // Rendering puts the task's identity back (`ChunkFrame`); the rows hold only what differs.
                #expect(events.allSatisfy { !$0.hasPrefix(#"{"id""#) }, "stored without the chunk identity")
                #expect(chunks.first?.choices.first?.delta.role == "assistant")
                #expect(chunks.last?.choices.first?.finishReason == "stop")
                let text = chunks.compactMap { $0.choices.first?.delta.content }.joined()
                #expect(text == (try await DemoModelTests().collect(task.request).text))
            }
            #expect(Set(claimed.map(\.id)) == Set(ids))
        }
    }

    @Test func includeUsageAddsAUsageChunkAndNullUsageEverywhereElse() async throws {
        try await TestDatabase.with { database in
            let queue = TaskQueue(client: database.client, logger: database.logger)
            let id = UUID()
            try await queue.enqueue(
                id: id,
                request: ChatCompletionRequest(
                    model: "demo", messages: [ChatMessage(role: "user", content: "one two three")], maxTokens: 5,
                    stream: true, streamOptions: StreamOptions(includeUsage: true)))
            let task = try #require(try await database.claimAll(worker: "w").first)
            let writer = database.writer(worker: "w")
            let executor = database.executor(writer: writer, worker: "w")
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await writer.run() }
                await executor.run(task)
                group.cancelAll()
                try await group.waitForAll()
            }
            let chunks = try await database.renderedEvents(of: id)
                .map { try JSONDecoder().decode(ChatCompletionChunk.self, from: Data($0.utf8)) }
            #expect(chunks.count == 8, "role, 5 tokens, finish, usage")
            #expect(chunks.dropLast().allSatisfy { $0.usage == .null })
            #expect(chunks[6].choices.first?.finishReason == "length")
            #expect(chunks.last?.choices == [])
            #expect(chunks.last?.usage == .value(Usage(promptTokens: 3, completionTokens: 5)))
        }
    }

    @Test func aModelWithoutBackendFailsTheTaskVisibly() async throws {
        try await TestDatabase.with { database in
            _ = try await database.enqueue(1)
            let task = try #require(try await database.claimAll(worker: "w").first)
            let writer = database.writer(worker: "w")
            let executor = database.executor(writer: writer, worker: "w", models: ModelRegistry([:]))
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await writer.run() }
                await executor.run(task)
                group.cancelAll()
                try await group.waitForAll()
            }
            let batches = try await StreamLog(client: database.client, logger: database.logger).read(
                task: task.id, after: .start)
            #expect(batches.count == 1 && batches[0].final)
            let error = try JSONDecoder().decode(OpenAIError.self, from: Data(batches[0].events[0].utf8))
            #expect(error.code == "model_not_found")
            #expect(
                try await TaskQueue(client: database.client, logger: database.logger).status(of: task.id) == .failed)
        }
    }
}

extension TestDatabase {
    func executor(
        writer: StreamWriter, worker: String, tokenDelay: Duration = .zero, models: ModelRegistry? = nil,
        cancellations: TaskCancellations = TaskCancellations(), continuable: TaskQueue.Continuable = .none
    ) -> TaskExecutor {
        TaskExecutor(
            models: models ?? ModelRegistry(["demo": DemoModel(tokenDelay: tokenDelay)]), writer: writer,
            queue: TaskQueue(client: client, logger: logger), stream: StreamLog(client: client, logger: logger),
            continuable: continuable, cancellations: cancellations, workerID: worker, logger: logger)
    }

    func writer(worker: String) -> StreamWriter {
        StreamWriter(
            configuration: .init(
                window: .milliseconds(5), rowsPerSecond: 20_000, maxPendingEvents: 64, workerID: worker),
            log: StreamLog(client: client, logger: logger), logger: logger)
    }
}
