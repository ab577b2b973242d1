import ArgumentParser

/// `handoff-bench`: the load generator behind `make bench`. Each scenario prints one JSON object on stdout.
@main
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "handoff-bench",
        abstract: "Measures a running Handoff stack.",
        subcommands: [HandoffLatency.self, CommitLatency.self, Throughput.self, IdleStreams.self, IdleClient.self])
}
