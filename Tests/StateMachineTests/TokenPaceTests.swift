import Testing

@testable import Worker

/// The demo model's pace, on a clock moved by hand.
struct TokenPaceTests {
    typealias Pace = TokenPace<TestInstant>

    /// Tokens come a delay apart from when the last was due, not from when its wait ended: wake-ups a little late
    /// do not slow the reply.
    @Test func lateWakeUpsDoNotSlowTheReply() {
        var pace = Pace(delay: .milliseconds(10))
        #expect(pace.next(at: .at(0)) == .at(10))
        #expect(pace.next(at: .at(13)) == .at(20), "3 ms late is caught up")
        #expect(pace.next(at: .at(23)) == .at(30))
    }

    /// A reply a whole token behind goes on from now, and keeps its pace from there: no burst to catch up.
    @Test func aReplyFarBehindDoesNotBurst() {
        var pace = Pace(delay: .milliseconds(10))
        _ = pace.next(at: .at(0))
        #expect(pace.next(at: .at(45)) == .at(45))
        #expect(pace.next(at: .at(46)) == .at(55))
    }
}
