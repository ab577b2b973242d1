import HandoffRuntime
import Testing

@Suite struct ReadinessTests {
    @Test func aListeningProcessIsReadyOnlyWhileBothPostgresAndItsListenerAnswer() {
        let readiness = Readiness(listens: true)
        #expect(readiness.problem == .starting, "not ready before the first check")
        readiness.databaseChecked(answered: true)
        #expect(readiness.problem == .listener, "Postgres answers, but nothing listens yet")
        readiness.listener(listening: true)
        #expect(readiness.problem == nil)
        readiness.databaseChecked(answered: false)
        #expect(readiness.problem == .database)
        readiness.databaseChecked(answered: true)
        readiness.listener(listening: false)
        #expect(readiness.problem == .listener)
        readiness.listener(listening: true)
        #expect(readiness.problem == nil, "recovers")
        readiness.drain()
        #expect(readiness.problem == .draining)
        readiness.databaseChecked(answered: true)
        #expect(readiness.problem == .draining, "draining is for good")
    }

    @Test func aProcessWithoutAListenerNeedsOnlyPostgres() {
        let readiness = Readiness(listens: false)
        readiness.databaseChecked(answered: true)
        #expect(readiness.problem == nil)
    }
}
