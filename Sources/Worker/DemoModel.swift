import HandoffWire

/// The built-in `demo` model: no network, no weights, the same reply for the same prompt on every machine.
///
/// It tells a short bedtime story whose sentences are picked by a PRNG seeded with a stable hash of the
/// conversation. Tokens are words (each after the first carries its leading space, as GPT tokens do); the
/// prompt's token count is its word count. Without a token limit the story is three sentences and ends with
/// `stop` (or `length`, at the task's cap from admission, should that come first); with one it runs to exactly that
/// many tokens and ends with `length`. An answer it continues is the same answer: it generates it again, at once
/// and unsent, up to the text already streamed, and goes on from there; its usage counts the whole answer.
struct DemoModel: ChatModel {
    static let naturalSentences = 3

    let tokenDelay: Duration
    var timer: any TokenTimer = LoopSleepTimer()

    func reply(to task: ClaimedTask, events: CompletionEvents, output: ReplyOutput, continuing: ContinuedAnswer?)
        async throws -> ReplyEnding
    {
        let reply = DemoReply(
            request: task.request, cap: task.tokenCap, tokenDelay: tokenDelay, timer: timer,
            streamed: continuing?.partial.text ?? "")
        for try await delta in reply {
            switch delta {
            case .content(let text):
                await output.emit(events.content(text))
            case .finished(let reason, let usage):
                if continuing != nil { ContinuationOutcome.completed.count(model: task.request.model) }
                return ReplyEnding(closing: events.end(reason: reason.rawValue, usage: usage), usage: usage)
            }
        }
        throw ReplyFailure.unfinished
    }

    func deltas(for request: ChatCompletionRequest, cap: Int? = nil) -> DemoReply {
        DemoReply(request: request, cap: cap, tokenDelay: tokenDelay, timer: timer, streamed: "")
    }

    func promptTokens(for request: ChatCompletionRequest) -> Int {
        Self.promptTokens(request)
    }

    static func promptTokens(_ request: ChatCompletionRequest) -> Int {
        request.messages.reduce(0) { $0 + $1.content.split(whereSeparator: \.isWhitespace).count }
    }
}

enum DemoDelta: Sendable, Equatable {
    /// A piece of reply text.
    case content(String)
    /// The reply is over. Always the last element.
    case finished(reason: FinishReason, usage: Usage)
}

/// Pulls one token per `next()`, sleeping `tokenDelay` first: nothing is buffered, and cancellation stops it.
///
/// With `stop` sequences, text that could be the start of one is held back until the next token settles it, so the
/// reply never contains a stop sequence, even one spread over several tokens; it ends before the first, with
/// `stop`. Usage counts every token generated, held back or not.
struct DemoReply: AsyncSequence, Sendable {
    let request: ChatCompletionRequest
    /// The task's cap from admission: a story without a token limit still stops here.
    let cap: Int?
    let tokenDelay: Duration
    let timer: any TokenTimer
    /// The text an earlier run of the reply streamed: generated again without delay and not sent.
    let streamed: String

    func makeAsyncIterator() -> Iterator {
        Iterator(
            request: request, cap: cap, tokenDelay: tokenDelay, timer: timer, words: StoryWords(request: request),
            pace: TokenPace(delay: tokenDelay), skip: streamed.utf8.count)
    }

    struct Iterator: AsyncIteratorProtocol {
        let request: ChatCompletionRequest
        let cap: Int?
        let tokenDelay: Duration
        let timer: any TokenTimer
        var words: StoryWords
        var pace: TokenPace<ContinuousClock.Instant>
        /// Bytes of text still to generate unsent.
        var skip: Int
        var generated = 0
        var held = ""
        var ending: [DemoDelta] = []
        var done = false

        mutating func next() async throws -> DemoDelta? {
            while !done {
                if !ending.isEmpty { return ending.removeFirst() }
                if tokenDelay > .zero, skip == 0 {
                    try await timer.sleep(until: pace.next(at: .now))
                } else {
                    try Task.checkCancellation()
                }
                let capped = cap.map { generated >= $0 } ?? false
                guard !capped, let token = words.next(limit: request.tokenLimit) else {
                    let reason: FinishReason = capped || request.tokenLimit == generated ? .length : .stop
                    end(releasing: held, reason: reason)
                    continue
                }
                generated += 1
                let stops = request.stop?.sequences ?? []
                let text = held + token
                if let cut = stops.compactMap({ text.range(of: $0)?.lowerBound }).min() {
                    end(releasing: String(text[..<cut]), reason: .stop)
                    continue
                }
                // Hold back the longest tail that a stop sequence could still grow from.
                let tail =
                    stops.flatMap { stop in (1..<stop.count).map { String(stop.prefix($0)) } }
                    .filter { text.hasSuffix($0) }.map(\.count).max() ?? 0
                held = String(text.suffix(tail))
                let release = unsent(String(text.dropLast(tail)))
                if !release.isEmpty { return .content(release) }
            }
            return ending.isEmpty ? nil : ending.removeFirst()
        }

        /// What of `text` was not streamed by an earlier run.
        private mutating func unsent(_ text: String) -> String {
            guard skip > 0 else { return text }
            let skipped = Swift.min(skip, text.utf8.count)
            skip -= skipped
            return String(decoding: text.utf8.dropFirst(skipped), as: UTF8.self)
        }

        private mutating func end(releasing text: String, reason: FinishReason) {
            let text = unsent(text)
            if !text.isEmpty { ending.append(.content(text)) }
            ending.append(
                .finished(
                    reason: reason,
                    usage: Usage(promptTokens: DemoModel.promptTokens(request), completionTokens: generated)))
            done = true
        }
    }
}

/// The story's tokens, in order.
struct StoryWords {
    private static let openers = [
        "Once upon a time,", "Every night,", "Far beyond the silver hills,", "In a quiet meadow,",
        "Under a sky full of stars,", "One misty morning,",
    ]
    private static let subjects = [
        "a gentle unicorn named Luna", "a tiny unicorn with a golden mane", "the oldest unicorn in the valley",
        "a curious young unicorn", "a sleepy unicorn called Pip",
    ]
    private static let actions = [
        "followed a trail of glowing flowers", "counted the stars until they began to sing",
        "shared her rainbow with a lonely cloud", "found a lantern that never went out",
        "learned that kindness makes the brightest light",
    ]
    private static let endings = [
        "and everyone slept soundly.", "and the whole forest smiled.", "until the moon whispered goodnight.",
        "and dreamed of tomorrow's adventures.", "and the night felt warm and safe.",
    ]

    private var random: SplitMix64
    private var pending: [Substring] = []
    private var sentences = 0
    private var produced = 0

    init(request: ChatCompletionRequest) {
        let conversation = request.messages.map { "\($0.role):\($0.content)" }.joined(separator: "\n")
        self.random = SplitMix64(seed: FNV1a.hash(conversation))
    }

    mutating func next(limit: Int?) -> String? {
        if let limit, produced >= limit { return nil }
        if pending.isEmpty {
            // Without a limit the story ends after its natural length; with one it goes on until the limit.
            guard limit != nil || sentences < DemoModel.naturalSentences else { return nil }
            pending = sentence().split(separator: " ").reversed()
            sentences += 1
        }
        let word = pending.removeLast()
        produced += 1
        return produced == 1 ? String(word) : " " + word
    }

    private mutating func sentence() -> String {
        [Self.openers, Self.subjects, Self.actions, Self.endings]
            .map { $0[Int(random.next() % UInt64($0.count))] }
            .joined(separator: " ")
    }
}

/// Hashes that are the same in every process (Swift's `Hasher` is seeded per process).
enum FNV1a {
    static func hash(_ text: String) -> UInt64 {
        text.utf8.reduce(0xcbf2_9ce4_8422_2325) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
    }
}

struct SplitMix64 {
    private var state: UInt64

    init(seed: UInt64) {
        self.state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
