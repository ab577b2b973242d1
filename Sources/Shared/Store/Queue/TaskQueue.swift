import Foundation
import HandoffWire
import Logging
import PostgresNIO

/// The producer and claimer side of the task table.
///
/// `enqueue` inserts and notifies in one statement (so one transaction); `claim` hands each queued task to
/// exactly one worker through `FOR UPDATE SKIP LOCKED`.
package struct TaskQueue: Sendable {
    let client: PostgresClient
    /// Every statement's deadline (`HANDOFF_DB_TIMEOUT_MS` in the servers).
    let timeout: Duration
    let logger: Logger
    /// `HANDOFF_MAX_QUEUED`: admission refuses a task that would make more than this many queued; 0 for no cap.
    let maxQueued: Int

    package init(client: PostgresClient, timeout: Duration = .seconds(5), maxQueued: Int = 0, logger: Logger) {
        self.client = client
        self.timeout = timeout
        self.maxQueued = maxQueued
        self.logger = logger
    }

    /// Returns once Postgres answers a trivial query: whether it is reachable, for a loop that waits for it.
    package func ping() async throws {
        try await client.perform("SELECT 1", timeout: timeout, logger: logger)
    }

    /// Queues a request built in code (not received from a client), with no owner.
    package func enqueue(id: UUID, request: ChatCompletionRequest) async throws {
        _ = try await enqueue([try TaskSubmission(id: id, request: request)])
    }

    /// Admits and inserts every submission in one statement, with a single wake-up NOTIFY: the API group-commits
    /// its requests, because NOTIFY serialises commits database-wide. Admission (`RateLimitLedger`) checks each
    /// presented key and its limits and reserves the admitted tasks' tokens in the same transaction, so the
    /// hand-off pays no extra round trip for it. `body` is the client's JSON as sent: an upstream model gets every
    /// field of it, including those Handoff does not read (`tools`, `response_format`, ...).
    ///
    /// The statement inserts nothing once its deadline has passed (`EnqueueMissedDeadline`): the caller has told
    /// its clients 503 by then, and a task made anyway would run for nobody. A statement held up before it ran (a
    /// connection still opening to a new primary) did exactly that in the HA test. The deadline is this queue's
    /// `timeout` less `clockAllowance`, for the two hosts' clocks.
    package func enqueue(_ submissions: [TaskSubmission]) async throws -> [Admission] {
        let allowance = min(Self.clockAllowance, timeout / 4)
        return try await enqueue(
            submissions, before: Date.now.addingTimeInterval(Double((timeout - allowance).wholeMilliseconds) / 1000))
    }

    /// How far the API's and Postgres's clocks may disagree (NTP keeps them within milliseconds).
    static let clockAllowance = Duration.milliseconds(250)

    /// `enqueue`, refused by Postgres once its clock has passed `deadline`.
    package func enqueue(_ submissions: [TaskSubmission], before deadline: Date) async throws -> [Admission] {
        guard !submissions.isEmpty else { return [] }
        let rows = try await client.perform(
            EnqueueStatement(query: Self.enqueueQuery(submissions, maxQueued: maxQueued, before: deadline)),
            timeout: timeout, logger: logger)
        // Every request gets a row unless the deadline had passed, which empties the whole batch at once.
        guard !rows.isEmpty else { throw EnqueueMissedDeadline() }
        return try Admission.assemble(rows.map { try AdmissionRow($0.makeRandomAccess()) }, count: submissions.count)
    }

    struct EnqueueStatement: PreparedQuery {
        static let sql = TaskQueue.enqueueQuery([], maxQueued: 0, before: Date()).sql
        let query: PostgresQuery
    }

    /// `before` is checked once for the whole batch (an uncorrelated subquery), so a batch is queued whole or not at all.
    static func enqueueQuery(_ submissions: [TaskSubmission], maxQueued: Int, before deadline: Date) -> PostgresQuery {
        """
        WITH \(unescaped: RateLimitLedger.clock), requests AS (
            SELECT r.*, \(maxQueued)::int AS max_queued FROM unnest(\(submissions.map(\.id))::uuid[],
                \(submissions.map(\.request.model))::text[], \(submissions.map(\.body))::text[], \(submissions.map(\.caller))::text[],
                \(submissions.map(\.estimate))::bigint[], \(submissions.map(\.promptTokens))::int[],
                \(submissions.map { $0.request.tokenLimit ?? 0 })::int[], \(submissions.map { $0.tokenCap ?? 0 })::int[],
                \(submissions.map { $0.response ?? "" })::text[])
                WITH ORDINALITY AS r (id, model, body, digest, estimate, prompt_tokens, max_tokens, cap, response, ord)
            WHERE (SELECT clock_timestamp() < \(deadline)::timestamptz)
        ), \(unescaped: RateLimitLedger.admission), queued AS (
            INSERT INTO handoff_tasks (id, model, request, key_id, reserved_tokens, prompt_tokens, response, max_tokens)
            SELECT id, model, body::jsonb, key_id, reservation, prompt_tokens, nullif(response, '')::jsonb, token_cap
            FROM decided WHERE verdict = 'admitted'
            RETURNING id, key_id, model, reserved_tokens
        ), \(unescaped: RateLimitLedger.reservation), notified AS (
            SELECT count(pg_notify(\(NotifyChannel.taskQueued), '')) AS workers FROM (SELECT 1 FROM queued LIMIT 1) q
        )
        SELECT \(unescaped: RateLimitLedger.standingColumns), notified.workers
        FROM \(unescaped: RateLimitLedger.standingSource) CROSS JOIN notified
        """
    }

    /// Claims up to `limit` queued tasks, oldest first (and returned in that order), for `workerID` with a lease of `lease`.
    ///
    /// `running`: the tasks this worker still runs. One of them can be queued again when its lease ran out during an
    /// outage and a rescuer (this worker's own, often) requeued it; claimed here while its first run goes on, two runs
    /// of one worker would write one stream, both passing the write guard. It stays queued until its next renewal
    /// tells that run it lost the task, and is claimed after that (or by another worker at once).
    package func claim(workerID: String, limit: Int, lease: Duration, except running: [UUID] = []) async throws
        -> [ClaimedTask]
    {
        guard limit > 0 else { return [] }
        let rows = try await client.perform(
            ClaimStatement(
                query: Self.claimQuery(workerID: workerID, limit: limit, lease: lease, except: running)),
            timeout: timeout, logger: logger)
        var claimed: [ClaimedTask] = []
        for (id, json, attempt, created, cancelled, queuedMicroseconds, tokenCap, head, continuations)
            in try rows.decode(
                (UUID, String, Int, Int64, Bool, Int64, Int?, Int, Int).self)
        {
            let request = try JSONDecoder().decode(ChatCompletionRequest.self, from: Data(json.utf8))
            claimed.append(
                ClaimedTask(
                    id: id, request: request, body: json, attempt: attempt, created: created,
                    cancelRequested: cancelled,
                    queuedFor: .microseconds(queuedMicroseconds), tokenCap: tokenCap, streamedHead: head,
                    continuations: continuations))
        }
        return claimed
    }

    struct ClaimStatement: PreparedQuery {
        static let sql = TaskQueue.claimQuery(workerID: "", limit: 0, lease: .zero, except: []).sql
        let query: PostgresQuery
    }

    static func claimQuery(workerID: String, limit: Int, lease: Duration, except running: [UUID]) -> PostgresQuery {
        """
        WITH claimed AS (
            UPDATE handoff_tasks SET status = 'running', worker_id = \(workerID), attempts = attempts + 1,
                started_at = coalesce(started_at, now()), updated_at = now(),
                lease_expires_at = now() + \(Int(lease.components.seconds)) * interval '1 second'
            WHERE id IN (
                SELECT id FROM handoff_tasks WHERE status = 'queued' AND id <> ALL(\(running)::uuid[])
                ORDER BY created_at LIMIT \(limit)
                FOR UPDATE SKIP LOCKED
            )
            RETURNING id, request::text, attempts, created_at, cancel_requested_at IS NOT NULL AS cancelled, max_tokens,
                continuations
        )
        SELECT id, request, attempts, extract(epoch FROM created_at)::bigint, cancelled,
            (extract(epoch FROM clock_timestamp() - created_at) * 1000000)::bigint, max_tokens,
            -- Only a task run before has rows: what it streamed is where a continuation starts.
            CASE WHEN attempts > 1 THEN coalesce((SELECT max(s.seq) FROM handoff_stream s WHERE s.task_id = claimed.id), 0)
                ELSE 0 END,
            continuations
        FROM claimed ORDER BY created_at
        """
    }
}
