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

    /// Deletes a task and its stream (a running one stops: its worker can no longer write); `false` when there was none.
    package func delete(_ id: UUID) async throws -> Bool {
        try await client.perform(
            "DELETE FROM handoff_tasks WHERE id = \(id) RETURNING id", timeout: timeout, logger: logger
        ).count > 0
    }
}
