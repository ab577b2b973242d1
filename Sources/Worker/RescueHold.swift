/// When the rescuer may take back expired leases, as a value fed the instants at which its checks happen.
///
/// After an outage of the rescuer's own (Postgres unreachable through a failover or a partition) every lease may
/// have run out with no worker gone: the workers were cut off as the rescuer was. They renew at once when Postgres
/// answers again (the lease keeper retries every second), so the rescuer holds off for `hold` after its first check
/// that Postgres answers, and then takes back only what is still expired: the tasks of workers that really are gone.
struct RescueHold<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    /// What the rescuer does at its next check.
    enum Step: Equatable {
        /// Take back expired leases.
        case rescue
        /// Only ask whether Postgres answers (after a failure).
        case probe
        /// Nothing yet: the workers are renewing.
        case wait
    }

    private enum State: Equatable {
        case serving
        case outage
        case holding(until: Instant)
    }

    let hold: Duration
    private var state = State.serving

    init(hold: Duration) {
        self.hold = hold
    }

    func next(at now: Instant) -> Step {
        switch state {
        case .serving: .rescue
        case .outage: .probe
        case .holding(let until): now < until ? .wait : .rescue
        }
    }

    /// A rescue or a probe failed: Postgres did not answer.
    mutating func failed() {
        state = .outage
    }

    /// A probe was answered at `now`: the hold starts.
    mutating func answered(at now: Instant) {
        if state == .outage { state = .holding(until: now.advanced(by: hold)) }
    }

    /// A rescue went through.
    mutating func rescued() {
        state = .serving
    }
}
