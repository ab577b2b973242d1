/// Postgres ran an enqueue after its deadline and so queued none of it: the caller answers 503, certain that no
/// task was made (unlike a deadline the caller saw pass, after which the statement may still commit).
package struct EnqueueMissedDeadline: Error, CustomStringConvertible {
    package init() {}

    package var description: String { "Postgres ran the enqueue after its deadline; nothing was queued" }
}
