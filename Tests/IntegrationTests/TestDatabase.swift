import Foundation
import Logging
import PostgresNIO

@testable import HandoffStore
@testable import HandoffWire

/// A fresh, migrated database on the test cluster for one test, dropped afterwards.
///
/// `make test` exports `HANDOFF_TEST_DATABASE_URL` (an admin URL on a throwaway cluster); without it these
/// tests fail loudly rather than pass vacuously.
struct TestDatabase: Sendable {
    let name: String
    let settings: DatabaseSettings
    let client: PostgresClient
    let logger: Logger

    /// `statementTimeout` replaces the processes' deadline for a database call (HANDOFF_DB_TIMEOUT_MS, 1.5 s), on the
    /// server and in the API alike. The tests' default is a test machine's allowance, as `connectTimeout` is: on two
    /// loaded cores, beside 49 other suites creating databases (each an immediate checkpoint), statements that wait on
    /// one key's row by design outlasted 1.5 s in CI. A test of the deadline itself passes its own.
    static func with<Result: Sendable>(
        poolSize: Int = 4, migrated: Bool = true, statementTimeout: Duration = .seconds(10),
        _ body: @Sendable (TestDatabase) async throws -> Result
    ) async throws -> Result {
        guard let adminURL = ProcessInfo.processInfo.environment["HANDOFF_TEST_DATABASE_URL"] else {
            throw TestSetupError("HANDOFF_TEST_DATABASE_URL is not set: run the integration tests through `make test`.")
        }
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        var admin = try DatabaseSettings(settings: Settings(environment: ["DATABASE_URL": adminURL]))
        admin.connectTimeout = .seconds(10)
        let name = "handoff_test_\(UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(16))"
        var components = URLComponents(string: adminURL)!
        components.path = "/\(name)"
        var settings = try DatabaseSettings(
            settings: Settings(environment: [
                "DATABASE_URL": components.string!, "HANDOFF_DB_POOL_SIZE": "\(poolSize)",
            ]))
        settings.connectTimeout = admin.connectTimeout
        settings.timeout = statementTimeout
        do {
            try await admin.run("CREATE DATABASE \(name)", logger: logger)
            if migrated { try await Migrator().migrate(database: settings, logger: logger) }
        } catch {
            // PostgresNIO's errors describe themselves generically; a failed set-up must say what Postgres said.
            throw TestSetupError("setting up database \(name): \(String(reflecting: error))")
        }
        let client = PostgresClient(configuration: settings.clientConfiguration(applicationName: "handoff-test"))
        let database = TestDatabase(name: name, settings: settings, client: client, logger: logger)

        let result = await withTaskGroup(of: Void.self) { group -> Swift.Result<Result, any Error> in
            group.addTask { await client.run() }
            defer { group.cancelAll() }
            do {
                return .success(try await body(database))
            } catch {
                return .failure(error)
            }
        }
        try await admin.run("DROP DATABASE \(name) WITH (FORCE)", logger: logger)
        return try result.get()
    }

    /// Another client on the same database, as a second process would have.
    func withSecondClient<R: Sendable>(applicationName: String, _ body: @Sendable (PostgresClient) async throws -> R)
        async throws -> R
    {
        let other = PostgresClient(configuration: settings.clientConfiguration(applicationName: applicationName))
        return try await withThrowingTaskGroup(of: R?.self) { group in
            group.addTask {
                await other.run()
                return nil
            }
            defer { group.cancelAll() }
            return try await body(other)
        }
    }

    func enqueue(_ count: Int, prompt: String = "hello") async throws -> [UUID] {
        let queue = TaskQueue(client: client, logger: logger)
        var ids: [UUID] = []
        for index in 0..<count {
            let id = UUID()
            try await queue.enqueue(
                id: id,
                request: ChatCompletionRequest(
                    model: "demo", messages: [ChatMessage(role: "user", content: "\(prompt) \(index)")], stream: true))
            ids.append(id)
        }
        return ids
    }

    /// Tasks claimed by `worker`: only the worker holding a task may write its stream.
    func runningTasks(_ count: Int, worker: String = "w") async throws -> [UUID] {
        let ids = try await enqueue(count)
        _ = try await claimAll(worker: worker)
        return ids
    }

    /// `task`'s events as every client receives them: read from the table, each once, and rendered with the header a
    /// replica reads with them (the stored events leave out what every chunk shares, `ChunkFrame`).
    func renderedEvents(of task: UUID) async throws -> [String] {
        let log = StreamLog(client: client, logger: logger)
        let header = try await log.catchUp([(task, .start, true)], pageSize: 1)[0]
        guard header.exists else { return [] }
        return try await log.events(of: task).map(header.frame(of: task).rendered)
    }

    /// Marks every queued task as claimed by `worker`.
    func claimAll(worker: String) async throws -> [ClaimedTask] {
        try await TaskQueue(client: client, logger: logger).claim(workerID: worker, limit: 100_000, lease: .seconds(60))
    }

    /// The backend pids of connections whose application_name is `applicationName`.
    func backends(applicationName: String) async throws -> [Int] {
        let rows = try await client.query(
            "SELECT pid FROM pg_stat_activity WHERE application_name = \(applicationName) AND datname = \(name)",
            logger: logger)
        var pids: [Int] = []
        for try await pid in rows.decode(Int.self) { pids.append(pid) }
        return pids
    }
}

struct TestSetupError: Error, CustomStringConvertible {
    let description: String

    init(_ description: String) {
        self.description = description
    }
}

extension DatabaseSettings {
    /// One statement on a short-lived connection (CREATE/DROP DATABASE cannot run in a pool's transaction).
    func run(_ sql: String, logger: Logger) async throws {
        let connection = try await PostgresConnection.connect(
            configuration: connectionConfiguration(applicationName: "handoff-test-admin"), id: 0, logger: logger)
        do {
            try await connection.perform(PostgresQuery(unsafeSQL: sql), logger: logger)
        } catch {
            try? await connection.close()
            throw error
        }
        try await connection.close()
    }
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
func eventually(timeout: Duration = .seconds(10), _ condition: @Sendable () async throws -> Bool) async rethrows -> Bool
{
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}

extension StreamLog {
    /// One client's read of a stream, through the statement the SSE servers use to catch a client up.
    func read(task: UUID, after cursor: StreamCursor, limit: Int = 1000) async throws -> [StreamBatch] {
        try await catchUp([(task, cursor, false)], pageSize: limit)[0].batches
    }
}

extension TaskQueue {
    /// The status of a task, or `nil` when there is no such task.
    func status(of id: UUID) async throws -> TaskStatus? {
        try await client.perform("SELECT status FROM handoff_tasks WHERE id = \(id)", timeout: timeout, logger: logger)
            .decode(String.self).first.flatMap(TaskStatus.init(rawValue:))
    }
}
