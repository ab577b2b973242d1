import HandoffWire

/// What an answer has streamed so far, as far as continuing it goes: its text, what its attempts used, and whether
/// anything went out that a continuation could not carry on.
struct PartialAnswer: Sendable, Equatable {
    var text = ""
    /// `tool_calls` deltas: a continuation would turn a half-written call into prose.
    var toolCalls = false
    /// `logprobs`: the continuation's numbers would not follow on from the first attempt's.
    var logprobs = false
    /// `reasoning_content`: llama.cpp refuses a prefill with thinking on.
    var reasoning = false

    /// Adds what a later stretch of the same answer streamed.
    mutating func append(_ later: PartialAnswer) {
        text += later.text
        toolCalls = toolCalls || later.toolCalls
        logprobs = logprobs || later.logprobs
        reasoning = reasoning || later.reasoning
    }
}

extension PartialAnswer {
    /// What one chunk adds to the answer (an error event or a usage chunk adds nothing).
    init(chunk: String) {
        self.init()
        guard let members = try? JSONText.members(chunk[...]),
            let choices = members.first(where: { $0.key == "choices" }).flatMap({ try? JSONText.elements($0.value) })
        else { return }
        for choice in choices {
            if let members = try? JSONText.members(choice) { append(Self.read(choice: members).piece) }
        }
    }

    /// What one choice of a chunk adds to the answer, and whether it says anything beyond the role (content, tool
    /// calls, reasoning, a refusal, logprobs...): one pass over its delta, which the relay makes for every chunk.
    static func read(choice: [(key: String, value: Substring)]) -> (piece: PartialAnswer, carriesOutput: Bool) {
        var piece = PartialAnswer()
        if let logprobs = choice.first(where: { $0.key == "logprobs" }) {
            piece.logprobs = !JSONText.isEmpty(logprobs.value)
        }
        guard let delta = choice.first(where: { $0.key == "delta" }), let fields = try? JSONText.members(delta.value)
        else { return (piece, piece.logprobs) }
        var carriesOutput = piece.logprobs
        for (key, value) in fields where !JSONText.isEmpty(value) && value != "[]" {
            carriesOutput = carriesOutput || key != "role"
            switch key {
            case "content": piece.text = JSONText.string(value) ?? ""
            case "tool_calls", "function_call": piece.toolCalls = true
            case "reasoning_content", "reasoning": piece.reasoning = true
            default: break
            }
        }
        return (piece, carriesOutput)
    }
}

/// An answer an earlier run of the task streamed before its worker was lost: the run that claims the task next
/// continues it, in the same stream.
struct ContinuedAnswer: Sendable, Equatable {
    var partial: PartialAnswer
    /// The chunks with output the earlier runs streamed: their completion tokens, as far as anyone counted them.
    var outputEvents: Int
    /// Continuations of this answer before this one.
    var continuedBefore: Int

    /// From the stream's stored events (the role chunk first).
    init(events: [String], continuedBefore: Int) {
        var partial = PartialAnswer()
        for event in events { partial.append(PartialAnswer(chunk: event)) }
        self.partial = partial
        self.outputEvents = max(0, events.count - 1)
        self.continuedBefore = continuedBefore
    }
}
