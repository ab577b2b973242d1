import Foundation
import HandoffRuntime
import HandoffStore
import HandoffWire
import Logging
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// Whoever waits for a task's stream to move. `wake` is called on any thread, and means "look again": the
/// subscriber asks `head(of:)` whether there is news, and a keepalive tick wakes it with none. `ownerLapsed`, also on
/// any thread, means the key that created the task was revoked or has expired: the stream ends.
protocol StreamSubscriber: AnyObject, Sendable {
    func wake()
    func ownerLapsed()
}

/// Fans stream appends out to the clients of this process.
///
/// One LISTEN connection per process (the `PostgresListener` it runs) — never one per client. It keeps the
/// newest known sequence number of every task somebody watches and wakes that task's subscribers when it
/// advances. A flush's NOTIFYs carry the rows it committed (`StreamAppendPayload`); the notifier keeps the last
/// few batches of each watched task, so a thousand woken clients run no query at all (rows announced without
/// their events are read once, by primary key, for all watched tasks at once). Two timers cover what NOTIFY
/// cannot: a poll that reads the heads of all watched tasks in one statement, so a lost notification costs
/// latency and never data; and a keepalive tick that lets each silent stream write its ping.
final class StreamNotifier: Service {
    struct Configuration: Sendable {
        var pollInterval: Duration
        var keepaliveInterval: Duration
    }

    private struct RowKey: Hashable {
        let task: UUID
        let sequence: Int
    }

    private let configuration: Configuration
    private let log: StreamLog
    private let logger: Logger
    private let state = Mutex(StreamWatches<any StreamSubscriber>())
    private let listenerEndpoint: ListenerEndpoint?
    private let readiness: Readiness?
    private let pollNow = Doorbell()
    private let fetchNow = Doorbell()

    /// `listenerEndpoint` is nil only in tests that drive `advance` by hand; `readiness` hears whether the listener
    /// listens.
    init(
        configuration: Configuration, log: StreamLog, listenerEndpoint: ListenerEndpoint?,
        readiness: Readiness? = nil, logger: Logger
    ) {
        self.configuration = configuration
        self.log = log
        self.listenerEndpoint = listenerEndpoint
        self.readiness = readiness
        self.logger = logger
    }

    /// Registers `subscriber` for wake-ups about `task` until `unsubscribe` with the id returned; `nil` when the task
    /// already has `limit` subscribers here.
    func subscribe(_ subscriber: any StreamSubscriber, to task: UUID, limit: Int = .max) -> Int? {
        state.withLock { $0.subscribe(subscriber, to: task, limit: limit) }
    }

    func unsubscribe(_ id: Int, from task: UUID) {
        state.withLock { $0.unsubscribe(id, from: task) }
    }

    /// The newest sequence number known for `task` (0 when none is known).
    func head(of task: UUID) -> Int {
        state.withLock { $0.head(of: task) }
    }

    var subscriberCount: Int {
        state.withLock { $0.subscriberCount }
    }

    /// Records that `task` has events up to `sequence` and wakes its subscribers if that is news.
    func advance(_ task: UUID, to sequence: Int) {
        for subscriber in state.withLock({ $0.advance(task, to: sequence) }) { subscriber.wake() }
    }

    /// Wakes every subscriber: on each keepalive tick.
    func wakeAll() {
        for subscriber in state.withLock({ $0.allSubscribers }) { subscriber.wake() }
    }

    /// The cached batches that take a client at `cursor` up to the head, or nil (`StreamWatches.cachedBatches`).
    func cachedBatches(of task: UUID, after cursor: StreamCursor) -> [StreamBatch]? {
        state.withLock { $0.cachedBatches(of: task, after: cursor) }
    }

    /// A flush's announcement: the rows that came with their events go into the cache and wake their streams at
    /// once; the others are fetched.
    private func receive(_ payload: String) {
        let notified = Self.microsecondsNow()
        let announcement = StreamAppendPayload.decode(payload, notified: notified) { task in
            state.withLock { $0.isWatched(task) }
        }
        let fetch = state.withLock { $0.announced(announcement, notified: notified) }
        for batch in announcement.batches { advance(batch.task, to: batch.sequence) }
        if fetch { fetchNow.ring() }
    }

    /// Reads the announced rows that came without their events in one statement, caches them, then wakes the
    /// subscribers. If the read fails they are woken anyway and read the table themselves.
    private func fetch() async {
        let rows = state.withLock { $0.takeRowsToFetch() }
        guard !rows.isEmpty else { return }
        do {
            let batches = try await log.batches(at: rows.map { ($0.task, $0.sequence) })
            let received = Self.microsecondsNow()
            let notified = Dictionary(
                rows.map { (RowKey(task: $0.task, sequence: $0.sequence), $0.notified) }, uniquingKeysWith: min)
            let stamped = batches.map { batch in
                var batch = batch
                batch.notifiedAtMicroseconds = notified[RowKey(task: batch.task, sequence: batch.sequence)]
                batch.receivedAtMicroseconds = received
                return batch
            }
            state.withLock { $0.cache(stamped) }
        } catch {
            logger.warning("stream fetch failed", metadata: ["error": "\(String(reflecting: error))"])
        }
        for row in rows { advance(row.task, to: row.sequence) }
    }

    /// Wall-clock time for the benchmark's trace: it is compared with Postgres's and the client's clocks.
    private static func microsecondsNow() -> Int64 {
        Int64(Date().timeIntervalSince1970 * 1_000_000)
    }

    /// One statement for all watched tasks (which also tells the workers they are watched); a failure is logged and
    /// retried on the next round. Which heads it may advance is `StreamWatches.beginPoll`'s decision.
    func poll() async {
        let plan = state.withLock { $0.beginPoll() }
        guard !plan.tasks.isEmpty else { return }
        do {
            let (heads, lapsed) = try await log.heads(ofWatched: Array(plan.tasks))
            for (task, head) in heads where plan.silent.contains(task) { advance(task, to: head) }
            for subscriber in state.withLock({ $0.subscribers(of: lapsed) }) { subscriber.ownerLapsed() }
        } catch {
            logger.warning("stream poll failed", metadata: ["error": "\(String(reflecting: error))"])
        }
    }

    func run() async throws {
        await withDiscardingTaskGroup { group in
            if let listenerEndpoint {
                let listener = PostgresListener(
                    endpoint: listenerEndpoint, channels: [NotifyChannel.streamAppended], logger: logger,
                    // Notifications may have been lost while disconnected: look at the table now.
                    onListening: {
                        self.readiness?.listener(listening: true)
                        self.state.withLock { $0.listening() }
                        self.pollNow.ring()
                    },
                    onLost: { self.readiness?.listener(listening: false) },
                    onNotification: { _, payload in self.receive(payload) })
                group.addTask { try? await listener.run() }
            }
            group.addTask {
                await cancelWhenGracefulShutdown {
                    while !Task.isCancelled {
                        await self.pollNow.wait(timeout: self.configuration.pollInterval)
                        await self.poll()
                    }
                }
            }
            group.addTask {
                await cancelWhenGracefulShutdown {
                    while !Task.isCancelled {
                        await self.fetchNow.wait()
                        await self.fetch()
                    }
                }
            }
            group.addTask {
                // Ticks at half the interval, and a stream pings when it was silent for half of it, so no stream
                // is silent longer than the interval.
                await repeatEvery(self.configuration.keepaliveInterval / 2) { self.wakeAll() }
            }
        }
    }
}
