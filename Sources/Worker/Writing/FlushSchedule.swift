/// When the stream writer flushes: the writer's flush and rest policy as a value, fed the instants at which things
/// happen (so its tests need no clock), with the writer's loop as the thin I/O around it.
///
/// At most one flush per window, but no waiting once a window has passed: an idle worker's first token commits at
/// once, a busy worker's tokens share one commit per window (sooner when too much is pending: the writer's urgent
/// ring ends the gathering). Under load the writer rests after each flush that outlasted the window, `restPerFlush`
/// times as long as it overran (at most `longestRest`), so it keeps Postgres busy a bounded share of the time: the
/// busier Postgres, the more events each row and each NOTIFY carries, instead of more rows a second than Postgres
/// can write. Nothing cuts a rest short. A flush within the window costs no rest: at low load small, frequent
/// flushes keep each commit's burst of writes (replicas, Caddy, clients) small.
struct FlushSchedule<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    /// What the writer does next, once it has work.
    enum Step: Equatable {
        /// Sleep until then: the rest after an overrun flush.
        case rest(until: Instant)
        /// Gather events until then, or until the urgent ring; then flush.
        case gather(until: Instant)
        /// Flush now.
        case flush
    }

    let window: Duration
    var restPerFlush = 2
    var longestRest = Duration.milliseconds(250)
    private var lastFlush: Instant?
    private var restedAt: Instant?

    init(window: Duration) {
        self.window = window
    }

    func next(at now: Instant) -> Step {
        if let restedAt, now < restedAt { return .rest(until: restedAt) }
        if let lastFlush, now < lastFlush.advanced(by: window) { return .gather(until: lastFlush.advanced(by: window)) }
        return .flush
    }

    /// Records a flush (successful or not) that ran from `start` to `end`.
    mutating func flushed(from start: Instant, to end: Instant) {
        lastFlush = start
        let overran = max(.zero, start.duration(to: end) - window)
        restedAt = end.advanced(by: min(overran * restPerFlush, longestRest))
    }
}
