import Testing

@testable import Worker

/// The writer's flush policy, on a clock moved by hand, and over simulated runs of many streams.
struct FlushScheduleTests {
    typealias Schedule = FlushSchedule<TestInstant>

    @Test func theFirstFlushIsImmediate() {
        let schedule = Schedule(window: .milliseconds(10), rowsPerSecond: 10_000)
        #expect(schedule.next(at: .at(0)) == .flush)
    }

    @Test func oneFlushPerWindowThenNoWaitingOnceItPassed() {
        var schedule = Schedule(window: .milliseconds(10), rowsPerSecond: 10_000)
        schedule.flushed(rows: 5, startedAt: .at(100))
        #expect(schedule.next(at: .at(104)) == .gather(until: .at(110)))
        #expect(schedule.next(at: .at(109)) == .gather(until: .at(110)))
        #expect(schedule.next(at: .at(110)) == .flush)
        #expect(schedule.next(at: .at(500)) == .flush)
    }

    @Test func aFlushOverTheBudgetRestsForItsRows() {
        var schedule = Schedule(window: .milliseconds(5), rowsPerSecond: 10_000)
        // 500 rows are 50 ms of budget; a window's worth of it is tolerated.
        schedule.flushed(rows: 500, startedAt: .at(0))
        #expect(schedule.next(at: .at(10)) == .rest(until: .at(45)))
        #expect(schedule.next(at: .at(44)) == .rest(until: .at(45)))
        #expect(schedule.next(at: .at(45)) == .flush)
        // The next flush's rows count from where the budget stood, not from when it ran.
        schedule.flushed(rows: 100, startedAt: .at(45))
        #expect(schedule.next(at: .at(46)) == .rest(until: .at(55)))
    }

    @Test func anUnusedBudgetIsNotBanked() {
        var schedule = Schedule(window: .milliseconds(5), rowsPerSecond: 10_000)
        schedule.flushed(rows: 10, startedAt: .at(0))
        schedule.flushed(rows: 500, startedAt: .at(60_000))
        #expect(schedule.next(at: .at(60_010)) == .rest(until: .at(60_045)))
    }

    /// Past the budget, rows carry more events and the writer keeps to its rows a second.
    @Test func manyStreamsShareTheBudgetByFillingTheirRows() {
        let run = simulate(streams: 200, tokensPerSecond: 20, rowsPerSecond: 2_000)
        // The budget's bound over the 2 s run: its rate, the window it may run ahead, and the last flush (at most a
        // row per stream) whose rows fall due after the run. Without the budget: 4,000 rows a second.
        let bound: Double = 2_000 * (1 + 0.005 / 2) + 200.0 / 2
        #expect(run.rowsPerSecond <= bound)
        #expect(run.eventsPerRow >= 1.9)
    }

    /// Within the budget each token has a row of its own, committed within a window.
    @Test func withinTheBudgetEveryTokenIsFlushedWithinAWindow() {
        let run = simulate(streams: 200, tokensPerSecond: 5, rowsPerSecond: 4_000)
        #expect(run.eventsPerRow == 1)
        #expect(run.medianWait <= .milliseconds(5))
    }

    /// The rest fed back from flush durations made 10 tokens/s wait longer than 5 and 20 (issue 24); the budget's
    /// wait grows with the load instead.
    @Test func tenTokensASecondWaitNoLongerThanFiveOrTwenty() {
        let waits = [5, 10, 20].map { simulate(streams: 200, tokensPerSecond: $0, rowsPerSecond: 4_000).medianWait }
        #expect(waits[1] <= max(waits[0], waits[2]))
    }

    struct Run {
        var rowsPerSecond: Double
        var eventsPerRow: Double
        var medianWait: Duration
    }

    /// `streams` streams, spread evenly in time, each producing `tokensPerSecond` events, written for 2 s by a writer
    /// under the schedule (5 ms window) whose flushes take 1 ms plus 20 µs a row.
    func simulate(streams: Int, tokensPerSecond: Int, rowsPerSecond: Int) -> Run {
        let period = Duration.seconds(1) / tokensPerSecond
        let end = TestInstant.at(2_000)
        var schedule = Schedule(window: .milliseconds(5), rowsPerSecond: rowsPerSecond)
        var next = (0..<streams).map { TestInstant(offset: period * $0 / streams) }
        var pending = [[TestInstant]](repeating: [], count: streams)
        var (now, rows, events) = (TestInstant.at(0), 0, 0)
        var waits: [Duration] = []
        func produce(until instant: TestInstant) {
            for stream in 0..<streams {
                while next[stream] <= instant {
                    pending[stream].append(next[stream])
                    next[stream] = next[stream].advanced(by: period)
                }
            }
        }
        while now < end {
            produce(until: now)
            guard pending.contains(where: { !$0.isEmpty }) else {
                now = next.min()!
                continue
            }
            switch schedule.next(at: now) {
            case .rest(let until), .gather(let until):
                now = until
            case .flush:
                let flushed = pending.filter { !$0.isEmpty }
                waits += flushed.joined().map { $0.duration(to: now) }
                rows += flushed.count
                events += flushed.reduce(0) { $0 + $1.count }
                pending = pending.map { _ in [] }
                schedule.flushed(rows: flushed.count, startedAt: now)
                now = now.advanced(by: .milliseconds(1) + .microseconds(20) * flushed.count)
            }
        }
        return Run(
            rowsPerSecond: Double(rows) / 2, eventsPerRow: Double(events) / Double(rows),
            medianWait: waits.sorted()[waits.count / 2])
    }
}
