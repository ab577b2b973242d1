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
            if let members = try? JSONText.members(choice) { append(Self(choice: members)) }
        }
    }

    /// What one choice of a chunk adds to the answer.
    init(choice: [(key: String, value: Substring)]) {
        self.init()
        if let logprobs = choice.first(where: { $0.key == "logprobs" }) {
            self.logprobs = !JSONText.isEmpty(logprobs.value)
        }
        guard let delta = choice.first(where: { $0.key == "delta" }), let fields = try? JSONText.members(delta.value)
        else { return }
        for (key, value) in fields where !JSONText.isEmpty(value) && value != "[]" {
            switch key {
            case "content": text = JSONText.string(value) ?? ""
            case "tool_calls", "function_call": toolCalls = true
            case "reasoning_content", "reasoning": reasoning = true
            default: break
            }
        }
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
