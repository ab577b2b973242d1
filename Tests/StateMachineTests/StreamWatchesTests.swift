import Foundation
import HandoffWire
import Testing

@testable import SSEChat

/// The notifier's subscriptions, cache and poll decisions, without a listener or a table.
struct StreamWatchesTests {
    typealias Watches = StreamWatches<String>
    let task = UUID()
    let other = UUID()

    func batch(_ task: UUID, through sequence: Int, events: Int = 1) -> StreamBatch {
        StreamBatch(task: task, sequence: sequence, events: Array(repeating: "e", count: events), final: false)
    }

    func announcement(_ batches: [StreamBatch], toFetch: [(UUID, Int)] = []) -> StreamAppendPayload.Announcement {
        var announcement = StreamAppendPayload.Announcement()
        announcement.batches = batches
        announcement.toFetch = toFetch.map { (task: $0.0, sequence: $0.1) }
        return announcement
    }

    @Test func aTaskIsWatchedFromItsFirstSubscriberToItsLast() throws {
        var watches = Watches()
        let first = watches.subscribe("a", to: task, limit: 2)
        let second = watches.subscribe("b", to: task, limit: 2)
        let third = watches.subscribe("c", to: task, limit: 2)
        let a = try #require(first)
        let b = try #require(second)
        #expect(third == nil, "the per-task limit")
        #expect(watches.subscriberCount == 2)
        watches.unsubscribe(a, from: task)
        #expect(watches.isWatched(task))
        watches.unsubscribe(b, from: task)
        #expect(!watches.isWatched(task))
        #expect(watches.head(of: task) == 0)
    }

    @Test func onlyNewsWakes() {
        var watches = Watches()
        _ = watches.subscribe("a", to: task, limit: 8)
        _ = watches.subscribe("b", to: task, limit: 8)
        let news = watches.advance(task, to: 3)
        let again = watches.advance(task, to: 3)
        let older = watches.advance(task, to: 2)
        let unwatched = watches.advance(other, to: 9)
        #expect(Set(news) == ["a", "b"])
        #expect(again.isEmpty && older.isEmpty)
        #expect(unwatched.isEmpty, "nobody watches it")
        #expect(watches.head(of: task) == 3)
    }

    @Test func theCacheServesAClientOnlyContiguouslyUpToTheHead() {
        var watches = Watches()
        _ = watches.subscribe("a", to: task, limit: 8)
        watches.cache([batch(task, through: 2, events: 2), batch(task, through: 5, events: 3)])
        _ = watches.advance(task, to: 5)
        let fromStart = watches.cachedBatches(of: task, after: .start)
        #expect(fromStart?.map(\.sequence) == [2, 5])
        let fromThree = watches.cachedBatches(of: task, after: StreamCursor(sequence: 3))
        #expect(fromThree?.map(\.sequence) == [5])
        _ = watches.advance(task, to: 7)  // announced by a poll, not cached
        #expect(watches.cachedBatches(of: task, after: .start) == nil, "the cache ends before the head")
    }

    @Test func aGapInTheCacheSendsTheClientToTheTable() {
        var watches = Watches()
        _ = watches.subscribe("a", to: task, limit: 8)
        watches.cache([batch(task, through: 2, events: 2), batch(task, through: 6, events: 1)])  // 3...5 lost
        _ = watches.advance(task, to: 6)
        #expect(watches.cachedBatches(of: task, after: .start) == nil)
        #expect(watches.cachedBatches(of: task, after: StreamCursor(sequence: 5))?.map(\.sequence) == [6])
    }

    @Test func theCacheKeepsTheNewestBatchesInOrder() {
        var watches = Watches()
        _ = watches.subscribe("a", to: task, limit: 8)
        let limit = Watches.recentLimit
        watches.cache((1...limit + 2).reversed().map { batch(task, through: $0) })
        _ = watches.advance(task, to: limit + 2)
        let kept = watches.cachedBatches(of: task, after: StreamCursor(sequence: 2))?.map(\.sequence)
        #expect(kept == Array(3...limit + 2))
        #expect(watches.cachedBatches(of: task, after: .start) == nil, "the oldest fell out")
    }

    @Test func rowsAnnouncedWithoutEventsAreFetchedOnce() {
        var watches = Watches()
        _ = watches.subscribe("a", to: task, limit: 8)
        let carried = watches.announced(announcement([batch(task, through: 1)]), notified: 10)
        let named = watches.announced(announcement([], toFetch: [(task, 4)]), notified: 20)
        let fetched = watches.takeRowsToFetch()
        let fetchedAgain = watches.takeRowsToFetch()
        #expect(!carried && named)
        #expect(fetched == [.init(task: task, sequence: 4, notified: 20)])
        #expect(fetchedAgain.isEmpty)
    }

    @Test func thePollAdvancesOnlyTasksNoAnnouncementReached() {
        var watches = Watches()
        _ = watches.subscribe("a", to: task, limit: 8)
        _ = watches.subscribe("b", to: other, limit: 8)
        _ = watches.announced(announcement([batch(task, through: 1)]), notified: 0)
        let first = watches.beginPoll()
        let second = watches.beginPoll()
        #expect(first == .init(tasks: [task, other], silent: [other]))
        #expect(second == .init(tasks: [task, other], silent: [task, other]), "each round starts afresh")
    }

    @Test func aReconnectedListenerMakesTheNextPollLookAtEveryTask() {
        var watches = Watches()
        _ = watches.subscribe("a", to: task, limit: 8)
        _ = watches.announced(announcement([batch(task, through: 1)]), notified: 0)
        watches.listening()
        let afterReconnect = watches.beginPoll()
        #expect(afterReconnect.silent == [task])
        _ = watches.announced(announcement([batch(task, through: 2)]), notified: 0)
        let next = watches.beginPoll()
        #expect(next.silent.isEmpty, "only the round after the reconnect")
    }

    @Test func announcementsForUnwatchedTasksAreNotCached() {
        var watches = Watches()
        watches.cache([batch(task, through: 1)])
        _ = watches.subscribe("a", to: task, limit: 8)
        _ = watches.advance(task, to: 1)
        #expect(watches.cachedBatches(of: task, after: .start) == nil)
        #expect(watches.subscribers(of: [task, other]) == ["a"])
    }
}
