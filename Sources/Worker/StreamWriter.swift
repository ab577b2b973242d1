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
/// Executors hand events to the writer; at most once per window (sooner when `maxPendingEvents` pile up, at once
/// when the last flush is a window ago) the writer commits the pending events of ALL tasks as one statement —
/// one batch row per task, the outcomes of the tasks that ended, the NOTIFYs carrying the rows — because NOTIFY
/// serialises commits database-wide and a commit per token would not scale. Sequence numbers are assigned when a batch is built and only consumed
/// once its commit succeeded, so a failed flush is retried with the same numbers and nothing is lost.
final class StreamWriter: Service {
    struct Configuration: Sendable {
        var window: Duration
        var maxPendingEvents: Int
        var workerID: String
        var drainTimeout: Duration = .seconds(10)
    }

    private struct TaskBuffer {
        var committedSequence = 0
        var pending: [String] = []
        var outcome: TaskOutcome?
        var finishWaiter: CheckedContinuation<Void, Never>?
    }

    private struct State {
        var buffers: [UUID: TaskBuffer] = [:]
        var pendingEvents = 0
        /// Executors suspended because too much is pending: the bound on the writer's memory.
        var backpressured: [CheckedContinuation<Void, Never>] = []
    }

    private let configuration: Configuration
    private let log: StreamLog
    private let logger: Logger
    private let state = Mutex(State())
    private let work = Doorbell()
    private let urgent = Doorbell()
    private let flushEvents = Recorder(label: MetricName.flushEvents.rawValue)
    private let flushDuration = Timer(label: MetricName.flushDuration.rawValue)
    private let eventsWritten = Counter(label: MetricName.eventsWritten.rawValue)

    init(configuration: Configuration, log: StreamLog, logger: Logger) {
        self.configuration = configuration
        self.log = log
        self.logger = logger
    }

    /// Adds events to `task`'s stream, all in the same minibatch. Suspends while the writer holds more than it may.
    func append(_ events: String..., to task: UUID) async {
        await withCheckedContinuation { continuation in
            // Deciding to wait and registering the waiter happen under one lock, so no flush slips in between.
            let (count, mustWait) = state.withLock { state in
                state.buffers[task, default: TaskBuffer()].pending += events
                state.pendingEvents += events.count
                let mustWait = state.pendingEvents >= 4 * configuration.maxPendingEvents
                if mustWait { state.backpressured.append(continuation) }
                return (state.pendingEvents, mustWait)
            }
            work.ring()
            if count >= configuration.maxPendingEvents { urgent.ring() }
            if !mustWait { continuation.resume() }
        }
    }

    /// Drops what `task` has pending: it was handed back to the queue and belongs to its next run.
    func discard(_ task: UUID) async {
        state.withLock { state in
            state.pendingEvents -= state.buffers.removeValue(forKey: task)?.pending.count ?? 0
        }
    }

    /// Ends `task`'s stream with `events` and records `outcome`; returns once both are committed.
    func finish(_ task: UUID, events: [String], outcome: TaskOutcome) async {
        precondition(!events.isEmpty, "a stream ends with at least one event")
        await withCheckedContinuation { continuation in
            state.withLock { state in
                state.buffers[task, default: TaskBuffer()].pending += events
                state.buffers[task]!.outcome = outcome
                state.buffers[task]!.finishWaiter = continuation
                state.pendingEvents += events.count
            }
            work.ring()
            urgent.ring()
        }
    }

    /// Flushes each window that has work. On graceful shutdown — which reaches the writer after the
    /// dispatcher has finished its tasks — it commits what is left, giving up after `drainTimeout`. However it
    /// ends, no executor is left suspended on it.
    func run() async throws {
        await withGracefulShutdownHandler {
            var lastFlush = ContinuousClock.now - configuration.window
            var rested = ContinuousClock.now
            while !Task.isCancelled, !Task.isShuttingDownGracefully {
                await work.wait()
                // Under load the writer rests after each flush that outlasted the window, `restPerFlush` times as long
                // as it overran, so it keeps Postgres busy a bounded share of the time: the busier Postgres, the more
                // events each row and each NOTIFY carries, instead of more rows a second than Postgres can write.
                // Nothing cuts the rest short. A flush within the window costs no rest: at low load small, frequent
                // flushes keep each commit's burst of writes (replicas, Caddy, clients) small.
                if ContinuousClock.now < rested { try? await Task.sleep(until: rested) }
                // At most one flush per window, but no waiting once a window has passed: an idle worker's first
                // token commits at once, a busy worker's tokens share one commit per window.
                let due = lastFlush + configuration.window
                if ContinuousClock.now < due { await urgent.wait(timeout: due - ContinuousClock.now) }
                lastFlush = ContinuousClock.now
                await flush()
                let took = ContinuousClock.now - lastFlush
                let overran = max(.zero, took - configuration.window)
                rested = ContinuousClock.now + min(overran * Self.restPerFlush, Self.longestRest)
            }
            let deadline = ContinuousClock.now + configuration.drainTimeout
            while !Task.isCancelled, hasPendingEvents, ContinuousClock.now < deadline {
                await flush()
                if hasPendingEvents { try? await Task.sleep(for: configuration.window) }
            }
        } onGracefulShutdown: {
            self.work.ring()
            self.urgent.ring()
        }
        let abandoned = state.withLock { state in
            defer {
                state.buffers.removeAll()
                state.backpressured.removeAll()
            }
            return state.buffers.values.compactMap(\.finishWaiter) + state.backpressured
        }
        if !abandoned.isEmpty {
            logger.error("stream writer stopped with uncommitted events", metadata: ["waiters": "\(abandoned.count)"])
        }
        for continuation in abandoned { continuation.resume() }
    }

    /// How long the writer rests after a flush, per unit of time the flush outlasted the window, and at most.
    static let restPerFlush = 2
    static let longestRest = Duration.milliseconds(250)

    private var hasPendingEvents: Bool {
        state.withLock { $0.pendingEvents > 0 }
    }

    /// Commits everything pending. On failure the events stay pending and are retried on the next round.
    func flush() async {
        let (batches, outcomes) = state.withLock { state -> ([StreamBatch], [TaskOutcome]) in
            var batches: [StreamBatch] = []
            var outcomes: [TaskOutcome] = []
            for (task, buffer) in state.buffers where !buffer.pending.isEmpty {
                let final = buffer.outcome != nil
                batches.append(
                    StreamBatch(
                        task: task, sequence: buffer.committedSequence + buffer.pending.count, events: buffer.pending,
                        final: final))
                if let outcome = buffer.outcome { outcomes.append(outcome) }
            }
            return (batches, outcomes)
        }
        guard !batches.isEmpty else { return }
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
            try? await Task.sleep(for: configuration.window)
            work.ring()
            return
        }
        let resumed = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            var resumed: [CheckedContinuation<Void, Never>] = []
            for batch in batches where state.buffers[batch.task] != nil {  // a discarded task is gone already
                let count = batch.events.count
                state.pendingEvents -= count
                if batch.final {
                    if let waiter = state.buffers.removeValue(forKey: batch.task)?.finishWaiter {
                        resumed.append(waiter)
                    }
                } else {
                    state.buffers[batch.task]!.committedSequence = batch.sequence
                    state.buffers[batch.task]!.pending.removeFirst(count)
                }
            }
            if state.pendingEvents < 4 * configuration.maxPendingEvents {
                resumed += state.backpressured
                state.backpressured.removeAll()
            }
            return resumed
        }
        for continuation in resumed { continuation.resume() }
    }
}
