/// The database schema, as an append-only list of versioned migrations. Never edit a released migration:
/// add the next version.
package enum Migrations {
    package struct Migration: Sendable {
        package let version: Int
        package let name: String
        /// One statement each: the extended query protocol runs one statement per query.
        package let statements: [String]
    }

    package static let all: [Migration] = [
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
                """
            ]),
        Migration(
            version: 4, name: "api keys and rate limits",
            statements: [
                // Only a key's SHA-256 digest is stored: the key is shown once, at creation. hint ("hk-…abcd") lets
                // an operator tell keys apart. max_tokens caps a request's max_tokens for this key.
                """
                CREATE TABLE handoff_api_keys (
                    id          uuid PRIMARY KEY,
                    name        text NOT NULL,
                    digest      text NOT NULL UNIQUE,
                    hint        text NOT NULL,
                    max_tokens  integer CHECK (max_tokens > 0),
                    created_at  timestamptz NOT NULL DEFAULT now(),
                    expires_at  timestamptz,
                    revoked_at  timestamptz
                )
                """,
                // One row per key and scope (model '' is the whole key; a model's row counts only that model, on
                // top). It holds the limits and the counters they are checked against: fixed UTC windows (the
                // window's start and what was charged in it) and the tokens reserved by the key's open tasks.
                // Every admission and every settlement locks the rows it touches, in (key_id, model) order.
                """
                CREATE TABLE handoff_rate_limits (
                    key_id              uuid NOT NULL REFERENCES handoff_api_keys (id) ON DELETE CASCADE,
                    model               text NOT NULL,
                    requests_per_minute integer CHECK (requests_per_minute > 0),
                    tokens_per_minute   bigint CHECK (tokens_per_minute > 0),
                    tokens_per_day      bigint CHECK (tokens_per_day > 0),
                    minute_start        timestamp NOT NULL DEFAULT '-infinity',
                    minute_requests     integer NOT NULL DEFAULT 0,
                    minute_tokens       bigint NOT NULL DEFAULT 0,
                    day_start           timestamp NOT NULL DEFAULT '-infinity',
                    day_tokens          bigint NOT NULL DEFAULT 0,
                    reserved_tokens     bigint NOT NULL DEFAULT 0,
                    PRIMARY KEY (key_id, model)
                )
                """,
                // key_id: the task's owner (NULL with auth off). reserved_tokens: what its admission reserved, held
                // while the task is queued or running. prompt_tokens: the admission's prompt estimate, charged with
                // the streamed events when the worker is lost and no usage was recorded.
                """
                ALTER TABLE handoff_tasks ADD COLUMN key_id uuid REFERENCES handoff_api_keys (id),
                    ADD COLUMN reserved_tokens bigint NOT NULL DEFAULT 0, ADD COLUMN prompt_tokens integer NOT NULL DEFAULT 0
                """,
                "CREATE INDEX handoff_tasks_key ON handoff_tasks (key_id) WHERE key_id IS NOT NULL",
            ]),
        Migration(
            version: 5, name: "responses",
            statements: [
                // A Responses API task: what its Response object echoes (ResponseSettings). NULL for a chat completion.
                "ALTER TABLE handoff_tasks ADD COLUMN response jsonb"
            ]),
        Migration(
            version: 6, name: "load caps",
            statements: [
                // max_tokens: the reply's effective cap, decided at admission (the request's own, else the smallest of
                // the key's, the model's and HANDOFF_MAX_TOKENS_LIMIT): what the worker tells an upstream. NULL on
                // tasks queued before this migration.
                "ALTER TABLE handoff_tasks ADD COLUMN max_tokens integer CHECK (max_tokens > 0)",
                "ALTER TABLE handoff_api_keys ADD COLUMN max_concurrent_tasks integer CHECK (max_concurrent_tasks > 0)",
                "CREATE INDEX handoff_tasks_active_by_key ON handoff_tasks (key_id) WHERE status IN ('queued', 'running')",
                // The load caps count what is queued or running after the enqueue's locks are held: a VOLATILE
                // function takes a fresh snapshot for each query it runs (READ COMMITTED), where the statement's own
                // snapshot was taken before it waited for the locks and would miss tasks committed meanwhile.
                """
                CREATE FUNCTION handoff_active_tasks(owner uuid) RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
                BEGIN
                    RETURN (SELECT count(*) FROM handoff_tasks WHERE key_id = owner AND status IN ('queued', 'running'));
                END $$
                """,
                // With a cap (> 0), every enqueue takes one transaction-scoped advisory lock first, so concurrent
                // enqueues from any number of API replicas count the queue one after another; 0 means no cap.
                """
                CREATE FUNCTION handoff_queued_tasks(cap integer) RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
                BEGIN
                    IF cap <= 0 THEN RETURN 0; END IF;
                    PERFORM pg_advisory_xact_lock(7305424061447386449);
                    RETURN (SELECT count(*) FROM handoff_tasks WHERE status = 'queued');
                END $$
                """,
            ]),
        Migration(
            version: 7, name: "continuations",
            statements: [
                // How often the task's answer was continued after its worker was lost: the rescue requeues a task that
                // streamed content (its partial answer stays in handoff_stream) while this is below
                // HANDOFF_MAX_CONTINUATIONS, and the next worker continues the answer from it.
                "ALTER TABLE handoff_tasks ADD COLUMN continuations integer NOT NULL DEFAULT 0"
            ]),
        Migration(
            version: 8, name: "lease renewals in place",
            statements: [
                // Each running task's lease is renewed every third of a lease, and the replicas refresh watched_at
                // every 5 s. Renewals changed an indexed column (lease_expires_at), and both found no room on full
                // pages, so each wrote a new row version plus an entry in every index of the table. Indexing the
                // running tasks by id instead, and leaving a page room for new versions, makes both updates HOT
                // (heap-only: in place, no index entries). The rescue then reads every running task's lease: a few
                // thousand rows at most, once a second.
                "DROP INDEX handoff_tasks_leases",
                "CREATE INDEX handoff_tasks_running ON handoff_tasks (id) WHERE status = 'running'",
                "ALTER TABLE handoff_tasks SET (fillfactor = 70)",
            ]),
        Migration(
            version: 9, name: "stream rows without a foreign key",
            statements: [
                // The foreign key checked every stream row against its task by locking the task's row (FOR KEY
                // SHARE): a WAL record per row, about a fifth of a streamed token's WAL, and a query per row. The
                // flush already writes only for a task its worker holds running. Nothing deletes a task a flush may
                // still write for: the pruner takes finished ones and their stream rows together
                // (`TaskQueue.prune`), and deleting a running response hides it until it is pruned
                // (`TaskQueue.delete`).
                "ALTER TABLE handoff_stream DROP CONSTRAINT handoff_stream_task_id_fkey"
            ]),
    ]
}
