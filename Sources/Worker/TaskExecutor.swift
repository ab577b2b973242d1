import HandoffRuntime
import HandoffStore
import HandoffWire
import Logging
import Synchronization

/// Runs one claimed task: the model's deltas become chunk events in the stream writer, and the task ends with
/// exactly one outcome. It succeeds; or fails with an error event the client sees before `[DONE]`; or stops
/// early — cancelled (by its owner, or abandoned), ending with `finish_reason: "cancelled"` and the usage so far,
/// or handed back to the queue at shutdown when its stream has no content yet.
struct TaskExecutor: Sendable {
    let models: ModelRegistry
    let writer: StreamWriter
    let queue: TaskQueue
    /// Where a continued answer's earlier events are read.
    let stream: StreamLog
    /// The tasks handed back at shutdown to be continued by another worker, though they streamed.
    var continuable = TaskQueue.Continuable.none
    let cancellations: TaskCancellations
    let workerID: String
    let logger: Logger
    let metrics = TaskMetrics()

    private enum Ending: Sendable {
        case finished(ReplyEnding)
        case failed(ReplyFailure)
        case stopped(StopReason)
    }

    func run(_ task: ClaimedTask) async {
        cancellations.started(task.id)
        defer { cancellations.finished(task.id) }
        metrics.claimed(task)
        let events = CompletionEvents(task: task)
        guard let model = models.model(named: task.request.model) else {
            let error = OpenAIError.modelNotFound(task.request.model)
            return await end(
                task, .failed, events: [events.error(error)],
                outcome: TaskOutcome(task: task.id, status: .failed, error: error))
        }
        let usage = { (completion: Int) in
            Usage(promptTokens: model.promptTokens(for: task.request), completionTokens: completion)
        }
        if task.cancelRequested {
            return await stop(task, events: events, opening: [], because: .cancelled, usage: usage(0))
        }
        // An answer an earlier run streamed (its worker was lost) goes on in the same stream, after its events.
        let earlier: ContinuedAnswer?
        if task.continuesAnswer {
            // Before anything is written: even the error event below follows the earlier run's events.
            writer.resume(task.id, at: task.streamedHead)
            do {
                earlier = ContinuedAnswer(
                    events: try await earlierEvents(of: task).map(events.frame.rendered),
                    continuedBefore: task.continuations - 1)
            } catch {
                logger.error(
                    "reading the answer to continue failed",
                    metadata: ["task": .task(task.id), "error": "\(String(reflecting: error))"])
                return await end(
                    task, .failed, events: [events.error(.workerLost)],
                    outcome: TaskOutcome(task: task.id, status: .failed, usage: usage(0), error: .workerLost))
            }
        } else {
            earlier = nil
        }
        // The role chunk goes out with the model's first output (or its end), not before it: alone it would take a
        // minibatch of its own and hold the first token back by a flush window. A continued answer has had it.
        let emitted = TokenCount(earlier?.outputEvents ?? 0)
        let output = ReplyOutput { event in
            if emitted.value.add(1, ordering: .relaxed).oldValue == 0, earlier == nil {
                await writer.append(events.role(), event, to: task.id)
            } else {
                await writer.append(event, to: task.id)
            }
        }
        let opening = { emitted.value.load(ordering: .relaxed) == 0 && earlier == nil ? [events.role()] : [] }
        let ending = await withTaskGroup(of: Ending?.self) { group in
            group.addTask {
                await generate(task, model: model, events: events, output: output, continuing: earlier)
            }
            group.addTask { await cancellations.reason(toStop: task.id).map(Ending.stopped) }
            defer { group.cancelAll() }
            while let next = await group.next() {
                if let next { return next }
            }
            return Ending.failed(ReplyFailure.unfinished)
        }
        switch ending {
        case .finished(let ending):
            await end(
                task, .succeeded, events: opening() + ending.closing,
                outcome: TaskOutcome(task: task.id, status: .succeeded, usage: ending.usage))
        case .stopped(let reason):
            await stop(
                task, events: events, opening: opening(), because: reason,
                usage: usage(emitted.value.load(ordering: .relaxed)))
        case .failed(let failure):
            // A request the model refused (a prompt over its context window) is the client's error, not ours.
            logger.log(
                level: failure.error.status >= 500 ? .error : .info, "task failed",
                metadata: ["task": .task(task.id), "error": "\(failure.error.message)"])
            await end(
                task, .failed, events: opening() + [events.error(failure.error)],
                outcome: TaskOutcome(task: task.id, status: .failed, usage: failure.usage, error: failure.error))
        }
    }

    private func generate(
        _ task: ClaimedTask, model: any ChatModel, events: CompletionEvents, output: ReplyOutput,
        continuing: ContinuedAnswer?
    ) async -> Ending {
        do {
            return .finished(try await model.reply(to: task, events: events, output: output, continuing: continuing))
        } catch let failure as ReplyFailure {
            return .failed(failure)
        } catch is CancellationError {
            return .failed(.unfinished)  // stopped: the stop reason, not this, decides the ending
        } catch {
            logger.error("model failed", metadata: ["task": .task(task.id), "error": "\(String(reflecting: error))"])
            return .failed(
                ReplyFailure(error: .server("The model failed while generating this completion."), usage: nil))
        }
    }

    /// The events earlier runs streamed. A task is continued most often just after an outage (its lease ran out in a
    /// failover), when the first statements can still time out: read again a few times, a second apart, before
    /// giving the answer up.
    private func earlierEvents(of task: ClaimedTask) async throws -> [String] {
        for _ in 1..<Self.earlierReads {
            do {
                return try await stream.events(of: task.id)
            } catch {
                logger.warning(
                    "reading the answer to continue failed; reading again",
                    metadata: ["task": .task(task.id), "error": "\(String(reflecting: error))"])
                try await LoopTimer.sleep(for: .seconds(1))
            }
        }
        return try await stream.events(of: task.id)
    }

    private static let earlierReads = 5

    /// `opening`: the role chunk, when the model stopped before its first output and the stream has none yet.
    private func stop(
        _ task: ClaimedTask, events: CompletionEvents, opening: [String], because reason: StopReason, usage: Usage
    ) async {
        switch reason {
        case .cancelled, .abandoned:
            let abandoned = reason == .abandoned
            logger.info(
                abandoned ? "task abandoned" : "task cancelled",
                metadata: ["task": .task(task.id), "completion_tokens": "\(usage.completionTokens)"])
            await end(
                task, abandoned ? .abandoned : .cancelled,
                events: opening + events.end(reason: FinishReason.cancelled.rawValue, usage: usage),
                outcome: TaskOutcome(task: task.id, status: .cancelled, usage: usage))
        case .lost:
            logger.warning("task lost: its lease ran out and another worker has it", metadata: ["task": .task(task.id)])
            await writer.discard(task.id)
            metrics.ended(task, .lost, usage: nil)
        case .shutdown:
            do {
                if try await queue.release(task.id, workerID: workerID, continuable: continuable) {
                    logger.info("task handed back", metadata: ["task": .task(task.id)])
                    await writer.discard(task.id)
                    metrics.ended(task, .handedBack, usage: nil)
                    return
                }
            } catch {
                logger.warning(
                    "hand-back failed", metadata: ["task": .task(task.id), "error": "\(String(reflecting: error))"])
            }
            let error = OpenAIError.workerShutdown
            await end(
                task, .failed, events: opening + [events.error(error)],
                outcome: TaskOutcome(task: task.id, status: .failed, error: error))
        }
    }

    /// Ends the task's stream and records its outcome (both committed on return), and counts it.
    private func end(_ task: ClaimedTask, _ counted: TaskMetrics.Outcome, events: [String], outcome: TaskOutcome) async
    {
        await writer.finish(task.id, events: events, outcome: outcome)
        metrics.ended(task, counted, usage: outcome.usage)
        logger.info("task ended", metadata: ["task": .task(task.id), "outcome": "\(counted.rawValue)"])
    }
}

/// Content tokens emitted so far, read when a task stops early.
final class TokenCount: Sendable {
    let value: Atomic<Int>

    init(_ start: Int = 0) {
        value = Atomic(start)
    }
}
