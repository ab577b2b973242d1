import Testing

@testable import Worker

/// The hold after an outage, on a clock moved by hand.
struct OutageHoldTests {
    typealias Hold = OutageHold<TestInstant>

    @Test func withoutAnOutageItTrustsAtEveryCheck() {
        var hold = Hold(hold: .seconds(5))
        #expect(hold.next(at: .at(0)) == .trust)
        hold.answered(at: .at(0))
        #expect(hold.next(at: .at(1_000)) == .trust)
    }

    @Test func afterAFailureItOnlyProbesUntilPostgresAnswers() {
        var hold = Hold(hold: .seconds(5))
        hold.failed()
        #expect(hold.next(at: .at(1_000)) == .probe)
        hold.failed()
        #expect(hold.next(at: .at(60_000)) == .probe, "an outage of any length is only probed")
    }

    @Test func onceAnsweredItWaitsTheHoldThenTrusts() {
        var hold = Hold(hold: .seconds(5))
        hold.failed()
        hold.answered(at: .at(10_000))
        #expect(hold.next(at: .at(10_000)) == .wait)
        #expect(hold.next(at: .at(14_999)) == .wait)
        #expect(hold.next(at: .at(15_000)) == .trust)
        hold.answered(at: .at(15_000))
        #expect(hold.next(at: .at(15_001)) == .trust)
    }

    @Test func anotherAnswerDoesNotMoveTheHold() {
        var hold = Hold(hold: .seconds(5))
        hold.failed()
        hold.answered(at: .at(10_000))
        hold.answered(at: .at(12_000))
        #expect(hold.next(at: .at(15_000)) == .trust)
    }

    @Test func aFailureDuringTheHoldStartsItAgain() {
        var hold = Hold(hold: .seconds(5))
        hold.failed()
        hold.answered(at: .at(0))
        hold.failed()
        #expect(hold.next(at: .at(6_000)) == .probe)
        hold.answered(at: .at(6_000))
        #expect(hold.next(at: .at(10_999)) == .wait)
    }
}
