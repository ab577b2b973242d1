import ArgumentParser
import Foundation
import HandoffWire

/// Scenario 2: many streams active at once. Each minibatch carries a trace (the SSE server's
/// `HANDOFF_BENCH_STAMPS`): when its transaction began, when the replica's NOTIFY arrived, when the replica held
/// its events and when it wrote them. The client adds when it parsed the batch, and — given the database — when
/// Postgres committed it (`CommitTimes`), so the latency is measured from the commit and split hop by hop.
struct CommitLatency: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "commit-latency", abstract: "Commit-to-client latency under many active streams.")

    @Option(help: "Caddy's address.") var host = "127.0.0.1"
    @Option(help: "Caddy's port.") var port = 8080
    @Option(help: "Streams active at once.") var streams = 1000
    @Option(help: "Tokens per reply (at the worker's token delay this sets how long each stream lasts).") var tokens =
        250
    @Option(help: "Seconds at the start of each stream left out while all of them start up.") var warmup = 2.0
    @Option(help: "Read the streams straight from these SSE replicas' ports, in turn, instead of through Caddy.")
    var replicaPort: [Int] = []
    @Option(help: "The stack's database, with track_commit_timestamp on: latencies are then measured from each commit.")
    var databaseURL: String?

    struct Result: Encodable {
        let scenario = "commit"
        /// Whether the streams were read through Caddy or straight from the replicas.
        let path: String
        let streams: Int
        let tokens: Int
        let completed: Int
        let errors: Int
        let batches: Int
        /// Events that arrived while every stream was running, after the warm-up, per second: the steady rate the
        /// offer (streams × token rate) is compared with.
        let eventsPerSecond: Double
        /// All events over the whole run, start-up and the streams' ends included.
        let wholeRunEventsPerSecond: Double
        /// From the commit (without the database: from the transaction's start) to the client.
        let commitToClientMilliseconds: LatencySummary
        /// From the transaction's start to the client: the commit-to-client latency and the flush statement before it.
        let transactionToClientMilliseconds: LatencySummary
        /// The same way hop by hop (`Hop`), over the batches that took each hop.
        let hopsMilliseconds: [String: LatencySummary]
    }

    /// The legs of a batch's way, between the stamps.
    enum Hop: String, CaseIterable {
        /// The flush statement from its transaction's start to its commit (needs the database).
        case transactionToCommit
        /// Commit to the replica's NOTIFY: the notification's delivery and the replica reading it.
        case commitToNotified
        /// NOTIFY to the events in hand: zero when the notification carried them, else the fetch.
        case notifiedToReceived
        /// Events in hand to written on the client's socket: the wake-ups, the event loop hop, rendering.
        case receivedToSent
        /// Written by the replica to parsed by the client: Caddy and the client.
        case sentToClient
    }

    func run() async throws {
        let caddy = HTTPExchange(host: host, port: port)
        let clients =
            replicaPort.isEmpty
            ? [CompletionClient(origin: caddy)]
            : replicaPort.map { CompletionClient(origin: caddy, streamOrigin: HTTPExchange(host: host, port: $0)) }
        let errors = Tally()
        progress("commit-latency: \(streams) streams of \(tokens) tokens")
        let started = ContinuousClock.now
        let measureFrom = Date().timeIntervalSince1970 + warmup
        let perStream = await withTaskGroup(of: ([Sample], [Double])?.self) { group in
            for index in 0..<streams {
                group.addTask {
                    do {
                        var task: UUID?
                        var samples: [Sample] = []
                        var arrivals: [Double] = []
                        _ = try await clients[index % clients.count].stream(tokens: tokens, prompt: "commit \(index)") {
                            location in
                            task = Self.task(in: location)
                        } onEvent: { event in
                            let arrived = Date().timeIntervalSince1970
                            arrivals.append(arrived)
                            guard arrived >= measureFrom, let task, let sequence = Int(event.lastEventID),
                                let stamp = event.comments.lazy.compactMap(Self.stamp).first
                            else { return }
                            samples.append(
                                Sample(task: task, sequence: sequence, stamp: stamp, arrived: Int64(arrived * 1e6)))
                        }
                        return (samples, arrivals)
                    } catch {
                        errors.add("errors")
                        return nil
                    }
                }
            }
            return await group.reduce(into: [([Sample], [Double])]()) { if let result = $1 { $0.append(result) } }
        }
        let elapsed = ContinuousClock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        var samples = perStream.flatMap(\.0)
        if let databaseURL {
            let times = try await CommitTimes.load(databaseURL: databaseURL, tasks: Array(Set(samples.map(\.task))))
            for index in samples.indices {
                samples[index].committed = times.committed(task: samples[index].task, sequence: samples[index].sequence)
            }
        }
        try emit(
            Result(
                path: replicaPort.isEmpty ? "caddy" : "direct", streams: streams, tokens: tokens,
                completed: perStream.count,
                errors: errors["errors"], batches: samples.count,
                eventsPerSecond: Self.steadyRate(perStream.map(\.1), from: measureFrom) ?? 0,
                wholeRunEventsPerSecond: Double(perStream.reduce(0) { $0 + $1.1.count }) / seconds,
                commitToClientMilliseconds: LatencySummary(
                    samples.map { .microseconds($0.arrived - ($0.committed ?? $0.stamp.began)) }),
                transactionToClientMilliseconds: LatencySummary(
                    samples.map { .microseconds($0.arrived - $0.stamp.began) }),
                hopsMilliseconds: Dictionary(
                    uniqueKeysWithValues: Hop.allCases.map { hop in
                        (hop.rawValue, LatencySummary(samples.compactMap { $0.duration(of: hop) }))
                    })))
    }

    /// One batch's stamp (`ServerSentEvents.commitStamp`), in Unix microseconds; `notified` and `received` are 0 for
    /// a batch a stream read itself.
    struct Stamp: Sendable {
        let began: Int64
        let notified: Int64
        let received: Int64
        let sent: Int64
    }

    struct Sample: Sendable {
        let task: UUID
        /// The id of the batch's first event the client got.
        let sequence: Int
        let stamp: Stamp
        let arrived: Int64
        var committed: Int64?

        func duration(of hop: Hop) -> Duration? {
            let (from, to): (Int64?, Int64?) =
                switch hop {
                case .transactionToCommit: (stamp.began, committed)
                case .commitToNotified: (committed ?? stamp.began, stamp.notified)
                case .notifiedToReceived: (stamp.notified, stamp.received)
                case .receivedToSent: (stamp.received, stamp.sent)
                case .sentToClient: (stamp.sent, arrived)
                }
            guard let from, let to, from > 0, to > 0 else { return nil }
            return .microseconds(to - from)
        }
    }

    private static func stamp(_ comment: String) -> Stamp? {
        let prefix = ServerSentEvents.commitStampPrefix.dropFirst()  // the parser drops the colon
        guard comment.hasPrefix(prefix) else { return nil }
        let fields = comment.utf8.dropFirst(prefix.utf8.count).split(separator: UInt8(ascii: " "))
            .compactMap { Int64(String(decoding: $0, as: UTF8.self)) }
        guard fields.count == 4 else { return nil }
        return Stamp(began: fields[0], notified: fields[1], received: fields[2], sent: fields[3])
    }

    /// Events per second between `start` and the moment the first stream ended: while all were running.
    private static func steadyRate(_ arrivals: [[Double]], from start: Double) -> Double? {
        guard let end = arrivals.compactMap(\.last).min(), end > start else { return nil }
        let events = arrivals.reduce(0) { count, stream in count + stream.count { $0 >= start && $0 <= end } }
        return Double(events) / (end - start)
    }

    /// The task a hand-off's `Location` names (`StreamRoute.location`).
    private static func task(in location: String) -> UUID? {
        location.split(separator: "?").first?.split(separator: "/").last.flatMap { UUID(uuidString: String($0)) }
    }
}
