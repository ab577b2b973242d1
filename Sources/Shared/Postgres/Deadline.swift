/// Runs `operation`, but gives up after `duration` and cancels it.
///
/// PostgresNIO's pool queues a request while it cannot connect; on the request path that would look like
/// a hang, so callers bound it and answer 503 instead.
public func withDeadline<Value: Sendable>(
    _ duration: Duration, _ operation: @escaping @Sendable () async throws -> Value
) async throws -> Value {
    try await withThrowingTaskGroup(of: Value.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            try await Task.sleep(for: duration)
            throw DeadlineExceeded(duration: duration)
        }
        defer { group.cancelAll() }
        return try await group.next()!
    }
}

public struct DeadlineExceeded: Error, CustomStringConvertible {
    public let duration: Duration

    public var description: String { "no answer within \(duration)" }
}
