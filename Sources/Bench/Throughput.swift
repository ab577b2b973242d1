import ArgumentParser
import Foundation

/// Scenario 4: as many whole-stack completions as `concurrency` closed-loop clients can drive, and the SSE
/// events each replica delivered per second.
struct Throughput: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Whole-stack completions per second.")

    @Option(help: "Caddy's address.") var host = "127.0.0.1"
    @Option(help: "Caddy's port.") var port = 8080
    @Option(help: "Clients, each running one completion after another.") var concurrency = 64
    @Option(help: "Seconds to run.") var duration = 10.0
    @Option(help: "Tokens per reply.") var tokens = 16
    @Option(help: "The model: demo, or a catalogue model in front of an upstream.") var model = "demo"

    struct Result: Encodable {
        let scenario = "throughput"
        let concurrency: Int
        let duration: Double
        let tokens: Int
        let model: String
        let completed: Int
        let errors: Int
        let completionsPerSecond: Double
        let eventsPerSecondByReplica: [String: Double]
        let completionMilliseconds: LatencySummary
    }

    func run() async throws {
        let client = CompletionClient(origin: HTTPExchange(host: host, port: port), model: model)
        let end = ContinuousClock.now + .seconds(duration)
        let errors = Tally()
        let events = Tally()
        progress("throughput: \(concurrency) clients for \(duration) s")
        let started = ContinuousClock.now
        let timings = await withTaskGroup(of: [CompletionClient.Timing].self) { group in
            for worker in 0..<concurrency {
                group.addTask {
                    var mine: [CompletionClient.Timing] = []
                    var index = 0
                    while ContinuousClock.now < end {
                        index += 1
                        do {
                            let timing = try await client.complete(
                                tokens: tokens, prompt: "throughput \(worker) \(index)", due: .now)
                            events.add(timing.replica, timing.events)
                            mine.append(timing)
                        } catch {
                            errors.add("errors")
                        }
                    }
                    return mine
                }
            }
            return await group.reduce(into: []) { $0 += $1 }
        }
        let elapsed = ContinuousClock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let replicas = Set(timings.map(\.replica))
        try emit(
            Result(
                concurrency: concurrency, duration: duration, tokens: tokens, model: model, completed: timings.count,
                errors: errors["errors"],
                completionsPerSecond: Double(timings.count) / seconds,
                eventsPerSecondByReplica: Dictionary(
                    uniqueKeysWithValues: replicas.map { ($0, Double(events[$0]) / seconds) }),
                completionMilliseconds: LatencySummary(timings.map(\.done))))
    }
}
