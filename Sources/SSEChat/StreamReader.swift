import Foundation
import HandoffRuntime
import HandoffStore
import HandoffWire
import Logging
import ServiceLifecycle
import Synchronization

/// The table reads of this process's streams that the notifier's cache cannot serve: each stream's first read
/// (which also says whether its task exists) and the catch-up of a client that fell behind.
///
/// Whatever is pending goes into one `StreamLog.catchUp` statement, so a burst of opening streams costs one round
/// trip and at most one pooled connection. Each stream has at most one read pending, so the queue is bounded
/// by the number of open streams.
final class StreamReader: Service {
    struct Read: Sendable {
        let task: UUID
        let cursor: StreamCursor
        /// A stream's first read, which also needs the task's head and whether its client wants a stream.
        let opening: Bool
        /// Called once, on any thread.
        let completion: @Sendable (Result<StreamCatchUp, any Error>) -> Void
    }

    /// Batches a single read returns per stream; a stream that gets this many asks again.
    static let pageSize = 500
    /// Streams served by one statement.
    private static let statementLimit = 256

    private let log: StreamLog
    private let logger: Logger
    private let pending = Mutex<[Read]>([])
    private let readNow = Doorbell()

    init(log: StreamLog, logger: Logger) {
        self.log = log
        self.logger = logger
    }

    func read(_ read: Read) {
        pending.withLock { $0.append(read) }
        readNow.ring()
    }

    func run() async {
        // Runs until the server in front of it has drained: the service group stops it after the server.
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await self.readNow.wait()
                while !Task.isCancelled, await self.readPending() {}
            }
        }
        let abandoned = pending.withLock { pending in
            defer { pending.removeAll() }
            return pending
        }
        for read in abandoned { read.completion(.failure(CancellationError())) }
    }

    /// Serves up to `statementLimit` pending reads; `true` when more are waiting.
    private func readPending() async -> Bool {
        let (reads, more) = pending.withLock { pending in
            let reads = Array(pending.prefix(Self.statementLimit))
            pending.removeFirst(reads.count)
            return (reads, !pending.isEmpty)
        }
        guard !reads.isEmpty else { return false }
        do {
            let results = try await log.catchUp(reads.map { ($0.task, $0.cursor, $0.opening) }, pageSize: Self.pageSize)
            for (read, result) in zip(reads, results) { read.completion(.success(result)) }
        } catch {
            logger.warning(
                "stream read failed", metadata: ["streams": "\(reads.count)", "error": "\(String(reflecting: error))"])
            for read in reads { read.completion(.failure(error)) }
        }
        return more
    }
}
