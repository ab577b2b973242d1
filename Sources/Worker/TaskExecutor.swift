import Logging
import Shared

/// Runs one claimed task: the model's deltas become chunk events in the stream writer, and the task ends with
/// exactly one outcome — succeeded, or failed with an error event the client sees before `[DONE]`.
struct TaskExecutor: Sendable {
    let models: ModelRegistry
    let writer: StreamWriter
    let logger: Logger

    func run(_ task: ClaimedTask) async {
        let events = CompletionEvents(task: task)
        guard let model = models.model(named: task.request.model) else {
            let error = OpenAIError.modelNotFound(task.request.model)
            await writer.finish(task.id, events: [events.error(error)], outcome: TaskOutcome(task: task.id, status: .failed, error: error))
            return
        }
        await writer.append(events.role(), to: task.id)
        do {
            for try await delta in model.reply(to: task.request) {
                switch delta {
                case .content(let text):
                    await writer.append(events.content(text), to: task.id)
                case .finished(let reason, let usage):
                    await writer.finish(
                        task.id, events: events.end(reason: reason.rawValue, usage: usage),
                        outcome: TaskOutcome(task: task.id, status: .succeeded, usage: usage))
                    return
                }
            }
            throw ModelError.endedWithoutFinish
        } catch {
            logger.error("task failed", metadata: ["task": "\(task.id)", "error": "\(String(reflecting: error))"])
            let failure = OpenAIError.server("The model failed while generating this completion.")
            await writer.finish(task.id, events: [events.error(failure)], outcome: TaskOutcome(task: task.id, status: .failed, error: failure))
        }
    }
}

enum ModelError: Error {
    case endedWithoutFinish
}
