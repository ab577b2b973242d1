import AsyncHTTPClient
import Foundation
import HandoffWire
import NIOCore
import Synchronization

/// One upstream server of a model, as this worker sees it: its settings, its HTTP client (a connection pool of its
/// own, sized to `max_concurrent_requests`), its API key, how many requests it has now and whether it is being
/// passed over after a failure.
final class UpstreamEndpoint: Sendable {
    private struct Load {
        var inFlight = 0
        var passedOverUntil: ContinuousClock.Instant?
    }

    /// Its position in the catalogue: the tie-breaker between servers equally busy.
    let position: Int
    let configuration: ModelCatalogue.Upstream
    let client: HTTPClient
    /// From the environment variable the catalogue names; never logged, never in an error.
    let apiKey: String?
    private let load = Mutex(Load())

    init(position: Int, configuration: ModelCatalogue.Upstream, apiKey: String?) {
        self.position = position
        self.configuration = configuration
        self.apiKey = apiKey
        var http = HTTPClient.Configuration(
            timeout: .init(connect: .milliseconds(Int64(configuration.connectTimeoutMs))),
            connectionPool: .init(
                idleTimeout: .seconds(60),
                concurrentHTTP1ConnectionsPerHostSoftLimit: configuration.maxConcurrentRequests))
        // A refused connection fails the attempt at once, so the next server is tried instead of this one again.
        http.connectionPool.retryConnectionEstablishment = false
        http.redirectConfiguration = .disallow
        self.client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: http)
    }

    /// What no error a client sees may contain.
    var secrets: [String] { apiKey.map { [$0] } ?? [] }

    /// Where it stands for the choice of a server: free slots, passed over or not, how busy.
    var standing: (full: Bool, passedOver: Bool, inFlight: Int) {
        load.withLock { load in
            let passedOver = load.passedOverUntil.map { ContinuousClock.now < $0 } ?? false
            return (load.inFlight >= configuration.maxConcurrentRequests, passedOver, load.inFlight)
        }
    }

    /// Takes a slot if one is free.
    func acquire() -> Bool {
        load.withLock { load in
            guard load.inFlight < configuration.maxConcurrentRequests else { return false }
            load.inFlight += 1
            return true
        }
    }

    func release() {
        load.withLock { $0.inFlight -= 1 }
    }

    /// Leaves the server alone for `duration` (its back-off, or a 429's Retry-After).
    func passOver(for duration: Duration) {
        load.withLock { $0.passedOverUntil = ContinuousClock.now + duration }
    }

    func shutdown() async throws {
        try await client.shutdown()
    }
}
