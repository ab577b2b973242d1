import Foundation
import HandoffWire
import Logging
import PostgresNIO

/// Stopping tasks before their end: an owner's explicit cancel, abandonment (nobody has watched the stream for a
/// grace period), a worker handing its tasks back at shutdown, and the pruning of finished tasks.
extension TaskQueue {
    /// Asks for `id` to be cancelled and wakes the worker running it. Returns the task's status when asked (`nil`:
    /// no such task); only a queued or running task is marked.
    package func requestCancel(_ id: UUID) async throws -> TaskStatus? {
        try await cancel([id]).first?.status
    }

    /// Cancels those of `ids` that are queued or running, as their owner's cancel would; returns every one of `ids`
    /// that exists. For tasks whose enqueue the API answered with a 503 although it may have committed.
    package func withdraw(_ ids: [UUID]) async throws -> Set<UUID> {
        Set(try await cancel(ids).map(\.id))
    }

    /// Marks those of `ids` that are queued or running cancelled and wakes the workers running them, in one
    /// statement; returns each existing task with its status when asked.
    private func cancel(_ ids: [UUID]) async throws -> [(id: UUID, status: TaskStatus?)] {
        let rows = try await client.perform(
            """
            WITH target AS (
                SELECT id, status FROM handoff_tasks WHERE id = ANY(\(ids)::uuid[]) FOR UPDATE
            ), marked AS (
                UPDATE handoff_tasks t SET cancel_requested_at = coalesce(t.cancel_requested_at, now()), updated_at = now()
                FROM target WHERE t.id = target.id AND target.status IN ('queued', 'running')
                RETURNING t.id
            )
            SELECT target.id, target.status, (SELECT count(pg_notify(\(NotifyChannel.taskCancelled), id::text)) FROM marked)
            FROM target
            """, timeout: timeout, logger: logger)
        var found: [(id: UUID, status: TaskStatus?)] = []
        for (id, status, _) in try rows.decode((UUID, String, Int).self) {
            found.append((id, TaskStatus(rawValue: status)))
        }
        return found
    }

    /// Renews the lease of every task `workerID` runs, in one statement, and returns those it should stop: the
    /// ones it no longer holds (`lost`), the ones somebody cancelled, and the ones no client has watched for
    /// `abandonAfter` (which this marks cancelled) —
    /// except background responses, which run on without a client by design (their owner polls or resumes later).
    /// It doubles as the fallback for a cancel NOTIFY the worker missed. A watched task's `watched_at` can be
    /// `StreamLog.watchRefresh` old, so that much is added to the grace.
    ///
    /// Only the tasks in `running` — the ones the worker is actually running — are renewed, not every task the table
    /// says it holds: a claim that committed after the worker gave up waiting for it (a partition healing mid-claim)
    /// leaves tasks held by a worker that never runs them, and renewing those would keep them from the rescue forever.
    ///
    /// `abandonAfter` nil: judge no task abandoned (just after an outage, when no replica could mark its streams
    /// watched; `OutageHold`).
    package func renewLeases(workerID: String, running: [UUID], lease: Duration, abandonAfter: Duration?) async throws
        -> [LeaseStop]
    {
        let abandoned =
            abandonAfter.map { abandonAfter in
                let unwatched = Int((abandonAfter + StreamLog.watchRefresh).components.seconds)
                return """
                    coalesce(watched_at, started_at) < now() - \(unwatched) * interval '1 second'
                        AND NOT coalesce((response->>'background')::boolean, false)
                    """
            } ?? "false"
        let rows = try await client.perform(
            """
            UPDATE handoff_tasks SET lease_expires_at = now() + \(Int(lease.components.seconds)) * interval '1 second',
                cancel_requested_at = CASE WHEN \(unescaped: abandoned) THEN coalesce(cancel_requested_at, now()) ELSE cancel_requested_at END
            WHERE worker_id = \(workerID) AND status = 'running' AND id = ANY(\(running)::uuid[])
            RETURNING id, cancel_requested_at IS NOT NULL, \(unescaped: abandoned)
            """, timeout: timeout, logger: logger)
        var stop: [LeaseStop] = []
        var held: Set<UUID> = []
        for (id, cancelled, abandoned) in try rows.decode((UUID, Bool, Bool).self) {
            held.insert(id)
            if cancelled { stop.append(LeaseStop(id: id, abandoned: abandoned)) }
        }
        // Running here but no longer held: the lease ran out during an outage longer than it (a partition, a
        // failover), and the rescue gave the task to another worker, which continues it. This run is over.
        for id in running where !held.contains(id) { stop.append(LeaseStop(id: id, lost: true)) }
        return stop
    }

    /// Hands a task back to the queue, for a worker shutting down: one that streamed nothing yet starts again, one
    /// that streamed is continued by the next worker when it can be (`continuable`, as for a lost worker: its
    /// `continuations` counted). `false` when neither (then the worker ends its stream with an error instead, so no
    /// client sees a restart).
    package func release(_ id: UUID, workerID: String, continuable: Continuable = .none) async throws -> Bool {
        let streamed = Self.streamedContent("t.id")
        let rows = try await client.perform(
            """
            WITH candidate AS (
                SELECT t.id, \(unescaped: streamed) AS streamed FROM handoff_tasks t
                WHERE t.id = \(id) AND t.worker_id = \(workerID) AND t.status = 'running'
                    AND (NOT \(unescaped: streamed)
                        OR (t.model = ANY(\(continuable.models)) AND t.continuations < \(continuable.max)))
            ), released AS (
                -- A continued task keeps its attempt: the claim reads a partial answer only on a later attempt.
                UPDATE handoff_tasks t SET status = 'queued', worker_id = NULL, lease_expires_at = NULL,
                    attempts = CASE WHEN c.streamed THEN t.attempts ELSE greatest(t.attempts - 1, 0) END,
                    continuations = t.continuations + CASE WHEN c.streamed THEN 1 ELSE 0 END, updated_at = now()
                FROM candidate c WHERE t.id = c.id
                RETURNING t.id
            )
            SELECT count(*), (SELECT count(pg_notify(\(NotifyChannel.taskQueued), '')) FROM released) FROM released
            """, timeout: timeout, logger: logger)
        for (released, _) in try rows.decode((Int, Int).self) {
            return released > 0
        }
        return false
    }

    /// Deletes up to `limit` tasks that finished more than `retention` ago, with their stream rows. Any number of
    /// processes may run it at once: each takes different rows (`SKIP LOCKED`).
    package func prune(retention: Duration, limit: Int = 1000) async throws -> Int {
        let rows = try await client.perform(
            """
            WITH doomed AS (
                SELECT id FROM handoff_tasks
                WHERE finished_at < now() - \(Int(retention.components.seconds)) * interval '1 second'
                ORDER BY finished_at LIMIT \(limit) FOR UPDATE SKIP LOCKED
            ), deleted AS (
                DELETE FROM handoff_tasks t USING doomed WHERE t.id = doomed.id RETURNING t.id
            ), erased AS (
                DELETE FROM handoff_stream WHERE task_id = ANY(ARRAY(SELECT id FROM deleted))
            )
            SELECT count(*) FROM deleted
            """, timeout: timeout, logger: logger)
        for count in try rows.decode(Int.self) {
            return count
        }
        return 0
    }
}

/// A running task its worker must stop, as its lease renewal found it.
package struct LeaseStop: Sendable, Hashable {
    package let id: UUID
    /// Nobody watched its stream for the abandonment grace (else its owner cancelled it).
    package let abandoned: Bool
    /// The worker no longer holds it: it ended, or was rescued by another worker.
    package let lost: Bool

    package init(id: UUID, abandoned: Bool = false, lost: Bool = false) {
        self.id = id
        self.abandoned = abandoned
        self.lost = lost
    }
}
