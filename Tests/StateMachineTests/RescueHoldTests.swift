import Testing

@testable import Worker

/// The rescuer's hold after an outage, on a clock moved by hand.
struct RescueHoldTests {
    typealias Hold = RescueHold<TestInstant>

    @Test func aHealthyRescuerRescuesAtEveryCheck() {
        var hold = Hold(hold: .seconds(5))
        #expect(hold.next(at: .at(0)) == .rescue)
        hold.rescued()
        #expect(hold.next(at: .at(1_000)) == .rescue)
    }

    @Test func afterAFailureItOnlyProbesUntilPostgresAnswers() {
        var hold = Hold(hold: .seconds(5))
        hold.failed()
        #expect(hold.next(at: .at(1_000)) == .probe)
        hold.failed()
        #expect(hold.next(at: .at(60_000)) == .probe, "an outage of any length is only probed")
    }

    @Test func onceAnsweredItWaitsTheHoldThenRescues() {
        var hold = Hold(hold: .seconds(5))
        hold.failed()
        hold.answered(at: .at(10_000))
        #expect(hold.next(at: .at(10_000)) == .wait)
        #expect(hold.next(at: .at(14_999)) == .wait)
        #expect(hold.next(at: .at(15_000)) == .rescue)
        hold.rescued()
        #expect(hold.next(at: .at(15_001)) == .rescue)
    }

    @Test func anotherAnswerDoesNotMoveTheHold() {
        var hold = Hold(hold: .seconds(5))
        hold.failed()
        hold.answered(at: .at(10_000))
        hold.answered(at: .at(12_000))
        #expect(hold.next(at: .at(15_000)) == .rescue)
    }

    @Test func aFailedRescueAfterTheHoldStartsAgain() {
        var hold = Hold(hold: .seconds(5))
        hold.failed()
        hold.answered(at: .at(0))
        hold.failed()
        #expect(hold.next(at: .at(6_000)) == .probe)
        hold.answered(at: .at(6_000))
        #expect(hold.next(at: .at(10_999)) == .wait)
    }
}
