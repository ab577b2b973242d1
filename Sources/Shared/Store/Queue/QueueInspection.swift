import Foundation
import HandoffWire
import Logging
import PostgresNIO

/// What an operator asks of the queue (`handoff-api tasks …`, `handoff-api queue stats`): read-only views of the
/// task table, each one statement.
extension TaskQueue {
    /// One task as an operator sees it: never its request's content (that is the user's), only its shape.
    package struct TaskSummary: Sendable {
        package var id: UUID
        package var status: TaskStatus
        package var api: String
        package var model: String
        package var keyName: String?
        package var createdAt: Date
        package var startedAt: Date?
        package var finishedAt: Date?
        package var workerID: String?
        package var attempts: Int
        package var cancelRequested: Bool
        /// `usage` and `error` as recorded, JSON.
        package var usage: String?
        package var error: String?
        /// The stream's newest sequence number (0 before the first batch).
        package var head: Int
    }

    /// The newest `limit` tasks, optionally of one status.
    package func tasks(status: TaskStatus?, limit: Int) async throws -> [TaskSummary] {
        try await summaries(
            "WHERE \(status?.rawValue ?? "")::text = '' OR t.status = \(status?.rawValue ?? "") ORDER BY t.created_at DESC LIMIT \(limit)"
        )
    }

    /// The task `id`, or `nil`.
    package func task(_ id: UUID) async throws -> TaskSummary? {
        try await summaries("WHERE t.id = \(id)").first
    }

    private func summaries(_ filter: PostgresQuery) async throws -> [TaskSummary] {
        let query = PostgresQuery(
            unsafeSQL: """
                SELECT t.id, t.status, CASE WHEN t.response IS NULL THEN 'chat' ELSE 'responses' END, t.model, k.name,
                    t.created_at, t.started_at, t.finished_at, t.worker_id, t.attempts, t.cancel_requested_at IS NOT NULL,
                    t.usage::text, t.error::text, coalesce((SELECT max(s.seq) FROM handoff_stream s WHERE s.task_id = t.id), 0)
                FROM handoff_tasks t LEFT JOIN handoff_api_keys k ON k.id = t.key_id
                """ + " " + filter.sql, binds: filter.binds)
        var tasks: [TaskSummary] = []
        for (id, status, api, model, key, created, started, finished, worker, attempts, cancelled, usage, error, head)
            in try await client
            .perform(query, timeout: timeout, logger: logger)
            .decode(
                (UUID, String, String, String, String?, Date, Date?, Date?, String?, Int, Bool, String?, String?, Int)
                    .self)
        {
            tasks.append(
                TaskSummary(
                    id: id, status: TaskStatus(rawValue: status) ?? .failed, api: api, model: model, keyName: key,
                    createdAt: created,
                    startedAt: started, finishedAt: finished, workerID: worker, attempts: attempts,
                    cancelRequested: cancelled,
                    usage: usage, error: error, head: head))
        }
        return tasks
    }

    package struct QueueStats: Sendable {
        package var queued: Int
        /// Age of the oldest queued task, in seconds (0 with none queued).
        package var oldestQueuedSeconds: Double
        /// Running tasks by the worker holding them.
        package var runningByWorker: [(worker: String, tasks: Int)]
        /// Running tasks whose lease has expired: the rescue will take them back.
        package var expiredLeases: Int
        /// Tasks that ended within the window, by outcome.
        package var recentOutcomes: [(status: String, tasks: Int)]
    }

    /// Queued tasks, and the age of the oldest in seconds: one row of `'queued', count, age`.
    private static let depthSQL = """
        SELECT 'queued', count(*)::bigint, coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8
            FROM handoff_tasks WHERE status = 'queued'
        """

    /// Queued tasks and the age of the oldest (0 with none): what each worker samples for its metrics.
    package func depth() async throws -> (queued: Int, oldestSeconds: Double) {
        let rows = try await client.perform(PostgresQuery(unsafeSQL: Self.depthSQL), timeout: timeout, logger: logger)
        for (_, queued, age) in try rows.decode((String, Int, Double).self) {
            return (queued, age)
        }
        return (0, 0)
    }

    /// The queue now, and the outcomes of the last `window`.
    package func stats(window: Duration) async throws -> QueueStats {
        let seconds = Int(window.components.seconds)
        let rows = try await client.perform(
            """
            \(unescaped: Self.depthSQL)
            UNION ALL
            SELECT 'expired', count(*)::bigint, 0 FROM handoff_tasks WHERE status = 'running' AND lease_expires_at < now()
            UNION ALL
            SELECT 'running:' || coalesce(worker_id, '?'), count(*)::bigint, 0 FROM handoff_tasks WHERE status = 'running' GROUP BY worker_id
            UNION ALL
            SELECT 'ended:' || status, count(*)::bigint, 0 FROM handoff_tasks
                WHERE finished_at > now() - \(seconds) * interval '1 second' GROUP BY status
            """, timeout: timeout, logger: logger)
        var stats = QueueStats(
            queued: 0, oldestQueuedSeconds: 0, runningByWorker: [], expiredLeases: 0, recentOutcomes: [])
        for (kind, count, age) in try rows.decode((String, Int, Double).self) {
            if kind == "queued" {
                (stats.queued, stats.oldestQueuedSeconds) = (count, age)
            } else if kind == "expired" {
                stats.expiredLeases = count
            } else if kind.hasPrefix("running:") {
                stats.runningByWorker.append((String(kind.dropFirst("running:".count)), count))
            } else if kind.hasPrefix("ended:") {
                stats.recentOutcomes.append((String(kind.dropFirst("ended:".count)), count))
            }
        }
        stats.runningByWorker.sort { $0.worker < $1.worker }
        stats.recentOutcomes.sort { $0.status < $1.status }
        return stats
    }
}
