import Foundation
import HandoffWire

/// The notifier's state and decisions, as a value: which tasks are watched and by whom, the newest known sequence of
/// each, the last few batches each was announced, and what the next poll and fetch must look at. Every input comes in
/// as an argument — announcements, poll results, the time a notification arrived — and every output goes out as a
/// return value (whom to wake, what to read), so the `StreamNotifier` around it only locks, reads and wakes.
struct StreamWatches<Subscriber> {
    private struct Watch {
        var head = 0
        var subscribers: [Int: Subscriber] = [:]
        /// The latest batches read for this task's subscribers, oldest first; at most `recentLimit`.
        var recent: [StreamBatch] = []
        /// An announcement reached this task since the last poll.
        var announced = false
    }

    /// A row named by a notification without its events, with when the notification arrived (Unix microseconds).
    struct RowToFetch: Equatable {
        var task: UUID
        var sequence: Int
        var notified: Int64
    }

    /// What a poll reads: the heads of `tasks`; only `silent` ones may be advanced by it.
    struct PollPlan: Equatable {
        var tasks: Set<UUID>
        var silent: Set<UUID>
    }

    static var recentLimit: Int { 8 }

    private var watches: [UUID: Watch] = [:]
    private var lastID = 0
    /// The listener (re)connected: announcements may have been lost, so the next poll looks at every task.
    private var pollEverything = false
    private var toFetch: [RowToFetch] = []

    init() {}

    /// Adds `subscriber` to `task`'s watchers; the id to unsubscribe with, or nil when the task already has `limit`.
    mutating func subscribe(_ subscriber: Subscriber, to task: UUID, limit: Int) -> Int? {
        guard watches[task]?.subscribers.count ?? 0 < limit else { return nil }
        lastID += 1
        watches[task, default: Watch()].subscribers[lastID] = subscriber
        return lastID
    }

    /// Removes a subscriber; the task stops being watched (and its cache goes) with its last one.
    mutating func unsubscribe(_ id: Int, from task: UUID) {
        watches[task]?.subscribers.removeValue(forKey: id)
        if watches[task]?.subscribers.isEmpty == true { watches.removeValue(forKey: task) }
    }

    func isWatched(_ task: UUID) -> Bool { watches[task] != nil }

    /// The newest sequence number known for `task` (0 when none is known).
    func head(of task: UUID) -> Int { watches[task]?.head ?? 0 }

    var subscriberCount: Int { watches.values.reduce(0) { $0 + $1.subscribers.count } }

    var allSubscribers: [Subscriber] { watches.values.flatMap { $0.subscribers.values } }

    func subscribers(of tasks: some Sequence<UUID>) -> [Subscriber] {
        tasks.flatMap { watches[$0].map { Array($0.subscribers.values) } ?? [] }
    }

    /// Records that `task` has events up to `sequence`; returns whom to wake: its subscribers, if that is news.
    mutating func advance(_ task: UUID, to sequence: Int) -> [Subscriber] {
        guard var watch = watches[task], sequence > watch.head else { return [] }
        watch.head = sequence
        watches[task] = watch
        return Array(watch.subscribers.values)
    }

    /// The cached batches that take a client at `cursor` contiguously up to the head, or nil when the cache does not
    /// cover that (the client lags, or a batch was not fetched): then the client reads the table itself.
    func cachedBatches(of task: UUID, after cursor: StreamCursor) -> [StreamBatch]? {
        guard let watch = watches[task] else { return nil }
        let newer = watch.recent.filter { $0.sequence > cursor.sequence }
        guard let last = newer.last, last.sequence == watch.head else { return nil }
        var reached = cursor.sequence
        for batch in newer {
            guard batch.firstSequence <= reached + 1 else { return nil }
            reached = batch.sequence
        }
        return newer
    }

    /// A flush's announcement arrived at `notified`: its batches are cached (the caller advances their tasks), and
    /// the rows it named without their events wait for the fetch. Returns whether a fetch is needed.
    mutating func announced(_ announcement: StreamAppendPayload.Announcement, notified: Int64) -> Bool {
        toFetch += announcement.toFetch.map { RowToFetch(task: $0.task, sequence: $0.sequence, notified: notified) }
        cache(announcement.batches)
        return !announcement.toFetch.isEmpty
    }

    /// The rows the next fetch reads; they are handed out once.
    mutating func takeRowsToFetch() -> [RowToFetch] {
        defer { toFetch.removeAll() }
        return toFetch
    }

    /// Keeps the newest `recentLimit` batches of each watched task, in order, and marks the task announced.
    mutating func cache(_ batches: [StreamBatch]) {
        for batch in batches where watches[batch.task] != nil {
            watches[batch.task]!.recent.append(batch)
            watches[batch.task]!.recent.sort { $0.sequence < $1.sequence }
            if watches[batch.task]!.recent.count > Self.recentLimit { watches[batch.task]!.recent.removeFirst() }
            watches[batch.task]!.announced = true
        }
    }

    /// The listener (re)connected: the next poll advances every task, announced or not.
    mutating func listening() {
        pollEverything = true
    }

    /// Starts a poll round. Only the tasks no announcement reached since the last round are advanced by it: a live
    /// stream's announcements trail its commits by a few milliseconds, and a poll that advanced its head in between
    /// would send its clients to the table for rows that are about to arrive. A lost announcement of a live stream
    /// shows as a gap in the cache when its next one arrives; the poll is for a stream that fell silent.
    mutating func beginPoll() -> PollPlan {
        let plan = PollPlan(
            tasks: Set(watches.keys), silent: Set(watches.filter { pollEverything || !$0.value.announced }.keys))
        pollEverything = false
        for task in watches.keys { watches[task]!.announced = false }
        return plan
    }
}
