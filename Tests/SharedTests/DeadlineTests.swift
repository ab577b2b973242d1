import HandoffRuntime
import Synchronization
import Testing

struct DeadlineTests {
    @Test func anOperationThatFinishesInTimeReturnsItsValue() async throws {
        #expect(try await withDeadline(.seconds(5)) { 42 } == 42)
    }

    /// What PostgresNIO does with a query on a connection the server closed: it never completes and ignores
    /// cancellation. The deadline must return anyway.
    @Test func theDeadlineDoesNotWaitForAnOperationThatIgnoresCancellation() async throws {
        let stuck = Mutex<CheckedContinuation<Void, Never>?>(nil)
        let clock = ContinuousClock()
        let start = clock.now
        await #expect(throws: DeadlineExceeded.self) {
            try await withDeadline(.milliseconds(100)) {
                await withCheckedContinuation { continuation in stuck.withLock { $0 = continuation } }
            }
        }
        // Waiting for the operation would never return; the bound is about the deadline's 100 ms, with room for a
        // loaded machine.
        #expect(clock.now - start < .seconds(10))
        stuck.withLock { $0 }?.resume()  // let the abandoned operation end
    }
}
