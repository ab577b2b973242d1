import Foundation
import HandoffWire
import Logging
import PostgresNIO

/// `Idempotency-Key`: an SDK that retries a POST after a 5xx, a 429 or a lost connection must get the task of its
/// first attempt back, not a second generation.
extension TaskQueue {
    package enum IdempotentEnqueue: Sendable, Equatable {
        /// The key was new (or its window had passed), and admission let the task in: it was queued.
        case queued
        /// A retry: the key already names this task, for the same request (admitted then; not counted again).
        case existing(UUID)
        /// The key already names a task for a different request.
        case keyReused
        /// The key was new, and admission refused the task (`Admission.verdict` says why).
        case refused
    }

    /// Queues `submission` unless `scope` (the caller and its key) already names a task younger than `window`. One
    /// statement: admission, the key's row, the task and the workers' NOTIFY commit together or not at all. An
    /// invalid API key is refused before anything else.
    package func enqueue(
        _ submission: TaskSubmission, scope: String, window: Duration
    ) async throws -> (outcome: IdempotentEnqueue, admission: Admission) {
        let window = Int(window.components.seconds)
        // A concurrent first attempt may commit after this statement's snapshot: its row is then invisible to
        // `prior`, and the insert finds it taken, so look again once.
        for _ in 0..<2 {
            // What tells a retry from a reuse of the key (request_hash): the whole body, every field (an upstream
            // model gets fields Handoff does not read), hashed as jsonb prints it, so spacing and key order do not count.
            let rows = try await client.perform(
                """
                WITH \(unescaped: RateLimitLedger.clock), requests AS (
                    SELECT \(submission.id)::uuid AS id, \(submission.request.model)::text AS model, \(submission.body)::text AS body,
                        \(submission.caller)::text AS digest, \(submission.estimate)::bigint AS estimate,
                        \(submission.promptTokens)::int AS prompt_tokens, \(submission.request.tokenLimit ?? 0)::int AS max_tokens,
                        \(submission.tokenCap ?? 0)::int AS cap, \(submission.response ?? "")::text AS response,
                        \(maxQueued)::int AS max_queued, 1::bigint AS ord
                ), \(unescaped: RateLimitLedger.admission), body AS (
                    SELECT encode(sha256(convert_to(\(submission.body)::jsonb::text, 'UTF8')), 'hex') AS hash
                ), prior AS (
                    SELECT task_id, request_hash FROM handoff_idempotency
                    WHERE scope = \(scope) AND created_at >= now() - \(window) * interval '1 second'
                ), claimed AS (
                    INSERT INTO handoff_idempotency (scope, task_id, request_hash)
                    SELECT \(scope), \(submission.id), hash FROM body, decided
                    WHERE decided.verdict = 'admitted' AND NOT EXISTS (SELECT 1 FROM prior)
                    ON CONFLICT (scope) DO UPDATE SET task_id = excluded.task_id, request_hash = excluded.request_hash,
                        created_at = now()
                    WHERE handoff_idempotency.created_at < now() - \(window) * interval '1 second'
                    RETURNING task_id
                ), queued AS (
                    INSERT INTO handoff_tasks (id, model, request, key_id, reserved_tokens, prompt_tokens, response, max_tokens)
                    SELECT d.id, d.model, d.body::jsonb, d.key_id, d.reservation, d.prompt_tokens, nullif(d.response, '')::jsonb,
                        d.token_cap
                    FROM decided d, claimed
                    RETURNING id, key_id, model, reserved_tokens
                ), \(unescaped: RateLimitLedger.reservation), notified AS (
                    SELECT count(pg_notify(\(NotifyChannel.taskQueued), '')) AS workers FROM queued
                )
                SELECT \(unescaped: RateLimitLedger.standingColumns), notified.workers,
                    (SELECT task_id FROM claimed), (SELECT task_id FROM prior), (SELECT request_hash = body.hash FROM prior, body)
                FROM \(unescaped: RateLimitLedger.standingSource) CROSS JOIN notified
                """, timeout: timeout, logger: logger)
            let access = rows.map { $0.makeRandomAccess() }
            let admission = try Admission.assemble(access.map(AdmissionRow.init), count: 1)[0]
            guard let first = access.first else { continue }
            let claimed = try first[AdmissionRow.columns + 1].decode(UUID?.self)
            let prior = try first[AdmissionRow.columns + 2].decode(UUID?.self)
            let sameRequest = try first[AdmissionRow.columns + 3].decode(Bool?.self)
            if admission.verdict == .invalidAPIKey { return (.refused, admission) }
            if let prior { return (sameRequest == true ? .existing(prior) : .keyReused, admission) }
            if claimed != nil { return (.queued, admission) }
            if admission.verdict != .admitted { return (.refused, admission) }
        }
        throw IdempotencyRace()
    }
}

struct IdempotencyRace: Error, CustomStringConvertible {
    var description: String { "an Idempotency-Key's row was neither inserted nor found twice in a row" }
}
