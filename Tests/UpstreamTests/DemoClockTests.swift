import Testing

@testable import Worker

/// The demo model's shared clock: no sleeper wakes early, a cancelled one wakes at once, and stopping the clock
/// wakes whoever is left.
struct DemoClockTests {
    /// Runs `clock` while `body` runs.
    func running<R: Sendable>(_ clock: DemoClock, _ body: @Sendable () async throws -> R) async throws -> R {
        try await withThrowingTaskGroup(of: R?.self) { group in
            group.addTask {
                await clock.run()
                return nil
            }
            defer { group.cancelAll() }
            return try await body()
        }
    }

    @Test func noSleeperWakesEarly() async throws {
        let clock = DemoClock()
        let delays = (1...60).map { Duration.milliseconds($0 % 20 + 1) }.shuffled()
        let slept = try await running(clock) {
            try await withThrowingTaskGroup(of: (Duration, Duration).self) { group in
                for delay in delays {
                    group.addTask {
                        let start = ContinuousClock.now
                        try await clock.sleep(until: .now + delay)
                        return (delay, ContinuousClock.now - start)
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
        }
        #expect(slept.count == delays.count)
        #expect(slept.allSatisfy { delay, slept in slept >= delay })
    }

    @Test func aCancelledSleeperWakesAtOnceAndTheOthersStillSleepTheirTime() async throws {
        let clock = DemoClock()
        try await running(clock) {
            let long = Task { try await clock.sleep(until: .now + .seconds(60)) }
            let start = ContinuousClock.now
            async let short: Void = clock.sleep(until: .now + .milliseconds(20))
            long.cancel()
            await #expect(throws: CancellationError.self) { try await long.value }
            try await short
            #expect(ContinuousClock.now - start >= .milliseconds(20))
        }
    }

    @Test func stoppingTheClockWakesWhoeverIsLeft() async throws {
        let clock = DemoClock()
        let ticking = Task { await clock.run() }
        let sleeper = Task { try await clock.sleep(until: .now + .seconds(60)) }
        // Registered before the stop, or refused by the stopped clock: either way it ends with CancellationError.
        try await Task.sleep(for: .milliseconds(50))
        ticking.cancel()
        await ticking.value
        await #expect(throws: CancellationError.self) { try await sleeper.value }
        await #expect(throws: CancellationError.self) { try await clock.sleep(until: .now + .milliseconds(1)) }
    }
}
