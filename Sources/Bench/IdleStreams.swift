import ArgumentParser
import Foundation
import HandoffRuntime
import HandoffWire
import ServiceLifecycle
import Synchronization
import UnixSignals

/// Scenario 3: many concurrent streams held open on ONE SSE replica, straight to it (through Caddy each stream
/// would cost Caddy two descriptors). The tasks are queued while no worker runs, so every stream stays idle
/// with keepalives. Clients are spread over several processes (each is capped by the open-file limit) and
/// source addresses in 127.0.0.0/8 (each source address has ~28k ephemeral ports).
struct IdleStreams: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "idle", abstract: "Memory and CPU of idle streams on one SSE replica.")

    @Option(help: "The API server's address (tasks are created straight through it).") var apiHost = "127.0.0.1"
    @Option(help: "The API server's port.") var apiPort = 8081
    @Option(help: "The SSE replica's address.") var sseHost = "127.0.0.1"
    @Option(help: "The SSE replica's port.") var ssePort = 8082
    @Option(help: "The SSE replica's pid, whose /proc entry is sampled.") var ssePid: Int32
    @Option(help: "Streams to hold open.") var streams = 1000
    @Option(help: "Client processes to spread them over.") var processes = 4
    @Option(help: "Seconds to hold them once all are open.") var hold = 20.0

    struct Result: Encodable {
        let scenario = "idle"
        let streamsRequested: Int
        let streamsOpen: Int
        let clientProcesses: Int
        let rssBeforeKiB: Int
        let rssLoadedKiB: Int
        let kibPerStream: Double
        let holdSeconds: Double
        let idleCPUPercent: Double
        let pingsReceived: Int
        let openFileHardLimit: Int
    }

    func run() async throws {
        let api = HTTPExchange(host: apiHost, port: apiPort)
        progress("idle: creating \(streams) tasks")
        let paths = try await createTasks(api: api)
        let before = try ProcessSample(pid: ssePid)

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("handoff-idle-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        var clients: [IdleClientProcess] = []
        for index in 0..<processes {
            let share = paths.enumerated().filter { $0.offset % processes == index }.map(\.element)
            clients.append(
                try IdleClientProcess(
                    paths: share, file: directory.appendingPathComponent("paths-\(index)"),
                    source: "127.0.\(1 + index / 250).\(2 + index % 250)",
                    host: sseHost, port: ssePort))
        }
        progress("idle: opening \(paths.count) streams from \(processes) processes")
        var open = 0
        for client in clients { open += try client.waitUntilReady() }
        progress("idle: \(open) streams open; holding \(hold) s")
        try await Task.sleep(for: .seconds(1))
        let loaded = try ProcessSample(pid: ssePid)
        try await Task.sleep(for: .seconds(hold))
        let after = try ProcessSample(pid: ssePid)
        var pings = 0
        for client in clients { pings += try client.stop() }

        try emit(
            Result(
                streamsRequested: streams, streamsOpen: open, clientProcesses: processes,
                rssBeforeKiB: before.rssKiB, rssLoadedKiB: loaded.rssKiB,
                kibPerStream: open > 0 ? Double(loaded.rssKiB - before.rssKiB) / Double(open) : .nan,
                holdSeconds: hold, idleCPUPercent: after.cpuPercent(since: loaded), pingsReceived: pings,
                openFileHardLimit: OpenFiles.hardLimit))
    }

    private func createTasks(api: HTTPExchange) async throws -> [String] {
        let body = CompletionClient.body(model: "demo", tokens: 16, prompt: "idle")
        return try await withThrowingTaskGroup(of: [String].self) { group in
            let lanes = 32
            for lane in 0..<lanes {
                group.addTask {
                    var mine: [String] = []
                    for _ in stride(from: lane, to: streams, by: lanes) {
                        mine.append(try await api.handoff(path: CompletionsRoute.handoff, json: body))
                    }
                    return mine
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
    }
}

/// `handoff-bench idle-client`: opens the streams it is given, prints `ready <open>`, holds them until SIGTERM,
/// then prints the number of keepalive pings it received.
struct IdleClient: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "idle-client", abstract: "Internal: one client process of `idle`.", shouldDisplay: false)

    @Option var pathsFile: String
    @Option var source: String
    @Option var host: String
    @Option var port: Int

    func run() async throws {
        OpenFiles.raiseSoftLimit()
        let paths = try String(contentsOfFile: pathsFile, encoding: .utf8).split(separator: "\n").map(String.init)
        let exchange = HTTPExchange(host: host, port: port, source: source)
        let opened = Tally()
        let signals = await UnixSignalsSequence(trapping: .sigterm)
        await withDiscardingTaskGroup { group in
            let connecting = ConnectGate(limit: 128)
            for path in paths {
                group.addTask {
                    await connecting.enter()
                    var entered = true
                    do {
                        try await exchange.run(method: .GET, path: path) { head, parts in
                            connecting.leave()
                            entered = false
                            opened.add("attempted")
                            guard head.status == 200 else { return }
                            opened.add("open")
                            var decoder = ServerSentEventDecoder.benchmark
                            while let part = try await parts.next(), case .body(let buffer) = part {
                                let before = decoder.comments
                                _ = try decoder.feed(buffer.readableBytesView)
                                opened.add("pings", decoder.comments - before)
                            }
                        }
                    } catch {}
                    if entered {
                        connecting.leave()
                        opened.add("attempted")
                    }
                }
            }
            while opened["attempted"] < paths.count { try? await Task.sleep(for: .milliseconds(50)) }
            report("ready \(opened["open"])")
            for await _ in signals { break }
            group.cancelAll()
        }
        report("pings \(opened["pings"])")
    }
}

/// A line for the parent process, unbuffered.
private func report(_ line: String) {
    FileHandle.standardOutput.write(Data("\(line)\n".utf8))
}

/// Bounds connects in flight, so the server's accept queue is not flooded.
final class ConnectGate: Sendable {
    private struct State {
        var inFlight = 0
        var waiting: [CheckedContinuation<Void, Never>] = []
    }

    private let limit: Int
    private let state = Mutex(State())

    init(limit: Int) {
        self.limit = limit
    }

    func enter() async {
        await withCheckedContinuation { continuation in
            let now = state.withLock { state -> Bool in
                guard state.inFlight < limit else {
                    state.waiting.append(continuation)
                    return false
                }
                state.inFlight += 1
                return true
            }
            if now { continuation.resume() }
        }
    }

    /// Hands the slot to the next waiter, if any.
    func leave() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard !state.waiting.isEmpty else {
                state.inFlight -= 1
                return nil
            }
            return state.waiting.removeFirst()
        }
        next?.resume()
    }
}
