import Foundation

/// The payload of `NotifyChannel.streamAppended`: `<task uuid>:<newest seq>` pairs joined by commas.
///
/// Postgres caps a payload below 8000 bytes, so one flush that touched many tasks sends several payloads.
public enum StreamAppendPayload {
    public static let maximumBytes = 7900

    public static func encode(_ heads: [(task: UUID, sequence: Int)]) -> [String] {
        var payloads: [String] = []
        var current = ""
        for head in heads {
            let entry = "\(head.task.uuidString.lowercased()):\(head.sequence)"
            if !current.isEmpty, current.utf8.count + 1 + entry.utf8.count > maximumBytes {
                payloads.append(current)
                current = ""
            }
            current += current.isEmpty ? entry : ",\(entry)"
        }
        if !current.isEmpty { payloads.append(current) }
        return payloads
    }

    /// Malformed entries are skipped: a payload we cannot read costs latency (the poll catches up), not data.
    public static func decode(_ payload: String) -> [(task: UUID, sequence: Int)] {
        payload.split(separator: ",").compactMap { entry in
            let parts = entry.split(separator: ":")
            guard parts.count == 2, let task = UUID(uuidString: String(parts[0])), let sequence = Int(parts[1]) else {
                return nil
            }
            return (task, sequence)
        }
    }
}
