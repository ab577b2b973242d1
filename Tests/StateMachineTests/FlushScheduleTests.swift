import Testing

@testable import Worker

/// The writer's flush and rest policy, on a clock moved by hand.
struct FlushScheduleTests {
    typealias Schedule = FlushSchedule<TestInstant>

    @Test func theFirstFlushIsImmediate() {
        let schedule = Schedule(window: .milliseconds(10))
        #expect(schedule.next(at: .at(0)) == .flush)
    }

    @Test func oneFlushPerWindowThenNoWaitingOnceItPassed() {
        var schedule = Schedule(window: .milliseconds(10))
        schedule.flushed(from: .at(100), to: .at(103))
        #expect(schedule.next(at: .at(104)) == .gather(until: .at(110)))
        #expect(schedule.next(at: .at(109)) == .gather(until: .at(110)))
        #expect(schedule.next(at: .at(110)) == .flush)
        #expect(schedule.next(at: .at(500)) == .flush)
    }

    @Test func aFlushWithinTheWindowCostsNoRest() {
        var schedule = Schedule(window: .milliseconds(10))
        schedule.flushed(from: .at(0), to: .at(10))
        #expect(schedule.next(at: .at(10)) == .flush)
    }

    @Test func anOverrunFlushRestsTwiceItsOverrun() {
        var schedule = Schedule(window: .milliseconds(10))
        // 25 ms: 15 over the window, so 30 ms of rest after it ends.
        schedule.flushed(from: .at(0), to: .at(25))
        #expect(schedule.next(at: .at(25)) == .rest(until: .at(55)))
        #expect(schedule.next(at: .at(54)) == .rest(until: .at(55)))
        #expect(schedule.next(at: .at(55)) == .flush)
    }

    @Test func theRestIsBounded() {
        var schedule = Schedule(window: .milliseconds(10))
        schedule.flushed(from: .at(0), to: .at(2_000))
        #expect(schedule.next(at: .at(2_000)) == .rest(until: .at(2_250)))
    }

    @Test func eachFlushReplacesTheLastRest() {
        var schedule = Schedule(window: .milliseconds(10))
        schedule.flushed(from: .at(0), to: .at(100))
        schedule.flushed(from: .at(300), to: .at(305))
        #expect(schedule.next(at: .at(306)) == .gather(until: .at(310)))
    }
}
