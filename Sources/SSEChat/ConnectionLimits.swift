import HandoffWire
import NIOCore
import Synchronization

/// What one replica allows a client: how long it may take to send a request head, how many connections the
/// replica holds, how many streams of one task it serves, and how large a request body on a stream route may be.
/// A stream URL is a capability anyone holding it may use, and a replica is reachable by anyone who reaches Caddy:
/// without these, one client could hold every socket or open thousands of replays of one task.
struct ConnectionLimits: Sendable {
    var headerTimeout: TimeAmount
    var maxConnections: Int
    var streamsPerTask: Int
    /// A stream route ignores its body (`curl -X POST -L` repeats the POST's); more than this closes the connection.
    var maxRequestBodyBytes = 64 * 1024

    init(headerTimeout: TimeAmount, maxConnections: Int, streamsPerTask: Int) {
        self.headerTimeout = headerTimeout
        self.maxConnections = maxConnections
        self.streamsPerTask = streamsPerTask
    }

    init(settings: Settings) throws {
        self.init(
            headerTimeout: .seconds(Int64(try settings.int(.sseHeaderTimeoutSeconds))),
            maxConnections: try settings.int(.sseMaxConnections),
            streamsPerTask: try settings.int(.sseMaxStreamsPerTask))
    }
}

/// The replica's open connections, counted as they are accepted and closed.
final class ConnectionCount: Sendable {
    private let count = Atomic<Int>(0)

    /// Counts a new connection; returns how many are open with it.
    func opened() -> Int {
        count.wrappingAdd(1, ordering: .relaxed).newValue
    }

    func closed() {
        count.wrappingSubtract(1, ordering: .relaxed)
    }

    var current: Int { count.load(ordering: .relaxed) }
}
