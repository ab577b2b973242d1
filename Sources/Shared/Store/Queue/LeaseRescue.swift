import Foundation
import HandoffWire
import Logging
import PostgresNIO

/// Leases: a running task belongs to its worker only while the worker keeps renewing it. A worker that stops
/// (crash, kill -9, partition) lets its leases expire, and any worker's rescuer then takes the task back.
extension TaskQueue {
    /// Whether the task in `column` has streamed more than its role chunk. The role chunk is the same on every
    /// attempt (same id, `created` and model), so a task that streamed only that can start over without a client
    /// seeing two different beginnings; one that streamed content cannot.
    static func streamedContent(_ column: String) -> String {
        "EXISTS (SELECT 1 FROM handoff_stream s WHERE s.task_id = \(column) AND s.seq > 1)"
    }

    package struct Rescue: Sendable, Equatable {
        package var requeued: Int
        package var failed: Int

        package init(requeued: Int, failed: Int) {
            self.requeued = requeued
            self.failed = failed
        }
    }

    /// Which tasks whose worker was lost after they streamed are requeued to be continued: those of `models` (the
    /// models that continue answers) continued fewer than `max` times.
    package struct Continuable: Sendable {
        package var models: [String]
        package var max: Int

        package init(models: [String], max: Int) {
            self.models = models
            self.max = max
        }

        package static let none = Continuable(models: [], max: 0)
    }

    /// Takes back every task whose lease expired, in one statement that many workers may run at once
    /// (`SKIP LOCKED` gives each expired task to one of them).
    ///
    /// A task that has streamed nothing yet goes back to the queue while it has attempts left — its client is
    /// still waiting at the start and will get the whole reply — and keeps its reservation. So does a task that has
    /// streamed, when it can be continued (`Continuable`): its partial answer stays in the stream table, its client
    /// keeps waiting, and the worker that claims it continues the answer (its `continuations` counted here). Any
    /// other task that has streamed, or used up its attempts, fails: its stream ends with `OpenAIError.workerLost` as an event and the
    /// final batch, so no client waits forever and none mistakes a truncated reply for a complete one. Its key is
    /// charged what was streamed — the admission's prompt estimate and one token per content event, as the worker's
    /// count died with it — and its reservation is released: a crash never leaks one.
    package func rescueExpired(maxAttempts: Int, continuable: Continuable = .none) async throws -> Rescue {
        let error = OpenAIError.workerLost
        let rows = try await client.perform(
            """
            WITH expired AS (
                SELECT t.id, t.attempts, \(unescaped: Self.streamedContent("t.id")) AS streamed,
                    t.model = ANY(\(continuable.models)) AND t.continuations < \(continuable.max) AS continuable
                FROM handoff_tasks t WHERE t.status = 'running' AND t.lease_expires_at < now()
                FOR UPDATE SKIP LOCKED
            ), requeued AS (
                UPDATE handoff_tasks t SET status = 'queued', worker_id = NULL, lease_expires_at = NULL, updated_at = now(),
                    continuations = t.continuations + CASE WHEN e.streamed THEN 1 ELSE 0 END
                FROM expired e
                WHERE t.id = e.id AND ((NOT e.streamed AND e.attempts < \(maxAttempts)) OR (e.streamed AND e.continuable))
                RETURNING t.id
            ), failed AS (
                UPDATE handoff_tasks t SET status = 'failed', error = \(error.json.text)::jsonb, worker_id = NULL,
                    lease_expires_at = NULL, finished_at = now(), updated_at = now()
                FROM expired e
                WHERE t.id = e.id AND ((e.streamed AND NOT e.continuable) OR (NOT e.streamed AND e.attempts >= \(maxAttempts)))
                RETURNING t.id, t.key_id, t.model, t.reserved_tokens, CASE WHEN e.streamed THEN t.prompt_tokens
                    + (SELECT greatest(sum(s.event_count) - 1, 0) FROM handoff_stream s WHERE s.task_id = t.id) ELSE 0 END AS charge
            ), \(unescaped: RateLimitLedger.clock), ended AS (
                SELECT key_id, model, reserved_tokens, charge FROM failed
            ), \(unescaped: RateLimitLedger.settlement), closed AS (
                INSERT INTO handoff_stream (task_id, seq, event_count, events, final)
                SELECT f.id, coalesce((SELECT max(s.seq) FROM handoff_stream s WHERE s.task_id = f.id), 0) + 1, 1,
                    \(error.json.text), true
                FROM failed f
                RETURNING task_id, seq, event_count, events, final
            )
            SELECT (SELECT count(*) FROM requeued), (SELECT count(*) FROM failed),
                (SELECT count(notified) FROM (\(unescaped: StreamAppendPayload.notify(from: "closed"))) announced),
                (SELECT count(pg_notify(\(NotifyChannel.taskQueued), '')) FROM requeued)
            """, timeout: timeout, logger: logger)
        for (requeued, failed, _, _) in try rows.decode((Int, Int, Int, Int).self) {
            return Rescue(requeued: requeued, failed: failed)
        }
        return Rescue(requeued: 0, failed: 0)
    }
}
