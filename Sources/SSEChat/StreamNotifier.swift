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

    private struct Watch {
        var head = 0
        var subscribers: [Int: any StreamSubscriber] = [:]
        /// The latest batches read for this task's subscribers, oldest first; at most `recentLimit`.
        var recent: [StreamBatch] = []
        /// An announcement reached this task since the last poll.
        var announced = false
    }

    private struct State {
        var watches: [UUID: Watch] = [:]
        var nextID = 0
        /// The listener (re)connected: announcements may have been lost, so the next poll looks at every task.
        var pollEverything = false
        /// Rows named by notifications and not fetched yet, with when each notification arrived.
        var toFetch: [(task: UUID, sequence: Int, notified: Int64)] = []
    }

    private static let recentLimit = 8

    private struct RowKey: Hashable {
        let task: UUID
        let sequence: Int
    }

    private let configuration: Configuration
    private let log: StreamLog
    private let logger: Logger
    private let state = Mutex(State())
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
        state.withLock { state in
            guard state.watches[task]?.subscribers.count ?? 0 < limit else { return nil }
            state.nextID += 1
            state.watches[task, default: Watch()].subscribers[state.nextID] = subscriber
            return state.nextID
        }
    }

    func unsubscribe(_ id: Int, from task: UUID) {
        state.withLock { state in
            state.watches[task]?.subscribers.removeValue(forKey: id)
            if state.watches[task]?.subscribers.isEmpty == true {
                state.watches.removeValue(forKey: task)
            }
        }
    }

    /// The newest sequence number known for `task` (0 when none is known).
    func head(of task: UUID) -> Int {
        state.withLock { $0.watches[task]?.head ?? 0 }
    }

    var subscriberCount: Int {
        state.withLock { $0.watches.values.reduce(0) { $0 + $1.subscribers.count } }
    }

    /// Records that `task` has events up to `sequence` and wakes its subscribers if that is news.
    func advance(_ task: UUID, to sequence: Int) {
        let wake = state.withLock { state -> [any StreamSubscriber] in
            guard var watch = state.watches[task], sequence > watch.head else { return [] }
            watch.head = sequence
            state.watches[task] = watch
            return Array(watch.subscribers.values)
        }
        for subscriber in wake { subscriber.wake() }
    }

    /// Wakes every subscriber: on each keepalive tick.
    func wakeAll() {
        let all = state.withLock { state in state.watches.values.flatMap { $0.subscribers.values } }
        for subscriber in all { subscriber.wake() }
    }

    /// The cached batches that take a client at `cursor` contiguously up to the head, or nil when the cache does
    /// not cover that (the client lags, or a batch was not fetched): then the client reads the table itself.
    func cachedBatches(of task: UUID, after cursor: StreamCursor) -> [StreamBatch]? {
        state.withLock { state in
            guard let watch = state.watches[task] else { return nil }
            let newer = watch.recent.filter { $0.sequence > cursor.sequence }
            guard let last = newer.last, last.sequence == watch.head else { return nil }
            var reached = cursor.sequence
            for batch in newer {
                guard batch.firstSequence <= reached + 1 else { return nil }
                reached = batch.sequence
            }
            return newer
        }
    }

    /// A flush's announcement: the rows that came with their events go into the cache and wake their streams at
    /// once; the others are fetched.
    private func receive(_ payload: String) {
        let notified = Self.microsecondsNow()
        let announcement = StreamAppendPayload.decode(payload, notified: notified) { task in
            state.withLock { $0.watches[task] != nil }
        }
        let fetch = state.withLock { state in
            state.toFetch += announcement.toFetch.map { ($0.task, $0.sequence, notified) }
            cache(announcement.batches, in: &state)
            return !announcement.toFetch.isEmpty
        }
        for batch in announcement.batches { advance(batch.task, to: batch.sequence) }
        if fetch { fetchNow.ring() }
    }

    /// Keeps the newest `recentLimit` batches of each watched task, in order.
    private func cache(_ batches: [StreamBatch], in state: inout State) {
        for batch in batches where state.watches[batch.task] != nil {
            state.watches[batch.task]!.recent.append(batch)
            state.watches[batch.task]!.recent.sort { $0.sequence < $1.sequence }
            if state.watches[batch.task]!.recent.count > Self.recentLimit {
                state.watches[batch.task]!.recent.removeFirst()
            }
            state.watches[batch.task]!.announced = true
        }
    }

    /// Reads the announced rows that came without their events in one statement, caches them, then wakes the
    /// subscribers. If the read fails they are woken anyway and read the table themselves.
    private func fetch() async {
        let keys = state.withLock { state in
            defer { state.toFetch.removeAll() }
            return state.toFetch
        }
        guard !keys.isEmpty else { return }
        do {
            let batches = try await log.batches(at: keys.map { ($0.task, $0.sequence) })
            let received = Self.microsecondsNow()
            let notified = Dictionary(
                keys.map { (RowKey(task: $0.task, sequence: $0.sequence), $0.notified) }, uniquingKeysWith: min)
            state.withLock { state in
                cache(
                    batches.map { batch in
                        var batch = batch
                        batch.notifiedAtMicroseconds = notified[RowKey(task: batch.task, sequence: batch.sequence)]
                        batch.receivedAtMicroseconds = received
                        return batch
                    }, in: &state)
            }
        } catch {
            logger.warning("stream fetch failed", metadata: ["error": "\(String(reflecting: error))"])
        }
        for (task, sequence, _) in keys {
            advance(task, to: sequence)
        }
    }

    /// Wall-clock time for the benchmark's trace: it is compared with Postgres's and the client's clocks.
    private static func microsecondsNow() -> Int64 {
        Int64(Date().timeIntervalSince1970 * 1_000_000)
    }

    /// One statement for all watched tasks (which also tells the workers they are watched); a failure is logged and
    /// retried on the next round.
    ///
    /// Only the tasks no announcement reached since the last poll are advanced: a live stream's announcements
    /// trail its commits by a few milliseconds, and a poll that advanced its head in between would send its clients
    /// to the table for rows that are about to arrive. A lost announcement of a live stream shows as a gap in the
    /// cache when its next one arrives; the poll is for a stream that fell silent.
    func poll() async {
        let (tasks, silent) = state.withLock { state in
            defer {
                state.pollEverything = false
                for task in Array(state.watches.keys) { state.watches[task]!.announced = false }
            }
            return (
                Array(state.watches.keys),
                Set(state.watches.filter { state.pollEverything || !$0.value.announced }.map(\.key))
            )
        }
        guard !tasks.isEmpty else { return }
        do {
            let (heads, lapsed) = try await log.heads(ofWatched: tasks)
            for (task, head) in heads where silent.contains(task) {
                advance(task, to: head)
            }
            let ended = state.withLock { state in
                lapsed.flatMap { state.watches[$0].map { Array($0.subscribers.values) } ?? [] }
            }
            for subscriber in ended { subscriber.ownerLapsed() }
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
                        self.state.withLock { $0.pollEverything = true }
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
