/// When a demo reply's next token is due, as a value fed instants (so its tests need no clock).
///
/// A token every `delay` from when the last was due, not from when its wait ended, as a model server paces its
/// output: late wake-ups do not push the rest of the reply back (at 1,000 replies × 20 tokens/s on the event-loop
/// executor they cut the rate offered by 6%). A reply that fell a whole token behind goes on from now rather than
/// bursting to catch up.
struct TokenPace<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    let delay: Duration
    private var due: Instant?

    init(delay: Duration) {
        self.delay = delay
    }

    /// The next token's deadline, asked at `now`, once the last one went out.
    mutating func next(at now: Instant) -> Instant {
        let deadline = due.map { Swift.max($0.advanced(by: delay), now) } ?? now.advanced(by: delay)
        due = deadline
        return deadline
    }
}
