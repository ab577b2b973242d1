import HandoffRuntime
import HandoffWire
import Logging
import Metrics
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// The one LISTEN connection of a process.
///
/// It lives outside the query pool (a pooled connection pinned for LISTEN would starve queries) and is
/// reconnected with capped exponential backoff whenever it drops, because PostgresNIO does not do that for
/// us. Every time the channels are listened on afresh, `onListening` runs: notifications may have been lost
/// while we were away, so consumers re-read the tables. `onLost` runs whenever the connection is gone (readiness).
package struct PostgresListener: Service {
    package struct Backoff: Sendable {
        package var initial: Duration
        package var maximum: Duration

        // At most a second between attempts: notifications are lost while the listener is away, and the one
        // connection's retries cost nothing next to a failover's streams waiting on it (doubling to 5 s, a listener
        // that failed all through a 10 s failover came back up to 5 s after the new primary did).
        package init(initial: Duration = .milliseconds(100), maximum: Duration = .seconds(1)) {
            self.initial = initial
            self.maximum = maximum
        }
    }

    let endpoint: ListenerEndpoint
    let channels: [String]
    let backoff: Backoff
    let logger: Logger
    let onListening: @Sendable () -> Void
    let onLost: @Sendable () -> Void
    let onNotification: @Sendable (_ channel: String, _ payload: String) -> Void
    private let connected = Gauge(label: MetricName.listenerConnected.rawValue)
    private let reconnects = Counter(label: MetricName.listenerReconnects.rawValue)

    package init(
        endpoint: ListenerEndpoint,
        channels: [String],
        backoff: Backoff = Backoff(),
        logger: Logger,
        onListening: @escaping @Sendable () -> Void,
        onLost: @escaping @Sendable () -> Void = {},
        onNotification: @escaping @Sendable (_ channel: String, _ payload: String) -> Void
    ) {
        self.endpoint = endpoint
        self.channels = channels
        self.backoff = backoff
        self.logger = logger
        self.onListening = onListening
        self.onLost = onLost
        self.onNotification = onNotification
    }

    package func run() async throws {
        await cancelWhenGracefulShutdown {
            var delay = backoff.initial
            while !Task.isCancelled {
                do {
                    try await listenOnce()
                } catch is CancellationError {
                    return
                } catch {
                    connected.record(0)
                    onLost()
                    guard !Task.isCancelled else { return }
                    var cause = error
                    if case .listened(let underlying) = error as? ListenerEnded {
                        delay = backoff.initial
                        cause = underlying
                        reconnects.increment()
                    }
                    logger.warning(
                        "listener connection lost; reconnecting",
                        metadata: ["error": "\(String(reflecting: cause))", "retry_in": "\(delay)"])
                }
                try? await LoopTimer.sleep(for: delay)
                delay = min(delay * 2, backoff.maximum)
            }
        }
    }

    /// Connects, listens on every channel and consumes until the connection fails or the task is cancelled.
    /// Throws `ListenerEnded.listened` when the connection failed after listening had begun, so the backoff
    /// starts over; anything else means we never got that far.
    private func listenOnce() async throws {
        // Bounded, so a server that accepts but never answers cannot stall the listener.
        let connection = try await withDeadline(.seconds(10)) { [endpoint, logger] in
            try await endpoint.connect(id: 1, logger: logger)
        }
        let listening = ListeningCount(total: channels.count)
        do {
            try await consume(connection: connection, listening: listening)
        } catch {
            try? await connection.close()
            throw listening.reached ? ListenerEnded.listened(underlying: error) : error
        }
    }

    private func consume(connection: PostgresConnection, listening: ListeningCount) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for channel in channels {
                group.addTask {
                    try await connection.listen(on: channel) { notifications in
                        if listening.arrive() {
                            connected.record(1)
                            onListening()
                        }
                        for try await notification in notifications {
                            onNotification(channel, notification.payload)
                        }
                    }
                    throw PostgresListenerError.notificationsEnded(channel: channel)
                }
            }
            // Any channel ending means the connection is gone; tear down the rest and reconnect.
            try await group.next()
        }
    }
}

package enum PostgresListenerError: Error {
    case notificationsEnded(channel: String)
}

private enum ListenerEnded: Error {
    case listened(underlying: any Error)
}

/// Fires once, when the last channel of a connection is listening.
private final class ListeningCount: Sendable {
    private let remaining: Mutex<Int>

    init(total: Int) {
        self.remaining = Mutex(total)
    }

    func arrive() -> Bool {
        remaining.withLock { remaining in
            remaining -= 1
            return remaining == 0
        }
    }

    var reached: Bool {
        remaining.withLock { $0 <= 0 }
    }
}
