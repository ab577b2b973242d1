import HandoffRuntime
import Testing

/// The event-loop timer every process sleeps on: never early, and cancellable like `Task.sleep`.
struct LoopTimerTests {
    @Test func aSleepLastsAtLeastItsDuration() async throws {
        let clock = ContinuousClock()
        let start = clock.now
        try await LoopTimer.sleep(for: .milliseconds(30))
        let slept = clock.now - start
        #expect(slept >= .milliseconds(30))
        try await LoopTimer.sleep(until: clock.now + .milliseconds(20))
        let untilSlept = clock.now - start
        #expect(untilSlept >= .milliseconds(50))
    }

    /// A cancelled sleeper throws `CancellationError` as `Task.sleep` does, long before its timer would fire.
    @Test func cancellingASleeperThrowsCancellationError() async throws {
        let clock = ContinuousClock()
        let start = clock.now
        let sleeper = Task { try await LoopTimer.sleep(for: .seconds(600)) }
        sleeper.cancel()
        await #expect(throws: CancellationError.self) { try await sleeper.value }
        let waited = clock.now - start
        #expect(waited < .seconds(60))
        let alreadyCancelled = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            try await LoopTimer.sleep(for: .seconds(600))
        }
        await #expect(throws: CancellationError.self) { try await alreadyCancelled.value }
    }

    /// The doorbell's poll fallback: an unrung bell still returns after its timeout, a rung one at once.
    @Test func aDoorbellWaitEndsAtItsTimeoutOrItsRing() async throws {
        let clock = ContinuousClock()
        let bell = Doorbell()
        var start = clock.now
        await bell.wait(timeout: .milliseconds(30))
        let timedOut = clock.now - start
        #expect(timedOut >= .milliseconds(30))
        bell.ring()
        start = clock.now
        await bell.wait(timeout: .seconds(600))
        let rung = clock.now - start
        #expect(rung < .seconds(60))
    }
}
