import Foundation
import HandoffStore
import HandoffWire
import Logging
import PostgresNIO

/// When each stream row was committed, by Postgres's own clock (`track_commit_timestamp`, which `make bench` turns
/// on in its cluster). A batch's stamp only says when its transaction began; the statement and the commit lie
/// between that and the moment a reader could first see the batch.
struct CommitTimes: Sendable {
    private var rows: [UUID: [(first: Int, last: Int, committed: Int64)]] = [:]

    /// The commit times of every row of `tasks`, read once, after the streams ended.
    static func load(databaseURL: String, tasks: [UUID]) async throws -> CommitTimes {
        let database = try DatabaseSettings(
            settings: Settings(environment: [ConfigKey.databaseURL.rawValue: databaseURL]))
        let logger = Logger(label: "handoff-bench")
        let connection = try await PostgresConnection.connect(
            configuration: database.connectionConfiguration(applicationName: "handoff-bench"), id: 0, logger: logger)
        var times = CommitTimes()
        do {
            let rows = try await connection.query(
                """
                SELECT task_id, seq, event_count, (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000)::bigint
                FROM handoff_stream WHERE task_id = ANY(\(tasks)::uuid[])
                """, logger: logger)
            for try await (task, sequence, count, committed) in rows.decode((UUID, Int, Int, Int64?).self) {
                guard let committed else { continue }
                times.rows[task, default: []].append((sequence - count + 1, sequence, committed))
            }
        } catch {
            try? await connection.close()
            throw error
        }
        try await connection.close()
        return times
    }

    /// When the row holding `task`'s event `sequence` was committed, in Unix microseconds.
    func committed(task: UUID, sequence: Int) -> Int64? {
        rows[task]?.first { $0.first <= sequence && sequence <= $0.last }?.committed
    }
}
