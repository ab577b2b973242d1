import HandoffRuntime
import HandoffWire
import Metrics

/// What the worker's tasks add to the metrics: how long each waited in the queue, how it ended, and the tokens
/// its usage names. Labels are outcomes and the catalogue's model names only.
struct TaskMetrics: Sendable {
    enum Outcome: String {
        case succeeded, failed, cancelled, abandoned, lost
        case handedBack = "handed_back"
    }

    private let queueWait = Timer(label: MetricName.queueWait.rawValue)

    func claimed(_ task: ClaimedTask) {
        queueWait.record(duration: task.queuedFor)
    }

    func ended(_ task: ClaimedTask, _ outcome: Outcome, usage: Usage?) {
        Counter(label: MetricName.tasks.rawValue, dimensions: [("outcome", outcome.rawValue)]).increment()
        guard let usage else { return }
        let model = task.request.model
        Counter(label: MetricName.tokens.rawValue, dimensions: [("model", model), ("kind", "prompt")]).increment(
            by: usage.promptTokens)
        Counter(label: MetricName.tokens.rawValue, dimensions: [("model", model), ("kind", "completion")])
            .increment(by: usage.completionTokens)
    }
}
