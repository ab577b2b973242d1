import Foundation
import HandoffRuntime
import HandoffStore
import HandoffWire
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization
import Testing

@testable import Bench
@testable import SSEChat

/// The SSE server on a real socket and real Postgres: a notifier without a listener (tests move heads by hand),
/// the reader, and a NIO client.
struct SSEServerTests {
    static let secret = StreamSecret(bytes: Array(repeating: 7, count: 32))

    struct Running: Sendable {
        let port: Int
        let notifier: StreamNotifier
        let log: StreamLog
        /// Runs the server alone, as the replica's service group would.
        let group: ServiceGroup
        let connections: ConnectionCount

        func path(_ task: UUID, token: String? = nil, query: String = "") -> String {
            let token =
                token
                ?? StreamToken(taskID: task, expiresAt: Int64(Date().timeIntervalSince1970) + 60).encoded(
                    secret: SSEServerTests.secret)
            return
                "\(StreamRoute.pathPrefix)/\(task.uuidString.lowercased())?\(StreamRoute.tokenParameter)=\(token)\(query)"
        }

        /// GETs `path` and returns the status and the whole body, read until the server ends it.
        func get(_ path: String, headers: [(String, String)] = []) async throws -> (status: Int, body: String) {
            try await HTTPExchange(host: "127.0.0.1", port: port).run(method: .GET, path: path, headers: headers) {
                head, parts in
                var body = ""
                while case .body(let buffer) = try await parts.next() { body += String(buffer: buffer) }
                return (head.status, body)
            }
        }
    }

    /// Runs a replica for the duration of `body`.
    func withServer<R: Sendable>(
        _ database: TestDatabase, keepalive: Int64 = 600, drainTime: Duration = .seconds(1),
        limits: ConnectionLimits = ConnectionLimits(
            headerTimeout: .seconds(10), maxConnections: 1000, streamsPerTask: 8),
        _ body: @escaping @Sendable (Running) async throws -> R
    ) async throws -> R {
        let log = StreamLog(client: database.client, logger: database.logger)
        let notifier = StreamNotifier(
            configuration: .init(pollInterval: .seconds(600), keepaliveInterval: .milliseconds(keepalive)),
            log: log, listenerEndpoint: nil, logger: database.logger)
        let reader = StreamReader(log: log, logger: database.logger)
        let port = Mutex<Int?>(nil)
        let connections = ConnectionCount()
        let server = SSEServer(
            host: "127.0.0.1", port: 0, drainTime: drainTime,
            environment: StreamEnvironment(
                notifier: notifier, reader: reader, secret: Self.secret, keepaliveInterval: .milliseconds(keepalive),
                commitStamps: false, replica: "test",
                operations: Operations(readiness: Readiness(listens: false), metrics: .disabled),
                metrics: StreamMetrics(),
                limits: limits, connections: connections,
                abandoned: AbandonedTasks(
                    queue: TaskQueue(client: database.client, logger: database.logger), logger: database.logger),
                logger: database.logger),
            logger: database.logger, onBound: { bound in port.withLock { $0 = bound } })
        let serverGroup = ServiceGroup(configuration: .init(services: [server], logger: database.logger))
        return try await withThrowingTaskGroup(of: R?.self) { group in
            group.addTask {
                try await notifier.run()
                return nil
            }
            group.addTask {
                await reader.run()
                return nil
            }
            group.addTask {
                try await serverGroup.run()
                return nil
            }
            defer { group.cancelAll() }
            guard await eventually(timeout: .seconds(10), { port.withLock { $0 } != nil }) else {
                throw TestSetupError("the SSE server never bound")
            }
            return try await withDeadline(.seconds(20)) {
                try await body(
                    Running(
                        port: port.withLock { $0 }!, notifier: notifier, log: log, group: serverGroup,
                        connections: connections))
            }
        }
    }

    @Test func silenceIsFilledWithPingsThenEventsThenDone() async throws {
        try await TestDatabase.with { database in
            let task = try await database.runningTasks(1)[0]
            let started = ContinuousClock.now
            let (body, silence) = try await withServer(database, keepalive: 200) { server in
                try await withThrowingTaskGroup(of: String.self, returning: (String, Duration).self) { group in
                    group.addTask { try await server.get(server.path(task)).body }
                    // 700 ms of silence from when the stream is open, however long opening it took.
                    #expect(await eventually { server.notifier.subscriberCount == 1 })
                    try await Task.sleep(for: .milliseconds(700))
                    try await server.log.append(
                        [StreamBatch(task: task, sequence: 2, events: ["{\"n\":1}", "{\"n\":2}"], final: false)],
                        outcomes: [], workerID: "w")
                    // The stream was silent until now (on a loaded machine, well past the 700 ms slept).
                    let silence = ContinuousClock.now - started
                    server.notifier.advance(task, to: 2)
                    try await server.log.append(
                        [StreamBatch(task: task, sequence: 3, events: ["{\"n\":3}"], final: true)], outcomes: [],
                        workerID: "w")
                    server.notifier.advance(task, to: 3)
                    return (try await group.next()!, silence)
                }
            }
            let pings = body.components(separatedBy: ": ping\n").count - 1
            #expect(body.hasPrefix(": ping\n"))
            // A ping once half the keepalive passed without a write: about one per 100 ms of silence, never a storm.
            // At least one: how much of the silence the stream was open for (rather than still in its first read)
            // depends on how loaded the machine and the test cluster are.
            let most = Int(silence / .milliseconds(100)) + 1
            #expect((1...most).contains(pings), "\(pings) pings in \(silence) of silence at a 200 ms keepalive")
            #expect(
                body.replacingOccurrences(of: ": ping\n", with: "")
                    == "id: 1\ndata: {\"n\":1}\n\nid: 2\ndata: {\"n\":2}\n\nid: 3\ndata: {\"n\":3}\n\ndata: [DONE]\n\n")
        }
    }

    /// What a client resuming after `cursor` (by header or by query) receives from a finished stream `a b c`.
    func replay(header: Int? = nil, query: Int? = nil) async throws -> (status: Int, body: String) {
        try await TestDatabase.with { database in
            let task = try await database.runningTasks(1)[0]
            return try await withServer(database) { server in
                try await server.log.append(
                    [StreamBatch(task: task, sequence: 3, events: ["a", "b", "c"], final: true)], outcomes: [],
                    workerID: "w")
                return try await server.get(
                    server.path(task, query: query.map { "&\(StreamRoute.lastEventIDParameter)=\($0)" } ?? ""),
                    headers: header.map { [(StreamRoute.lastEventIDHeader, "\($0)")] } ?? [])
            }
        }
    }

    @Test func aResumingClientGetsOnlyWhatFollowsItsCursor() async throws {
        #expect(try await replay(header: 1) == (200, "id: 2\ndata: b\n\nid: 3\ndata: c\n\ndata: [DONE]\n\n"))
        #expect(try await replay(query: 2) == (200, "id: 3\ndata: c\n\ndata: [DONE]\n\n"))
        #expect(try await replay() == (200, "id: 1\ndata: a\n\nid: 2\ndata: b\n\nid: 3\ndata: c\n\ndata: [DONE]\n\n"))
    }

    /// An EventSource that reconnects after [DONE] gets [DONE] again, not pings forever.
    @Test func aClientAtTheEndIsToldTheStreamIsOver() async throws {
        #expect(try await replay(header: 3) == (200, "data: [DONE]\n\n"))
    }

    /// An id this stream never sent (from another stream) is refused before streaming, never a silent restart.
    @Test func aCursorPastTheEndIsRefused() async throws {
        let response = try await replay(header: 50)
        #expect(response.status == 400)
        #expect(response.body.contains("\"code\":\"invalid_event_id\""), "\(response.body)")
    }

    @Test func refusalsAreOpenAIErrors() async throws {
        try await TestDatabase.with { database in
            let task = try await database.runningTasks(1)[0]
            try await withServer(database) { server in
                let cases: [(String, [(String, String)], Int, String)] = [
                    (server.path(UUID()), [], 404, "not_found"),
                    (server.path(task, token: ""), [], 401, "invalid_stream_token"),
                    (
                        server.path(
                            task,
                            token: StreamToken(taskID: UUID(), expiresAt: 4_000_000_000).encoded(secret: Self.secret)),
                        [], 403, "invalid_stream_token"
                    ),
                    (server.path(task), [(StreamRoute.lastEventIDHeader, "x")], 400, "invalid_request_error"),
                    ("/nowhere", [], 404, "not_found"),
                ]
                for (path, headers, status, kind) in cases {
                    let response = try await server.get(path, headers: headers)
                    #expect(response.status == status, "\(path)")
                    #expect(
                        response.body.contains("\"error\":{") && response.body.contains(kind),
                        "\(path): \(response.body)")
                }
                #expect(try await server.get(OperationsRoute.health) == (200, "ok"))
            }
        }
    }

    /// A client that hangs up is forgotten at once, not at its next write.
    @Test func aClientThatLeavesIsUnsubscribed() async throws {
        try await TestDatabase.with { database in
            let task = try await database.runningTasks(1)[0]
            try await withServer(database) { server in
                try await HTTPExchange(host: "127.0.0.1", port: server.port).run(method: .GET, path: server.path(task))
                { head, _ in
                    #expect(head.status == 200)
                    #expect(await eventually { server.notifier.subscriberCount == 1 })
                }  // closes the connection
                #expect(await eventually { server.notifier.subscriberCount == 0 })
            }
        }
    }

    /// SIGTERM: new connections are refused at once; a stream that ends within the drain time ends normally; one
    /// that does not gets the interruption event (no id, no [DONE]) when the drain time is up.
    @Test func drainingFinishesShortStreamsAndInterruptsLongOnes() async throws {
        try await TestDatabase.with { database in
            let tasks = try await database.runningTasks(2)
            // The drain time leaves room for a loaded CI machine to append and deliver the short stream's end.
            let drainTime = Duration.seconds(3)
            try await withServer(database, drainTime: drainTime) { server in
                try await withThrowingTaskGroup(of: (Int, String).self) { clients in
                    for (index, task) in tasks.enumerated() {
                        clients.addTask { (index, try await server.get(server.path(task)).body) }
                    }
                    #expect(await eventually { server.notifier.subscriberCount == 2 })
                    let clock = ContinuousClock()
                    let shutdown = clock.now
                    await server.group.triggerGracefulShutdown()
                    try await server.log.append(
                        [StreamBatch(task: tasks[0], sequence: 1, events: ["short"], final: true)], outcomes: [],
                        workerID: "w")
                    server.notifier.advance(tasks[0], to: 1)
                    // Well within the drain time, which the long stream uses up.
                    #expect(
                        await eventually(timeout: .seconds(1)) {
                            do {
                                _ = try await server.get(OperationsRoute.health)
                                return false
                            } catch { return true }
                        }, "no new connections while draining")
                    var bodies: [Int: String] = [:]
                    for try await (index, body) in clients {
                        bodies[index] = body.replacingOccurrences(of: ": ping\n", with: "")
                    }
                    let elapsed = clock.now - shutdown
                    #expect(bodies[0] == "id: 1\ndata: short\n\ndata: [DONE]\n\n")
                    #expect(
                        bodies[1]?.hasPrefix("data: {\"error\":{") == true
                            && bodies[1]?.contains("stream_interrupted") == true, "body: [\(bodies[1] ?? "nil")]")
                    #expect(bodies[1]?.contains("[DONE]") == false && bodies[1]?.contains("id:") == false)
                    #expect(
                        elapsed >= drainTime - .milliseconds(100) && elapsed < drainTime + .seconds(3), "\(elapsed)")
                }
            }
        }
    }
}
