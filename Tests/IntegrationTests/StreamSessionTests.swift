import Foundation
import HTTPTypes
import Hummingbird
import Shared
import Synchronization
import Testing

@testable import SSEChat

/// What a client would receive, recorded instead of sent.
final class RecordedBody: Sendable {
    private let text = Mutex("")

    var contents: String { text.withLock { $0 } }

    func append(_ buffer: ByteBuffer) {
        text.withLock { $0 += String(buffer: buffer) }
    }
}

struct RecordingWriter: ResponseBodyWriter {
    let body: RecordedBody

    mutating func write(_ buffer: ByteBuffer) async throws {
        body.append(buffer)
    }

    consuming func finish(_ trailingHeaders: HTTPFields?) async throws {}
}

struct StreamSessionTests {
    @Test func silenceIsFilledWithPingsThenEventsThenDone() async throws {
        try await TestDatabase.with { database in
            let task = try await database.runningTasks(1)[0]
            let log = StreamLog(client: database.client, logger: database.logger)
            // No listener, no poll to speak of: the test moves the head by hand, keepalive ticks every 100 ms.
            let notifier = StreamNotifier(
                configuration: .init(pollInterval: .seconds(600), keepaliveInterval: .milliseconds(200)),
                log: log, listenerConfiguration: nil, logger: database.logger)
            let session = StreamSession(
                task: task, start: .start, notifier: notifier, log: log, keepaliveInterval: .milliseconds(200), logger: database.logger)
            let body = RecordedBody()

            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await notifier.run() }
                defer { group.cancelAll() }
                try await withDeadline(.seconds(10)) {
                    try await withThrowingTaskGroup(of: Void.self) { client in
                        client.addTask {
                            var writer: any ResponseBodyWriter = RecordingWriter(body: body)
                            let subscription = notifier.subscribe(to: task)
                            defer { notifier.unsubscribe(subscription) }
                            try await session.run(subscription, writer: &writer)  // returns by itself after [DONE]
                        }
                        try await Task.sleep(for: .milliseconds(700))
                        #expect(body.contents.hasPrefix(": ping\n"))
                        #expect(!body.contents.contains("data:"), "nothing but pings yet")
                        let pings = body.contents.components(separatedBy: ": ping\n").count - 1
                        #expect((2...7).contains(pings), "\(pings) pings in 700 ms at a 200 ms keepalive")

                        try await log.append([StreamBatch(task: task, sequence: 2, events: ["{\"n\":1}", "{\"n\":2}"], final: false)], outcomes: [], workerID: "w")
                        notifier.advance(task, to: 2)
                        try await log.append([StreamBatch(task: task, sequence: 3, events: ["{\"n\":3}"], final: true)], outcomes: [], workerID: "w")
                        notifier.advance(task, to: 3)
                        try await client.waitForAll()
                    }
                }
            }
            let afterPings = body.contents.replacingOccurrences(of: ": ping\n", with: "")
            #expect(afterPings == "id: 1\ndata: {\"n\":1}\n\nid: 2\ndata: {\"n\":2}\n\nid: 3\ndata: {\"n\":3}\n\ndata: [DONE]\n\n")
        }
    }

    /// What a client starting at `cursor` receives from a finished three-event stream `a b c`.
    func replay(from cursor: Int) async throws -> String {
        try await TestDatabase.with { database in
            let task = try await database.runningTasks(1)[0]
            let log = StreamLog(client: database.client, logger: database.logger)
            try await log.append([StreamBatch(task: task, sequence: 3, events: ["a", "b", "c"], final: true)], outcomes: [], workerID: "w")
            let notifier = StreamNotifier(
                configuration: .init(pollInterval: .seconds(600), keepaliveInterval: .seconds(600)), log: log,
                listenerConfiguration: nil, logger: database.logger)
            let session = StreamSession(
                task: task, start: StreamCursor(sequence: cursor), notifier: notifier, log: log,
                keepaliveInterval: .seconds(600), logger: database.logger)
            let body = RecordedBody()
            try await withDeadline(.seconds(5)) {
                var writer: any ResponseBodyWriter = RecordingWriter(body: body)
                try await session.run(notifier.subscribe(to: task), writer: &writer)
            }
            return body.contents
        }
    }

    @Test func aResumingClientGetsOnlyWhatFollowsItsCursor() async throws {
        #expect(try await replay(from: 1) == "id: 2\ndata: b\n\nid: 3\ndata: c\n\ndata: [DONE]\n\n")
    }

    /// An EventSource that reconnects after [DONE] (or a cursor past the end) gets [DONE] again, not pings forever.
    @Test(arguments: [3, 50])
    func aClientAtOrPastTheEndIsToldTheStreamIsOver(cursor: Int) async throws {
        #expect(try await replay(from: cursor) == "data: [DONE]\n\n")
    }

    /// A client that leaves cancels its subscription: the session ends at once, by throwing (never a clean end).
    @Test func aCancelledSubscriptionEndsTheSession() async throws {
        try await TestDatabase.with { database in
            let task = try await database.runningTasks(1)[0]
            let log = StreamLog(client: database.client, logger: database.logger)
            let notifier = StreamNotifier(
                configuration: .init(pollInterval: .seconds(600), keepaliveInterval: .seconds(600)), log: log,
                listenerConfiguration: nil, logger: database.logger)
            let session = StreamSession(
                task: task, start: .start, notifier: notifier, log: log, keepaliveInterval: .seconds(600), logger: database.logger)
            let subscription = notifier.subscribe(to: task)
            try await withDeadline(.seconds(5)) {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        var writer: any ResponseBodyWriter = RecordingWriter(body: RecordedBody())
                        await #expect(throws: StreamSessionError.self) { try await session.run(subscription, writer: &writer) }
                    }
                    try await Task.sleep(for: .milliseconds(100))
                    notifier.unsubscribe(subscription)
                    try await group.waitForAll()
                }
            }
            #expect(notifier.subscriberCount == 0)
        }
    }
}
