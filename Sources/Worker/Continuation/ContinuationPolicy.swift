import HandoffWire
import Metrics

/// Whether an answer whose server failed mid-answer is continued on an upstream, or ends as before with its error:
/// a pure decision on what was streamed, how often it was continued and what the model's servers can do.
struct ContinuationPolicy: Sendable {
    /// `HANDOFF_MAX_CONTINUATIONS`: continuations of one answer.
    let maxContinuations: Int

    enum Decision: Equatable {
        case continueAnswer
        case end(Reason)
    }

    /// Why an answer is not continued; the client's error says it.
    enum Reason: Equatable {
        case notSupported
        case nothingToContinue
        case toolCalls
        case choices
        case logprobs
        case reasoning
        case exhausted(Int)

        var explanation: String {
            switch self {
            case .notSupported: "this model's servers do not continue answers"
            case .nothingToContinue: "it had no text to continue"
            case .toolCalls: "it has tool calls"
            case .choices: "it asked for more than one choice"
            case .logprobs: "its logprobs would not continue"
            case .reasoning: "its reasoning cannot be continued"
            case .exhausted(let count): "it was continued \(count) times already"
            }
        }
    }

    /// `modes`: the continuation of each of the model's servers; `choices`: the request's `n`; `continued`: how
    /// often this answer was continued already.
    func decide(_ partial: PartialAnswer, choices: Int, continued: Int, modes: [UpstreamContinuation]) -> Decision {
        guard modes.contains(where: { $0 != .none }) else { return .end(.notSupported) }
        if partial.toolCalls { return .end(.toolCalls) }
        if choices > 1 { return .end(.choices) }
        if partial.logprobs { return .end(.logprobs) }
        if partial.reasoning { return .end(.reasoning) }
        if partial.text.isEmpty { return .end(.nothingToContinue) }
        if continued >= maxContinuations { return .end(.exhausted(continued)) }
        return .continueAnswer
    }
}

/// `handoff_continuations_total`: how the answers a worker continued ended, by model.
enum ContinuationOutcome: String {
    /// Continued, and finished.
    case completed
    /// Continued, and failed all the same.
    case failed
    /// Failed mid-answer, and not continued (`ContinuationPolicy.Reason`).
    case notContinuable = "not_continuable"

    func count(model: String) {
        Counter(label: MetricName.continuations.rawValue, dimensions: [("model", model), ("outcome", rawValue)])
            .increment()
    }
}
