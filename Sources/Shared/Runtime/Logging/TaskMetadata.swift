import Foundation
import Logging

extension Logger.MetadataValue {
    /// A task id as every log line writes it: lowercase, as in stream URLs and `task_id`, so that `grep <task id>`
    /// across the processes' logs finds every line of one completion.
    package static func task(_ id: UUID) -> Logger.MetadataValue {
        .string(id.uuidString.lowercased())
    }
}
