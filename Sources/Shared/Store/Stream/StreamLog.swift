import Foundation
import HandoffWire
import Logging
import PostgresNIO

/// The minibatch stream table: the worker appends, SSE servers tail.
package struct StreamLog: Sendable {
    let client: PostgresClient
    /// Every statement's deadline (`HANDOFF_DB_TIMEOUT_MS` in the servers).
    let timeout: Duration
    let logger: Logger

    package init(client: PostgresClient, timeout: Duration = .seconds(5), logger: Logger) {
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
    ///
    /// A flush first inserts without looking for its rows: only a retry, or a run continuing a task another worker
    /// was still flushing for, can find one written. A collision fails the whole statement, which then runs
    /// again skipping what is there (`skippingWritten`). Looking first cost every row a primary-key probe: a third
    /// of the statement's buffer reads (1,089 of 3,636 for a flush of 363 rows, auto_explain).
    package func append(_ batches: [StreamBatch], outcomes: [TaskOutcome], workerID: String) async throws {
        guard !batches.isEmpty || !outcomes.isEmpty else { return }
        // Prepared, so each connection parses it once (0.4–0.6 ms a flush in the server's log), but it must be
        // planned for every flush: a generic plan, made from a young table's statistics and then kept, probed each
        // batch's task through the partial index of running tasks (measured: 169 ms for 1,000 batches, against
        // 3 ms planned for the real arrays). The worker's writer pool forces custom plans for that.
        let query = Self.appendQuery(batches, outcomes: outcomes, workerID: workerID, skippingWritten: false)
        do {
            if outcomes.isEmpty {
                try await client.perform(FlushStatement(query: query), timeout: timeout, logger: logger)
            } else {
                try await client.perform(SettlingFlushStatement(query: query), timeout: timeout, logger: logger)
            }
        } catch let error as PSQLError where error.meansDuplicateKey {
            try await client.perform(
                Self.appendQuery(batches, outcomes: outcomes, workerID: workerID, skippingWritten: true),
                timeout: timeout, logger: logger)
        }
    }

    /// The batches at exactly these keys — the rows a NOTIFY named — in one primary-key lookup, so a process
    /// serving many streams reads each new batch once instead of once per client.
    package func batches(at keys: [(task: UUID, sequence: Int)]) async throws -> [StreamBatch] {
        guard !keys.isEmpty else { return [] }
        var batches: [StreamBatch] = []
        let rows = try await client.perform(
            BatchesStatement(query: Self.batchesQuery(at: keys)), timeout: timeout, logger: logger)
        for (task, sequence, events, final, committed) in try rows.decode((UUID, Int, String, Bool, Int64).self) {
            batches.append(
                StreamBatch(
                    task: task, sequence: sequence, encodedEvents: events, final: final,
                    committedAtMicroseconds: committed))
        }
        return batches
    }

    /// Every event of `task`'s stream so far, in order, each once (rows of different runs may overlap): what an
    /// earlier run streamed, for the run that continues its answer.
    package func events(of task: UUID) async throws -> [String] {
        let rows = try await client.perform(
            "SELECT seq, events FROM handoff_stream WHERE task_id = \(task) ORDER BY seq", timeout: timeout,
            logger: logger)
        var events: [String] = []
        var cursor = StreamCursor.start
        for (sequence, encoded) in try rows.decode((Int, String).self) {
            let batch = StreamBatch(
                task: task, sequence: sequence, encodedEvents: encoded, final: false, committedAtMicroseconds: 0)
            for event in batch.events(after: cursor) {
                events.append(event.data)
                cursor = event.cursor
            }
        }
        return events
    }

    /// Where each of several streams stands, in one statement: its batches after its cursor (at most `pageSize`,
    /// and always the final batch once there is one, so a client at or past the end learns that the stream is
    /// over), whether its task exists — and, for a stream being opened, the task's head and whether its client
    /// asked for a stream. An SSE server opens every stream and catches up every lagging client through this, so a
    /// burst of them costs one round trip, not one each. The per-task values are computed once per stream (a
    /// lateral join), not once per batch row, and only for openings: a lagging client under load must not pay for
    /// them again on every catch-up.
    package func catchUp(
        _ streams: [(task: UUID, cursor: StreamCursor, opening: Bool)], pageSize: Int
    ) async throws -> [StreamCatchUp] {
        guard !streams.isEmpty else { return [] }
        var results = Array(
            repeating: StreamCatchUp(exists: false, streaming: true, head: 0, batches: []), count: streams.count)
        let rows = try await client.perform(
            CatchUpStatement(query: Self.catchUpQuery(streams, pageSize: pageSize)), timeout: timeout, logger: logger)
        for (
            ordinal, exists, streaming, head, response, created, lapsed, model, includeUsage, task, sequence, events,
            final, committed
        )
            in try rows.decode(
                (
                    Int, Bool, Bool?, Int?, String?, Int64?, Bool, String?, Bool?, UUID?, Int?, String?, Bool?, Int64?
                ).self)
        {
            results[ordinal - 1].ownerLapsed = lapsed
            results[ordinal - 1].model = model ?? ""
            results[ordinal - 1].includeUsage = ChatCompletionRequest.includesUsage(
                streamOptionsIncludeUsage: includeUsage, stream: streaming)
            results[ordinal - 1].exists = exists
            results[ordinal - 1].streaming = streaming ?? true
            results[ordinal - 1].head = head ?? 0
            results[ordinal - 1].response = response
            results[ordinal - 1].created = created ?? 0
            if let task, let sequence, let events, let final, let committed {
                results[ordinal - 1].batches.append(
                    StreamBatch(
                        task: task, sequence: sequence, encodedEvents: events, final: final,
                        committedAtMicroseconds: committed))
            }
        }
        return results
    }

    /// How stale a watched task's `watched_at` may get: replicas refresh it no more often, to bound the writes.
    /// Whoever judges abandonment must allow for it.
    package static let watchRefresh = Duration.seconds(5)

    /// The newest sequence number of each of `tasks` that has any rows; one statement for all of them, one index
    /// probe per task (a `max` over all their rows would read every row of every stream each time). The SSE
    /// servers ask this about the tasks their clients watch, so the same statement records that they are watched
    /// (`watched_at`, at most every `watchRefresh` per task): a running task nobody watches is cancelled as abandoned.
    /// It also names the tasks whose key has been revoked or has expired: their open streams end.
    package func heads(ofWatched tasks: [UUID]) async throws -> (heads: [UUID: Int], lapsed: Set<UUID>) {
        guard !tasks.isEmpty else { return ([:], []) }
        let rows = try await client.perform(
            HeadsStatement(query: Self.headsQuery(ofWatched: tasks)), timeout: timeout, logger: logger)
        var heads: [UUID: Int] = [:]
        var lapsed: Set<UUID> = []
        for (task, sequence, ownerLapsed) in try rows.decode((UUID, Int?, Bool).self) {
            heads[task] = sequence
            if ownerLapsed { lapsed.insert(task) }
        }
        return (heads, lapsed)
    }
}
