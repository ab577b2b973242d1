import ArgumentParser
import Foundation
import Shared

/// Scenario 2: many streams active at once; each minibatch carries the time its transaction began (the SSE
/// server's `HANDOFF_BENCH_STAMPS`), and the client measures how long after that the batch arrived. The stamp is
/// the transaction's start, so the figure includes the commit itself and slightly overstates the latency.
struct CommitLatency: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "commit-latency", abstract: "Commit-to-client latency under many active streams.")

    @Option(help: "Caddy's address.") var host = "127.0.0.1"
    @Option(help: "Caddy's port.") var port = 8080
    @Option(help: "Streams active at once.") var streams = 1000
    @Option(help: "Tokens per reply (at the worker's token delay this sets how long each stream lasts).") var tokens = 250
    @Option(help: "Seconds at the start of each stream left out while all of them start up.") var warmup = 2.0

    struct Result: Encodable {
        let scenario = "commit"
        let streams: Int
        let tokens: Int
        let completed: Int
        let errors: Int
        let batches: Int
        let eventsPerSecond: Double
        let commitToClientMilliseconds: LatencySummary
        /// The part of it before the replica wrote the batch: commit, NOTIFY, the replica's fetch and fan-out.
        let commitToReplicaMilliseconds: LatencySummary
    }

    func run() async throws {
        let client = CompletionClient(origin: HTTPExchange(host: host, port: port))
        let errors = Tally()
        progress("commit-latency: \(streams) streams of \(tokens) tokens")
        let started = ContinuousClock.now
        let measureFrom = Date().timeIntervalSince1970 + warmup
        let perStream = await withTaskGroup(of: ([Sample], Int)?.self) { group in
            for index in 0..<streams {
                group.addTask {
                    do {
                        var samples: [Sample] = []
                        let events = try await client.stream(tokens: tokens, prompt: "commit \(index)") { event in
                            let arrived = Date().timeIntervalSince1970
                            guard arrived >= measureFrom,
                                let stamp = event.comments.lazy.compactMap(Self.stamp).first
                            else { return }
                            samples.append(Sample(
                                toClient: .microseconds(Int64(arrived * 1e6) - stamp.committed),
                                toReplica: .microseconds(stamp.sent - stamp.committed)))
                        }
                        return (samples, events)
                    } catch {
                        errors.add("errors")
                        return nil
                    }
                }
            }
            return await group.reduce(into: [([Sample], Int)]()) { if let result = $1 { $0.append(result) } }
        }
        let elapsed = ContinuousClock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let samples = perStream.flatMap(\.0)
        try emit(Result(
            streams: streams, tokens: tokens, completed: perStream.count, errors: errors["errors"], batches: samples.count,
            eventsPerSecond: Double(perStream.reduce(0) { $0 + $1.1 }) / seconds,
            commitToClientMilliseconds: LatencySummary(samples.map(\.toClient)),
            commitToReplicaMilliseconds: LatencySummary(samples.map(\.toReplica))))
    }

    struct Sample: Sendable {
        let toClient: Duration
        let toReplica: Duration
    }

    private static func stamp(_ comment: String) -> (committed: Int64, sent: Int64)? {
        let prefix = ServerSentEvents.commitStampPrefix.dropFirst()  // the parser drops the colon
        guard comment.hasPrefix(prefix) else { return nil }
        let fields = comment.dropFirst(prefix.count).split(separator: " ")
        guard fields.count == 2, let committed = Int64(fields[0]), let sent = Int64(fields[1]) else { return nil }
        return (committed, sent)
    }
}
