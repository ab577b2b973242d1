/// The NOTIFY channels. The tables are the source of truth: a payload says what changed, and where it carries
/// content (stream events), only content the same transaction committed.
package enum NotifyChannel {
    /// A task was queued. No payload: any woken worker claims whatever is queued.
    package static let taskQueued = "handoff_task_queued"
    /// Stream rows were committed. Payload: `StreamAppendPayload`, the rows and (when small) their events.
    package static let streamAppended = "handoff_stream_appended"
    /// Somebody asked to cancel a task. Payload: the task's id; the worker running it stops.
    package static let taskCancelled = "handoff_task_cancelled"
}
