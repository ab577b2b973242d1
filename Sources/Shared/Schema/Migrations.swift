/// The database schema, as an append-only list of versioned migrations. Never edit a released migration:
/// add the next version.
public enum Migrations {
    public struct Migration: Sendable {
        public let version: Int
        public let name: String
        /// One statement each: the extended query protocol runs one statement per query.
        public let statements: [String]
    }

    public static let all: [Migration] = [
        Migration(
            version: 1, name: "tasks and minibatch stream",
            statements: [
                """
                CREATE TABLE handoff_tasks (
                    id               uuid PRIMARY KEY,
                    status           text NOT NULL DEFAULT 'queued'
                                     CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
                    model            text NOT NULL,
                    request          jsonb NOT NULL,
                    created_at       timestamptz NOT NULL DEFAULT now(),
                    updated_at       timestamptz NOT NULL DEFAULT now(),
                    started_at       timestamptz,
                    finished_at      timestamptz,
                    attempts         integer NOT NULL DEFAULT 0,
                    worker_id        text,
                    lease_expires_at timestamptz,
                    error            jsonb,
                    usage            jsonb
                )
                """,
                "CREATE INDEX handoff_tasks_queued ON handoff_tasks (created_at) WHERE status = 'queued'",
                "CREATE INDEX handoff_tasks_leases ON handoff_tasks (lease_expires_at) WHERE status = 'running'",
                // One row per minibatch. seq is the per-task sequence number of the batch's LAST event and
                // event_count how many it holds, so a batch covers events seq-event_count+1 ... seq. Both are
                // assigned inside the writing transaction by the task's single writer, the worker holding its
                // lease (StreamLog.append refuses rows from any other); a retried batch repeats its key and is
                // skipped. events is newline-delimited JSON, one event a line.
                """
                CREATE TABLE handoff_stream (
                    task_id     uuid NOT NULL REFERENCES handoff_tasks (id) ON DELETE CASCADE,
                    seq         integer NOT NULL CHECK (seq > 0),
                    event_count integer NOT NULL CHECK (event_count > 0 AND event_count <= seq),
                    events      text NOT NULL,
                    final       boolean NOT NULL DEFAULT false,
                    created_at  timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (task_id, seq)
                )
                """,
            ]),
        Migration(
            version: 2, name: "cancellation, abandonment and retention",
            statements: [
                // cancel_requested_at: an owner's cancel, or the worker's own verdict that nobody watches any more.
                // watched_at: refreshed by every SSE replica that has a client on the task (see StreamLog.heads).
                "ALTER TABLE handoff_tasks ADD COLUMN cancel_requested_at timestamptz, ADD COLUMN watched_at timestamptz",
                "CREATE INDEX handoff_tasks_finished ON handoff_tasks (finished_at) WHERE finished_at IS NOT NULL",
            ]),
        Migration(
            version: 3, name: "idempotency keys",
            statements: [
                // scope: a hash of the caller and its Idempotency-Key. request_hash tells a retry (same body) from a
                // reuse of the key for another request. Pruning a task frees its key.
                """
                CREATE TABLE handoff_idempotency (
                    scope        text PRIMARY KEY,
                    task_id      uuid NOT NULL REFERENCES handoff_tasks (id) ON DELETE CASCADE,
                    request_hash text NOT NULL,
                    created_at   timestamptz NOT NULL DEFAULT now()
                )
                """,
            ]),
    ]
}

/// The NOTIFY channels. Payloads carry ids only, never content: the tables are the source of truth.
public enum NotifyChannel {
    /// A task was queued. No payload: any woken worker claims whatever is queued.
    public static let taskQueued = "handoff_task_queued"
    /// Stream rows were committed. Payload: `StreamAppendPayload`.
    public static let streamAppended = "handoff_stream_appended"
    /// Somebody asked to cancel a task. Payload: the task's id; the worker running it stops.
    public static let taskCancelled = "handoff_task_cancelled"
}
