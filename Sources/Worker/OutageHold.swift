/// Whether a worker may act on what Postgres's timestamps say about other processes, as a value fed the instants
/// at which its statements succeed or fail.
///
/// After an outage the worker saw (Postgres unreachable through a failover or a partition), the others were most
/// likely cut off as it was: the other workers could not renew their leases, the replicas could not mark their
/// streams watched. The timestamps then say "gone" of processes that are alive. So for `hold` after Postgres first
/// answers again the worker does not trust them: the rescuer takes back no expired lease while the living workers
/// renew theirs (each retries every second), and the lease keeper cancels no stream as abandoned while the replicas
/// mark theirs watched again.
struct OutageHold<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    enum Step: Equatable {
        /// Postgres answers and has for `hold`: act on its timestamps.
        case trust
        /// Postgres did not answer last time: only find out whether it does now.
        case probe
        /// Postgres answers again, but not for `hold` yet.
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
        case .serving: .trust
        case .outage: .probe
        case .holding(let until): now < until ? .wait : .trust
        }
    }

    /// A statement failed: Postgres did not answer.
    mutating func failed() {
        state = .outage
    }

    /// A statement succeeded at `now`: after an outage, the hold starts.
    mutating func answered(at now: Instant) {
        if state == .outage { state = .holding(until: now.advanced(by: hold)) }
    }
}
