import Foundation
import HandoffRuntime
import HandoffStore
import HandoffWire
import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// Group commit of every running task's output.
///
/// Executors hand events to the writer; when its `FlushSchedule` says so, the writer commits the pending events of ALL
/// tasks (`PendingStreams`) as one statement — one batch row per task, the outcomes of the tasks that ended, the
/// NOTIFYs carrying the rows — because NOTIFY serialises commits database-wide and a commit per token would not scale.
/// This class is the I/O around those two values: the locks, the waiting executors, the statement, the metrics.
final class StreamWriter: Service {
    struct Configuration: Sendable {
        var window: Duration
        var rowsPerSecond: Int
        var maxPendingEvents: Int
        var workerID: String
        var drainTimeout: Duration = .seconds(10)
    }

    private struct State {
        var pending: PendingStreams
        /// Executors waiting for their task's last events to be committed.
        var finishWaiters: [UUID: CheckedContinuation<Void, Never>] = [:]
        /// Executors suspended because too much is pending.
        var backpressured: [CheckedContinuation<Void, Never>] = []
    }

    private let configuration: Configuration
    private let log: StreamLog
    private let logger: Logger
    private let state: Mutex<State>
    private let work = Doorbell()
    private let urgent = Doorbell()
    private let flushEvents = Recorder(label: MetricName.flushEvents.rawValue)
    private let flushDuration = Timer(label: MetricName.flushDuration.rawValue)
    private let eventsWritten = Counter(label: MetricName.eventsWritten.rawValue)

    init(configuration: Configuration, log: StreamLog, logger: Logger) {
        self.configuration = configuration
        self.log = log
        self.logger = logger
        self.state = Mutex(State(pending: PendingStreams(limit: 4 * configuration.maxPendingEvents)))
    }

    /// Adds events to `task`'s stream, all in the same minibatch. Suspends while the writer holds more than it may.
    func append(_ events: String..., to task: UUID) async {
        await withCheckedContinuation { continuation in
            // Deciding to wait and registering the waiter happen under one lock, so no flush slips in between.
            let (count, mustWait) = state.withLock { state in
                state.pending.append(events, to: task)
                let mustWait = state.pending.isOverLimit
                if mustWait { state.backpressured.append(continuation) }
                return (state.pending.count, mustWait)
            }
            work.ring()
            if count >= configuration.maxPendingEvents { urgent.ring() }
            if !mustWait { continuation.resume() }
        }
    }

    /// Numbers `task`'s events on from `sequence`, the last an earlier run of it wrote: this run continues its answer.
    func resume(_ task: UUID, at sequence: Int) {
        state.withLock { $0.pending.resume(task, at: sequence) }
    }

    /// Drops what `task` has pending: it was handed back to the queue and belongs to its next run.
    func discard(_ task: UUID) async {
        let waiter = state.withLock { state in
            state.pending.discard(task)
            return state.finishWaiters.removeValue(forKey: task)
        }
        waiter?.resume()
    }

    /// Ends `task`'s stream with `events` and records `outcome`; returns once both are committed.
    func finish(_ task: UUID, events: [String], outcome: TaskOutcome) async {
        precondition(!events.isEmpty, "a stream ends with at least one event")
        await withCheckedContinuation { continuation in
            state.withLock { state in
                state.pending.finish(task, events: events, outcome: outcome)
                state.finishWaiters[task] = continuation
            }
            work.ring()
            urgent.ring()
        }
    }

    /// Flushes when the schedule says so. On graceful shutdown — which reaches the writer after the dispatcher has
    /// finished its tasks — it commits what is left, giving up after `drainTimeout`. However it ends, no executor is
    /// left suspended on it.
    func run() async throws {
        let clock = ContinuousClock()
        await withGracefulShutdownHandler {
            var schedule = FlushSchedule<ContinuousClock.Instant>(
                window: configuration.window, rowsPerSecond: configuration.rowsPerSecond)
            while !Task.isCancelled, !Task.isShuttingDownGracefully {
                await work.wait()
                if case .rest(let until) = schedule.next(at: clock.now) { try? await LoopTimer.sleep(until: until) }
                if case .gather(let until) = schedule.next(at: clock.now) {
                    await urgent.wait(timeout: clock.now.duration(to: until))
                }
                let start = clock.now
                schedule.flushed(rows: await flush(), startedAt: start)
            }
            let deadline = clock.now + configuration.drainTimeout
            while !Task.isCancelled, hasPendingEvents, clock.now < deadline {
                await flush()
                if hasPendingEvents { try? await LoopTimer.sleep(for: configuration.window) }
            }
        } onGracefulShutdown: {
            self.work.ring()
            self.urgent.ring()
        }
        let abandoned = state.withLock { state in
            defer {
                state.pending.removeAll()
                state.finishWaiters.removeAll()
                state.backpressured.removeAll()
            }
            return Array(state.finishWaiters.values) + state.backpressured
        }
        if !abandoned.isEmpty {
            logger.error("stream writer stopped with uncommitted events", metadata: ["waiters": "\(abandoned.count)"])
        }
        for continuation in abandoned { continuation.resume() }
    }

    private var hasPendingEvents: Bool {
        state.withLock { $0.pending.count > 0 }
    }

    /// Commits everything pending; returns how many stream rows that took. On failure the events stay pending and
    /// are retried on the next round.
    @discardableResult
    func flush() async -> Int {
        let (batches, outcomes) = state.withLock { $0.pending.batches() }
        guard !batches.isEmpty else { return 0 }
        let start = ContinuousClock.now
        do {
            try await log.append(batches, outcomes: outcomes, workerID: configuration.workerID)
            let events = batches.reduce(0) { $0 + $1.events.count }
            flushDuration.record(duration: ContinuousClock.now - start)
            flushEvents.record(events)
            eventsWritten.increment(by: events)
        } catch {
            logger.error(
                "flush failed; will retry",
                metadata: ["batches": "\(batches.count)", "error": "\(String(reflecting: error))"])
            try? await LoopTimer.sleep(for: configuration.window)
            work.ring()
            return batches.count
        }
        let resumed = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            var resumed = state.pending.committed(batches).compactMap { state.finishWaiters.removeValue(forKey: $0) }
            if !state.pending.isOverLimit {
                resumed += state.backpressured
                state.backpressured.removeAll()
            }
            return resumed
        }
        for continuation in resumed { continuation.resume() }
        return batches.count
    }
}
