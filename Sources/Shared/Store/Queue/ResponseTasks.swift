import Foundation
import HandoffWire
import Logging
import PostgresNIO

/// The Responses API's reads and writes of its tasks: the record that a retrieve, cancel or delete starts from,
/// and deletion.
extension TaskQueue {
    package struct ResponseRecord: Sendable {
        package var status: TaskStatus
        package var settings: ResponseSettings
        package var created: Int64
        /// The digest of the key that created it; `nil` for a keyless task.
        package var ownerDigest: String?
    }

    /// The Responses task `id`; `nil` when there is none (or it is a chat completion).
    package func responseRecord(_ id: UUID) async throws -> ResponseRecord? {
        let rows = try await client.perform(
            """
            SELECT t.status, t.response::text, extract(epoch FROM t.created_at)::bigint, k.digest
            FROM handoff_tasks t LEFT JOIN handoff_api_keys k ON k.id = t.key_id
            WHERE t.id = \(id) AND t.response IS NOT NULL
            """, timeout: timeout, logger: logger)
        for (status, settings, created, owner) in try rows.decode((String, String, Int64, String?).self) {
            guard let status = TaskStatus(rawValue: status) else { return nil }
            return ResponseRecord(
                status: status, settings: try ResponseSettings(stored: settings), created: created, ownerDigest: owner)
        }
        return nil
    }

    /// Deletes a Responses task and its stream; `false` when there was none.
    ///
    /// Its worker is told to stop first, as by its owner's cancel (`requestCancel`). A running one may still be
    /// flushing as this runs, and stream rows have no foreign key to stop it writing for a task that is gone. So a
    /// running task's row stays, hidden from the Responses API (`response` cleared): its worker ends it and settles
    /// what it used, and the pruner takes it later with any rows written meanwhile. A queued task has no writer (a
    /// claim would hold its row lock), nor has an ended one.
    package func delete(_ id: UUID) async throws -> Bool {
        _ = try await requestCancel(id)
        return try await client.perform(
            """
            WITH target AS (
                SELECT id, status FROM handoff_tasks WHERE id = \(id) AND response IS NOT NULL FOR UPDATE
            ), hidden AS (
                UPDATE handoff_tasks t SET response = NULL, updated_at = now()
                FROM target WHERE t.id = target.id AND target.status = 'running'
            ), removed AS (
                DELETE FROM handoff_tasks t USING target WHERE t.id = target.id AND target.status <> 'running'
            ), erased AS (
                DELETE FROM handoff_stream WHERE task_id = (SELECT id FROM target)
            )
            SELECT 1 FROM target
            """, timeout: timeout, logger: logger
        ).count > 0
    }
}
