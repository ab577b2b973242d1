/// When the stream writer flushes: the writer's flush policy as a value, fed the instants at which things happen
/// and the rows each flush wrote (so its tests need no clock), with the writer's loop as the thin I/O around it.
///
/// Two limits, and no waiting beyond them: an idle worker's first token commits at once.
/// - **A window**: at most one flush per `window`. A busy worker's tokens share one commit per window (sooner when
///   too much is pending: the writer's urgent ring ends the gathering), so each commit's burst of writes
///   (replicas, Caddy, clients) stays small.
/// - **A rows budget**: at most `rowsPerSecond` stream rows a second, on average over a window. Each row costs
///   Postgres about the same (a heap tuple, an index entry, their WAL) whatever it carries, so when the streams
///   would need more rows than that, the writer flushes less often and each row carries more of its stream's
///   events: Postgres's load stays bounded however many streams run. Nothing cuts the rest it owes short.
///
/// The budget is a virtual clock (GCRA): each row moves `budgetTime` on by 1 / `rowsPerSecond`, and a flush may start
/// once that time is at most a window ahead of now. It replaces a rest fed back from flush durations, which rested
/// after every flush that overran the window: at 10 tokens/s a stream's row then often waited out a rest of its
/// predecessor's making, and the median latency was worse than at 20 tokens/s (issue 24).
struct FlushSchedule<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    /// What the writer does next, once it has work.
    enum Step: Equatable {
        /// Sleep until then: the rows budget is spent.
        case rest(until: Instant)
        /// Gather events until then, or until the urgent ring; then flush.
        case gather(until: Instant)
        /// Flush now.
        case flush
    }

    let window: Duration
    let rowsPerSecond: Int
    private var lastFlush: Instant?
    /// When the rows written so far would have been written at exactly the budget's rate.
    private var budgetTime: Instant?

    init(window: Duration, rowsPerSecond: Int) {
        precondition(rowsPerSecond > 0, "a rows budget is positive")
        self.window = window
        self.rowsPerSecond = rowsPerSecond
    }

    func next(at now: Instant) -> Step {
        // The budget tolerates running a window ahead of its rate.
        if let budgetTime, case let free = budgetTime.advanced(by: .zero - window), now < free {
            return .rest(until: free)
        }
        if let lastFlush, now < lastFlush.advanced(by: window) { return .gather(until: lastFlush.advanced(by: window)) }
        return .flush
    }

    /// Records a flush (successful or not) of `rows` stream rows that started at `start`. How long it took does not
    /// matter: the writer runs one flush at a time, so a slow Postgres already gets fewer, fuller flushes.
    mutating func flushed(rows: Int, startedAt start: Instant) {
        lastFlush = start
        // A budget left unused is not banked beyond the window's tolerance: an idle writer's next burst gets one
        // window's worth of rows at once, not a minute's.
        let from = budgetTime.map { max($0, start) } ?? start
        budgetTime = from.advanced(by: .seconds(Double(rows) / Double(rowsPerSecond)))
    }
}
