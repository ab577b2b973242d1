import Foundation
import HandoffWire
import Testing

@testable import Worker

/// A continuing server that repeats the prefill: the repeat is dropped however it is split, and text that only
/// looked like it is sent after all.
struct PrefillEchoTests {
    func relay(prefill: String?) -> UpstreamRelay {
        UpstreamRelay(
            events: UpstreamRelayTests().events(includeUsage: false), promptEstimate: 1, secrets: [], prefill: prefill)
    }

    func content(_ text: String) -> String {
        #"{"choices":[{"index":0,"delta":{"content":"\#(text)"}}]}"#
    }

    /// The client's text from what the relay sends.
    func text(_ chunks: [String]) throws -> String {
        let frame = UpstreamRelayTests().events(includeUsage: false).frame
        return try chunks.map {
            try JSONDecoder().decode(ChatCompletionChunk.self, from: Data(frame.rendered($0).utf8))
        }
        .compactMap { $0.choices.first?.delta.content }.joined()
    }

    @Test func llamaCppsWholeEchoInItsFirstDeltaIsDropped() throws {
        var relay = relay(prefill: "Once upon a tïme")
        var sent = try relay.accept(content("Once upon a tïme, a"))
        let first = relay.piece.text
        sent += try relay.accept(content(" unicorn"))
        #expect(try text(sent) == ", a unicorn")
        #expect(first == ", a", "the answer so far grows by the new text only")
        #expect(relay.relayed == 2)
    }

    @Test func anEchoSplitOverDeltasIsDropped() throws {
        var relay = relay(prefill: "Once upon")
        var sent: [String] = []
        for piece in ["Once", " up", "on", " a", " time"] { sent += try relay.accept(content(piece)) }
        #expect(try text(sent) == " a time")
    }

    @Test func textThatOnlyLookedLikeTheEchoIsSent() throws {
        var relay = relay(prefill: "Once upon")
        var sent = try relay.accept(content("Once"))
        #expect(sent.isEmpty && relay.relayed == 0, "held while it could be the echo")
        sent += try relay.accept(content(" more"))
        #expect(try text(sent) == "Once more")
        #expect(relay.piece.text == "Once more")
        sent += try relay.accept(content("Once"))
        #expect(try text(sent) == "Once moreOnce", "settled: compared no more")
    }

    @Test func aServerThatSendsOnlyTheNewTextLosesNothing() throws {
        var relay = relay(prefill: "Once upon")
        let sent = try relay.accept(content(" a time"))
        #expect(try text(sent) == " a time")
    }

    @Test func heldTextIsSentBeforeTheStreamEnds() throws {
        var relay = relay(prefill: "Once upon")
        var sent = try relay.accept(content("On"))
        sent += try relay.accept(#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#)
        #expect(try text(sent) == "On")
        #expect(try relay.ending().closing.count == 1)
    }
}
