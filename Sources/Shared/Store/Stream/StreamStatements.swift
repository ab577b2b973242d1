import Foundation
import HandoffWire
import PostgresNIO

/// The stream table's statements: the flush, and the replicas' reads and poll, each prepared once per connection
/// (`PreparedQuery`).
extension StreamLog {
    struct BatchesStatement: PreparedQuery {
        static let sql = StreamLog.batchesQuery(at: []).sql
        let query: PostgresQuery
    }

    struct CatchUpStatement: PreparedQuery {
        static let sql = StreamLog.catchUpQuery([], pageSize: 0).sql
        let query: PostgresQuery
    }

    struct HeadsStatement: PreparedQuery {
        static let sql = StreamLog.headsQuery(ofWatched: []).sql
        let query: PostgresQuery
    }

    /// `append`'s statement for a flush that ends no task, and for one that does: prepared, but for the worker's
    /// writer planned afresh each time (`DatabaseSettings.makeWriterClient`).
    struct FlushStatement: PreparedQuery {
        static let sql = StreamLog.appendQuery([], outcomes: [], workerID: "", skippingWritten: false).sql
        let query: PostgresQuery
    }

    struct SettlingFlushStatement: PreparedQuery {
        static let sql = StreamLog.appendQuery(
            [], outcomes: [TaskOutcome(task: UUID(), status: .succeeded)], workerID: "", skippingWritten: false
        ).sql
        let query: PostgresQuery
    }

    /// `append`'s statement (its documentation says what it does). Only a flush that ends tasks pays for the
    /// settlement's CTEs.
    static func appendQuery(_ batches: [StreamBatch], outcomes: [TaskOutcome], workerID: String, skippingWritten: Bool)
        -> PostgresQuery
    {
        let usages = outcomes.map { $0.usage?.json.text ?? "" }
        let errors = outcomes.map { $0.error?.json.text ?? "" }
        let settlement =
            outcomes.isEmpty
            ? ""
            : """
            , \(RateLimitLedger.clock), ended AS (
                SELECT key_id, model, reserved_tokens, coalesce((usage->>'total_tokens')::bigint, 0) AS charge FROM finished
            ), \(RateLimitLedger.settlement)
            """
        return """
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
                \(unescaped: skippingWritten ? Self.skipWritten : "")
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
            """
    }

    /// A flush run again after colliding with rows already written skips them, waiting for those still being written
    /// (a continued task's previous worker may be mid-flush). The speculative insertion costs a WAL record (48 bytes)
    /// per row, paid only by these rare reruns.
    static let skipWritten = "ON CONFLICT (task_id, seq) DO NOTHING"

    static func batchesQuery(at keys: [(task: UUID, sequence: Int)]) -> PostgresQuery {
        """
        SELECT task_id, seq, events, final, (extract(epoch FROM created_at) * 1000000)::bigint FROM handoff_stream
        WHERE (task_id, seq) IN (SELECT * FROM unnest(\(keys.map(\.task))::uuid[], \(keys.map(\.sequence))::int[]))
        """
    }

    static func catchUpQuery(_ streams: [(task: UUID, cursor: StreamCursor, opening: Bool)], pageSize: Int)
        -> PostgresQuery
    {
        """
        SELECT r.ord::int, t.found IS NOT NULL, t.streaming, t.head, t.response, t.created, coalesce(t.lapsed, false),
            t.model, t.include_usage, s.task_id, s.seq, s.events, s.final,
            (extract(epoch FROM s.created_at) * 1000000)::bigint
        FROM unnest(\(streams.map(\.task))::uuid[], \(streams.map(\.cursor.sequence))::int[], \(streams.map(\.opening))::bool[])
            WITH ORDINALITY AS r (task, after, opening, ord)
        LEFT JOIN LATERAL (
            SELECT true AS found,
                CASE WHEN r.opening THEN coalesce((tasks.request->>'stream')::boolean, false) END AS streaming,
                CASE WHEN r.opening THEN (SELECT coalesce(max(h.seq), 0) FROM handoff_stream h WHERE h.task_id = r.task) END AS head,
                CASE WHEN r.opening THEN tasks.response::text END AS response,
                extract(epoch FROM tasks.created_at)::bigint AS created,
                CASE WHEN r.opening THEN \(unescaped: Self.ownerLapsed("tasks")) END AS lapsed,
                -- The header the stored events are rendered with (ChunkFrame).
                CASE WHEN r.opening THEN tasks.request->>'model' END AS model,
                CASE WHEN r.opening THEN (tasks.request->'stream_options'->>'include_usage')::boolean END AS include_usage
            FROM handoff_tasks tasks WHERE tasks.id = r.task
        ) t ON true
        LEFT JOIN LATERAL (
            SELECT * FROM handoff_stream s WHERE s.task_id = r.task AND (s.seq > r.after OR s.final)
            ORDER BY s.seq LIMIT \(pageSize)
        ) s ON true
        ORDER BY r.ord, s.seq
        """
    }

    static func headsQuery(ofWatched tasks: [UUID]) -> PostgresQuery {
        """
        WITH watched AS (
            UPDATE handoff_tasks SET watched_at = now()
            WHERE id = ANY(\(tasks)::uuid[]) AND status IN ('queued', 'running')
                AND (watched_at IS NULL OR watched_at < now() - \(Int(Self.watchRefresh.components.seconds)) * interval '1 second')
        )
        SELECT t.id, h.seq, coalesce(l.lapsed, false) FROM unnest(\(tasks)::uuid[]) AS t (id)
        LEFT JOIN LATERAL (SELECT seq FROM handoff_stream WHERE task_id = t.id ORDER BY seq DESC LIMIT 1) h ON true
        LEFT JOIN LATERAL (
            SELECT \(unescaped: Self.ownerLapsed("tasks")) AS lapsed FROM handoff_tasks tasks WHERE tasks.id = t.id
        ) l ON true
        WHERE h.seq IS NOT NULL OR l.lapsed
        """
    }

    /// Whether the key that created the task `row` names has been revoked or has expired: its streams stop.
    static func ownerLapsed(_ row: String) -> String {
        """
        EXISTS (SELECT 1 FROM handoff_api_keys k WHERE k.id = \(row).key_id
            AND (k.revoked_at IS NOT NULL OR k.expires_at <= now()))
        """
    }
}
