import Foundation
import Logging
import PostgresNIO

/// `Idempotency-Key`: an SDK that retries a POST after a 5xx, a 429 or a lost connection must get the task of its
/// first attempt back, not a second generation.
extension TaskQueue {
    public enum IdempotentEnqueue: Sendable, Equatable {
        /// The key was new (or its window had passed): the task was queued.
        case queued
        /// A retry: the key already names this task, for the same request.
        case existing(UUID)
        /// The key already names a task for a different request.
        case keyReused
    }

    /// Queues `request` as task `id` unless `scope` (the caller and its key) already names a task younger than
    /// `window`. One statement: the key's row, the task and the workers' NOTIFY commit together or not at all.
    public func enqueue(
        id: UUID, request: ChatCompletionRequest, body: String, scope: String, window: Duration
    ) async throws -> IdempotentEnqueue {
        // A concurrent first attempt may commit after this statement's snapshot: its row is then invisible to the
        // final SELECT, so look again once.
        for _ in 0..<2 {
            // What tells a retry from a reuse of the key (request_hash): the whole body, every field (an upstream
            // model gets fields Handoff does not read), hashed as jsonb prints it, so spacing and key order do not count.
            let rows = try await client.perform(
                """
                WITH body AS (
                    SELECT \(body)::jsonb AS request, encode(sha256(convert_to(\(body)::jsonb::text, 'UTF8')), 'hex') AS hash
                ), claimed AS (
                    INSERT INTO handoff_idempotency (scope, task_id, request_hash) SELECT \(scope), \(id), hash FROM body
                    ON CONFLICT (scope) DO UPDATE SET task_id = excluded.task_id, request_hash = excluded.request_hash,
                        created_at = now()
                    WHERE handoff_idempotency.created_at < now() - \(Int(window.components.seconds)) * interval '1 second'
                    RETURNING task_id
                ), queued AS (
                    INSERT INTO handoff_tasks (id, model, request)
                    SELECT \(id), \(request.model), body.request FROM claimed, body
                    RETURNING 1
                )
                SELECT task_id, true, true, (SELECT count(pg_notify(\(NotifyChannel.taskQueued), '')) FROM queued)
                FROM claimed
                UNION ALL
                SELECT task_id, request_hash = (SELECT hash FROM body), false, 0 FROM handoff_idempotency
                WHERE scope = \(scope) AND NOT EXISTS (SELECT 1 FROM claimed)
                """, timeout: timeout, logger: logger)
            for (task, sameRequest, fresh, _) in try rows.decode((UUID, Bool, Bool, Int).self) {
                if fresh { return .queued }
                return sameRequest ? .existing(task) : .keyReused
            }
        }
        throw IdempotencyRace()
    }
}

struct IdempotencyRace: Error, CustomStringConvertible {
    var description: String { "an Idempotency-Key's row was neither inserted nor found twice in a row" }
}
