import Foundation

/// The tasks whose enqueue ended in doubt, until each is known to have been committed or not, as a value fed the
/// instants things happen at.
///
/// When an enqueue misses its deadline (Postgres slow or failing over) the API answers 503 and the client retries,
/// but the statement may still commit: a task nobody holds, run and charged for nothing (seen in the multi-host
/// failover: a new primary's first checkpoint held two inserts past the deadline). So the API withdraws such tasks
/// (`EnqueueWithdrawal`): it asks to cancel each id once Postgres answers, and forgets an id once it was found, or
/// once a withdrawal found nothing `settleAfter` after the doubt arose (by then the statement has committed or died).
/// Bounded: past `capacity` the oldest doubts are dropped (and counted).
struct DoubtfulEnqueues<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    let settleAfter: Duration
    let capacity: Int
    private var doubts: [(id: UUID, since: Instant)] = []

    init(settleAfter: Duration, capacity: Int) {
        self.settleAfter = settleAfter
        self.capacity = capacity
    }

    var ids: [UUID] { doubts.map(\.id) }
    var isEmpty: Bool { doubts.isEmpty }

    /// The enqueues of `ids` failed at `now` without knowing whether they committed; returns how many older doubts
    /// were dropped to stay within `capacity`.
    mutating func doubt(_ ids: [UUID], at now: Instant) -> Int {
        doubts += ids.map { ($0, now) }
        let dropped = max(0, doubts.count - capacity)
        doubts.removeFirst(dropped)
        return dropped
    }

    /// A withdrawal ran at `now` and found `found` (cancelled them, or they had ended): those are settled, and so
    /// is every doubt old enough that its statement can no longer commit.
    mutating func withdrawn(found: Set<UUID>, at now: Instant) {
        doubts.removeAll { found.contains($0.id) || $0.since.advanced(by: settleAfter) <= now }
    }
}
