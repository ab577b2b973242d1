import ArgumentParser
import Foundation

/// Scenario 1: POST → 302 → GET → first byte and first event, at a fixed request rate. Open loop: each request
/// is timed from the moment it was due, so a system that falls behind shows its queueing.
struct HandoffLatency: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "handoff", abstract: "Hand-off latency at a fixed request rate.")

    @Option(help: "Caddy's address.") var host = "127.0.0.1"
    @Option(help: "Caddy's port.") var port = 8080
    @Option(help: "Requests per second.") var rate = 100.0
    @Option(help: "Seconds to run.") var duration = 10.0
    @Option(help: "Tokens per reply.") var tokens = 16
    @Option(help: "The model: demo, or a catalogue model in front of an upstream.") var model = "demo"
    @Option(help: "An API key, sent on every POST (for an API started with HANDOFF_AUTH=required).") var apiKey: String?

    struct Result: Encodable {
        let scenario = "handoff"
        let rate: Double
        let duration: Double
        let tokens: Int
        let model: String
        let completed: Int
        let errors: Int
        let redirectMilliseconds: LatencySummary
        let firstByteMilliseconds: LatencySummary
        let firstEventMilliseconds: LatencySummary
        let firstTokenMilliseconds: LatencySummary
        let doneMilliseconds: LatencySummary
    }

    func run() async throws {
        let client = CompletionClient(origin: HTTPExchange(host: host, port: port), model: model, apiKey: apiKey)
        let total = Int(rate * duration)
        let start = ContinuousClock.now + .milliseconds(100)
        progress("handoff: \(total) requests at \(rate)/s")
        let errors = Tally()
        let timings = await withTaskGroup(of: CompletionClient.Timing?.self) { group in
            for index in 0..<total {
                let due = start + .seconds(Double(index) / rate)
                group.addTask {
                    try? await Task.sleep(until: due)
                    do {
                        return try await client.complete(tokens: tokens, prompt: "latency \(index)", due: due)
                    } catch {
                        errors.add("errors")
                        return nil
                    }
                }
            }
            return await group.reduce(into: [CompletionClient.Timing]()) { if let timing = $1 { $0.append(timing) } }
        }
        try emit(
            Result(
                rate: rate, duration: duration, tokens: tokens, model: model, completed: timings.count,
                errors: errors["errors"],
                redirectMilliseconds: LatencySummary(timings.map(\.redirect)),
                firstByteMilliseconds: LatencySummary(timings.map(\.firstByte)),
                firstEventMilliseconds: LatencySummary(timings.map(\.firstEvent)),
                firstTokenMilliseconds: LatencySummary(timings.map(\.firstToken)),
                doneMilliseconds: LatencySummary(timings.map(\.done))))
    }
}
