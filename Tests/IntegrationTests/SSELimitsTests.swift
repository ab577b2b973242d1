import Foundation
import HandoffStore
import HandoffWire
import NIOCore
import NIOPosix
import PostgresNIO
import Testing

@testable import Bench
@testable import SSEChat

/// What one client may hold on an SSE replica: a request head arrives in time or the connection goes, a stream route's
/// body is bounded, one task's streams are capped, the replica's connections are capped (and `/readyz` says so), and
/// a stream whose key is revoked stops being served, open or not.
struct SSELimitsTests {
    let servers = SSEServerTests()

    /// A raw connection: writes `bytes`, then reads until the server closes it (or `within` passes); returns what was
    /// read and whether the server closed it.
    func exchange(port: Int, _ bytes: String, within: Duration = .seconds(8)) async throws -> (
        reply: String, closed: Bool
    ) {
        let channel = try await ClientBootstrap(group: .singletonMultiThreadedEventLoopGroup).connect(
            host: "127.0.0.1", port: port
        ) {
            channel in
            channel.eventLoop.makeCompletedFuture {
                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
        return try await channel.executeThenClose { inbound, outbound in
            if !bytes.isEmpty { try await outbound.write(ByteBuffer(string: bytes)) }
            return try await withThrowingTaskGroup(of: (String, Bool)?.self) { group in
                group.addTask {
                    var reply = ""
                    for try await buffer in inbound { reply += String(buffer: buffer) }
                    return (reply, true)
                }
                group.addTask {
                    try await Task.sleep(for: within)
                    return nil
                }
                defer { group.cancelAll() }
                return try await group.next()!.map { (reply: $0.0, closed: $0.1) } ?? (reply: "", closed: false)
            }
        }
    }

    /// Runs `body` while `count` clients stream `task`, then ends the task, so they finish.
    func whileStreaming(
        _ count: Int, of task: UUID, on server: SSEServerTests.Running, _ body: () async throws -> Void
    ) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<count { group.addTask { _ = try await server.get(server.path(task)) } }
            #expect(await eventually { server.notifier.subscriberCount == count })
            try await body()
            try await server.log.append(
                [StreamBatch(task: task, sequence: 1, events: ["a"], final: true)], outcomes: [], workerID: "w")
            server.notifier.advance(task, to: 1)
            try await group.waitForAll()
        }
    }

    @Test func aHeadThatDoesNotArriveInTimeClosesTheConnection() async throws {
        try await TestDatabase.with { database in
            let limits = ConnectionLimits(headerTimeout: .seconds(1), maxConnections: 100, streamsPerTask: 8)
            try await servers.withServer(database, limits: limits) { server in
                let clock = ContinuousClock()
                let start = clock.now
                let trickled = try await exchange(port: server.port, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
                #expect(trickled.closed && trickled.reply.isEmpty)
                #expect(clock.now - start >= .milliseconds(900), "closed before its deadline")
                let silent = try await exchange(port: server.port, "")
                #expect(silent.closed && silent.reply.isEmpty)
                // A whole head in time is answered as always.
                let whole = try await exchange(
                    port: server.port, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                #expect(whole.reply.hasPrefix("HTTP/1.1 200"))
            }
        }
    }

    @Test func aStreamRoutesBodyIsBounded() async throws {
        try await TestDatabase.with { database in
            let task = try await database.runningTasks(1)[0]
            try await servers.withServer(database) { server in
                // 80 KiB of a body that claims 1 MiB: past the bound, the answer comes without waiting for the rest (all
                // that was sent is read, so the close is clean and the answer readable).
                let request =
                    "POST \(server.path(task)) HTTP/1.1\r\nHost: x\r\nContent-Length: \(1 << 20)\r\n\r\n"
                    + String(repeating: "x", count: 80 * 1024)
                let answer = try await exchange(port: server.port, request)
                #expect(answer.reply.hasPrefix("HTTP/1.1 413"), "\(answer.reply.prefix(200))")
                #expect(answer.reply.contains("\"code\":\"request_too_large\"") && answer.closed)
            }
        }
    }

    @Test func oneTasksStreamsAreCapped() async throws {
        try await TestDatabase.with { database in
            let task = try await database.runningTasks(1)[0]
            let limits = ConnectionLimits(headerTimeout: .seconds(10), maxConnections: 100, streamsPerTask: 2)
            try await servers.withServer(database, limits: limits) { server in
                try await whileStreaming(2, of: task, on: server) {
                    let third = try await server.get(server.path(task))
                    #expect(third.status == 429 && third.body.contains("\"code\":\"too_many_streams\""), "\(third)")
                }
                // Once they ended, the task may be streamed again.
                #expect(try await server.get(server.path(task)).status == 200)
            }
        }
    }

    @Test func theReplicasConnectionsAreCappedAndReadinessSaysSo() async throws {
        try await TestDatabase.with { database in
            let task = try await database.runningTasks(1)[0]
            let limits = ConnectionLimits(headerTimeout: .seconds(10), maxConnections: 3, streamsPerTask: 8)
            try await servers.withServer(database, limits: limits) { server in
                try await whileStreaming(2, of: task, on: server) {
                    // The third connection is the last one allowed: readiness, on it, says the replica is full.
                    let ready = try await server.get(OperationsRoute.readiness)
                    #expect(ready.status == 503 && ready.body.contains("HANDOFF_SSE_MAX_CONNECTIONS"), "\(ready)")
                    try await withThrowingTaskGroup(of: Void.self) { held in
                        held.addTask { _ = try await exchange(port: server.port, "", within: .seconds(3)) }
                        #expect(await eventually { server.connections.current >= 3 })
                        let over = try await exchange(
                            port: server.port, "GET \(server.path(task)) HTTP/1.1\r\nHost: x\r\n\r\n")
                        #expect(
                            over.reply.hasPrefix("HTTP/1.1 503") && over.reply.contains("Retry-After: 1"),
                            "\(over.reply)")
                        #expect(over.reply.contains("\"code\":\"overloaded\"") && over.closed)
                        held.cancelAll()
                    }
                }
                // Below the cap again, readiness no longer says full (the test replica has no probe: it says starting).
                #expect(
                    try await eventually {
                        try await !server.get(OperationsRoute.readiness).body.contains("HANDOFF_SSE_MAX_CONNECTIONS")
                    })
            }
        }
    }

    /// A stream token follows its key: once the key is revoked, an open stream ends with an error event and `[DONE]`
    /// at the next poll, and opening or resuming it is refused.
    @Test func aRevokedKeysStreamsStop() async throws {
        try await TestDatabase.with { database in
            let task = try await database.runningTasks(1)[0]
            let store = APIKeyStore(client: database.client, logger: database.logger)
            let (keyID, _) = try await store.create(name: "gone", limits: RateLimits(), maxTokens: nil, expiresIn: nil)
            try await database.client.perform(
                "UPDATE handoff_tasks SET key_id = \(keyID) WHERE id = \(task)", timeout: .seconds(5),
                logger: database.logger)
            try await servers.withServer(database) { server in
                try await server.log.append(
                    [StreamBatch(task: task, sequence: 1, events: ["a"], final: false)], outcomes: [], workerID: "w")
                let body = try await HTTPExchange(host: "127.0.0.1", port: server.port).run(
                    method: .GET, path: server.path(task)
                ) { head, parts in
                    var body = ""
                    // Open and streaming: its first event is here.
                    while !body.contains("data: a\n\n"), case .body(let buffer) = try await parts.next() {
                        body += String(buffer: buffer)
                    }
                    #expect(try await store.revoke("gone") == 1)
                    await server.notifier.poll()
                    while case .body(let buffer) = try await parts.next() { body += String(buffer: buffer) }
                    return body
                }
                // Keepalives may fall anywhere in a stream that waited (a loaded machine is slow to poll).
                let events = body.replacingOccurrences(of: ": ping\n", with: "")
                #expect(events.hasPrefix("id: 1\ndata: a\n\ndata: {\"error\":{"), "\(body)")
                #expect(events.contains("revoked") && events.hasSuffix("data: [DONE]\n\n"), "\(body)")
                let reopened = try await server.get(server.path(task), headers: [(StreamRoute.lastEventIDHeader, "1")])
                #expect(reopened.status == 401 && reopened.body.contains("\"code\":\"invalid_api_key\""), "\(reopened)")
            }
        }
    }
}
