import Foundation
import Logging
import PostgresNIO

/// The minibatch stream table: the worker appends, SSE servers tail.
public struct StreamLog: Sendable {
    let client: PostgresClient
    /// Every statement's deadline (`HANDOFF_DB_TIMEOUT_MS` in the servers).
    let timeout: Duration
    let logger: Logger

    public init(client: PostgresClient, timeout: Duration = .seconds(5), logger: Logger) {
        self.client = client
        self.timeout = timeout
        self.logger = logger
    }

    /// Group commit: every batch of every task in one statement — so one transaction, whose NOTIFYs carry the
    /// events it inserted (`StreamAppendPayload`) —
    /// together with the outcomes of the tasks that end here, and their settlement: each keyed task is charged
    /// its usage's `total_tokens` (0 without usage: it failed before any token) and its reservation is released
    /// (`RateLimitLedger.settlement`). Batches and outcomes only apply to tasks `workerID` still holds: a worker
    /// whose lease was taken back cannot write into the task's new life, nor settle it twice.
    ///
    /// Retrying after an unknown outcome (the connection died during commit) is safe: a batch's events are
    /// positional, so a retried batch either collides on its key and is skipped, or covers a superset of the
    /// same positions with the same events, which readers filter by cursor; an outcome already recorded no
    /// longer finds its task running.
    public func append(_ batches: [StreamBatch], outcomes: [TaskOutcome], workerID: String) async throws {
        guard !batches.isEmpty || !outcomes.isEmpty else { return }
        let usages = outcomes.map { $0.usage?.json.text ?? "" }
        let errors = outcomes.map { $0.error?.json.text ?? "" }
        // Only a flush that ends tasks pays for the settlement's CTEs.
        let settlement = outcomes.isEmpty ? "" : """
            , \(RateLimitLedger.clock), ended AS (
                SELECT key_id, model, reserved_tokens, coalesce((usage->>'total_tokens')::bigint, 0) AS charge FROM finished
            ), \(RateLimitLedger.settlement)
            """
        try await client.perform(
            """
            WITH appended AS (
                INSERT INTO handoff_stream (task_id, seq, event_count, events, final)
                SELECT b.* FROM unnest(\(batches.map(\.task))::uuid[], \(batches.map(\.sequence))::int[],
                    \(batches.map(\.events.count))::int[], \(batches.map(\.encodedEvents))::text[],
                    \(batches.map(\.final))::bool[]) AS b (task_id, seq, event_count, events, final)
                -- One primary-key probe per batch (OFFSET 0 keeps it a nested loop): the planner, misjudging how
                -- many tasks a worker runs, would otherwise hash-join every running task of this worker.
                CROSS JOIN LATERAL (
                    SELECT FROM handoff_tasks t WHERE t.id = b.task_id AND t.worker_id = \(workerID) AND t.status = 'running' OFFSET 0
                ) held
                ON CONFLICT (task_id, seq) DO NOTHING
                RETURNING task_id, seq, event_count, events, final
            ), finished AS (
                UPDATE handoff_tasks t SET status = o.status, usage = nullif(o.usage, '')::jsonb,
                    error = nullif(o.error, '')::jsonb, finished_at = now(), updated_at = now(), lease_expires_at = NULL
                FROM unnest(\(outcomes.map(\.task))::uuid[], \(outcomes.map(\.status.rawValue))::text[],
                    \(usages)::text[], \(errors)::text[]) AS o (id, status, usage, error)
                WHERE t.id = o.id AND t.worker_id = \(workerID) AND t.status = 'running'
                RETURNING t.key_id, t.model, t.reserved_tokens, t.usage
            )\(unescaped: settlement)
            \(unescaped: StreamAppendPayload.notify(from: "appended"))
            """, timeout: timeout, logger: logger)
    }

    /// The batches at exactly these keys — the rows a NOTIFY named — in one primary-key lookup, so a process
    /// serving many streams reads each new batch once instead of once per client.
    public func batches(at keys: [(task: UUID, sequence: Int)]) async throws -> [StreamBatch] {
        guard !keys.isEmpty else { return [] }
        return try await batches(
            """
            SELECT \(unescaped: Self.batchColumns) FROM handoff_stream
            WHERE (task_id, seq) IN (SELECT * FROM unnest(\(keys.map(\.task))::uuid[], \(keys.map(\.sequence))::int[]))
            """)
    }

    /// Where each of several streams stands, in one statement: its batches after its cursor (at most `pageSize`,
    /// and always the final batch once there is one, so a client at or past the end learns that the stream is
    /// over), whether its task exists — and, for a stream being opened, the task's head and whether its client
    /// asked for a stream. An SSE server opens every stream and catches up every lagging client through this, so a
    /// burst of them costs one round trip, not one each. The per-task values are computed once per stream (a
    /// lateral join), not once per batch row, and only for openings: a lagging client under load must not pay for
    /// them again on every catch-up.
    public func catchUp(
        _ streams: [(task: UUID, cursor: StreamCursor, opening: Bool)], pageSize: Int
    ) async throws -> [StreamCatchUp] {
        guard !streams.isEmpty else { return [] }
        var results = Array(repeating: StreamCatchUp(exists: false, streaming: true, head: 0, batches: []), count: streams.count)
        let rows = try await client.perform(
            """
            SELECT r.ord::int, t.found IS NOT NULL, t.streaming, t.head, t.response, t.created,
                s.task_id, s.seq, s.events, s.final, (extract(epoch FROM s.created_at) * 1000000)::bigint
            FROM unnest(\(streams.map(\.task))::uuid[], \(streams.map(\.cursor.sequence))::int[], \(streams.map(\.opening))::bool[])
                WITH ORDINALITY AS r (task, after, opening, ord)
            LEFT JOIN LATERAL (
                SELECT true AS found,
                    CASE WHEN r.opening THEN coalesce((tasks.request->>'stream')::boolean, false) END AS streaming,
                    CASE WHEN r.opening THEN (SELECT coalesce(max(h.seq), 0) FROM handoff_stream h WHERE h.task_id = r.task) END AS head,
                    CASE WHEN r.opening THEN tasks.response::text END AS response,
                    extract(epoch FROM tasks.created_at)::bigint AS created
                FROM handoff_tasks tasks WHERE tasks.id = r.task
            ) t ON true
            LEFT JOIN LATERAL (
                SELECT * FROM handoff_stream s WHERE s.task_id = r.task AND (s.seq > r.after OR s.final)
                ORDER BY s.seq LIMIT \(pageSize)
            ) s ON true
            ORDER BY r.ord, s.seq
            """, timeout: timeout, logger: logger)
        for (ordinal, exists, streaming, head, response, created, task, sequence, events, final, committed) in try rows.decode(
            (Int, Bool, Bool?, Int?, String?, Int64?, UUID?, Int?, String?, Bool?, Int64?).self)
        {
            results[ordinal - 1].exists = exists
            results[ordinal - 1].streaming = streaming ?? true
            results[ordinal - 1].head = head ?? 0
            results[ordinal - 1].response = response
            results[ordinal - 1].created = created ?? 0
            if let task, let sequence, let events, let final, let committed {
                results[ordinal - 1].batches.append(
                    StreamBatch(task: task, sequence: sequence, encodedEvents: events, final: final, committedAtMicroseconds: committed))
            }
        }
        return results
    }

    private static let batchColumns = "task_id, seq, events, final, (extract(epoch FROM created_at) * 1000000)::bigint"

    private func batches(_ query: PostgresQuery) async throws -> [StreamBatch] {
        var batches: [StreamBatch] = []
        for (task, sequence, events, final, committed) in try await client.perform(query, timeout: timeout, logger: logger)
            .decode((UUID, Int, String, Bool, Int64).self) {
            batches.append(StreamBatch(task: task, sequence: sequence, encodedEvents: events, final: final, committedAtMicroseconds: committed))
        }
        return batches
    }

    /// How stale a watched task's `watched_at` may get: replicas refresh it no more often, to bound the writes.
    /// Whoever judges abandonment must allow for it.
    public static let watchRefresh = Duration.seconds(5)

    /// The newest sequence number of each of `tasks` that has any rows; one statement for all of them, one index
    /// probe per task (a `max` over all their rows would read every row of every stream each time). The SSE
    /// servers ask this about the tasks their clients watch, so the same statement records that they are watched
    /// (`watched_at`, at most every `watchRefresh` per task): a running task nobody watches is cancelled as abandoned.
    public func heads(ofWatched tasks: [UUID]) async throws -> [UUID: Int] {
        guard !tasks.isEmpty else { return [:] }
        let rows = try await client.perform(
            """
            WITH watched AS (
                UPDATE handoff_tasks SET watched_at = now()
                WHERE id = ANY(\(tasks)::uuid[]) AND status IN ('queued', 'running')
                    AND (watched_at IS NULL OR watched_at < now() - \(Int(Self.watchRefresh.components.seconds)) * interval '1 second')
            )
            SELECT t.id, h.seq FROM unnest(\(tasks)::uuid[]) AS t (id)
            CROSS JOIN LATERAL (SELECT seq FROM handoff_stream WHERE task_id = t.id ORDER BY seq DESC LIMIT 1) h
            """,
            timeout: timeout, logger: logger)
        var heads: [UUID: Int] = [:]
        for (task, sequence) in try rows.decode((UUID, Int).self) {
            heads[task] = sequence
        }
        return heads
    }
}
