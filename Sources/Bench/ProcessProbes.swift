import Foundation

/// RSS and CPU time of a process, read from /proc.
struct ProcessSample {
    let rssKiB: Int
    let cpuTicks: Int
    let taken: ContinuousClock.Instant

    init(pid: Int32) throws {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        else { throw BenchError.protocolViolation("no VmRSS for pid \(pid)") }
        // Fields after the parenthesised command name; utime and stime are the 14th and 15th of the line.
        let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        let fields = stat[stat.index(after: stat.lastIndex(of: ")")!)...].split(separator: " ")
        self.rssKiB = kib
        self.cpuTicks = (Int(fields[11]) ?? 0) + (Int(fields[12]) ?? 0)
        self.taken = .now
    }

    /// CPU used between `earlier` and this sample, as a percentage of one core.
    func cpuPercent(since earlier: ProcessSample) -> Double {
        let wall = taken - earlier.taken
        let seconds = Double(wall.components.seconds) + Double(wall.components.attoseconds) / 1e18
        return Double(cpuTicks - earlier.cpuTicks) / Double(sysconf(Int32(_SC_CLK_TCK))) / seconds * 100
    }
}

/// A child `handoff-bench idle-client`, driven through its stdout.
final class IdleClientProcess {
    private let process = Process()
    private let output = Pipe()
    private var buffer = ""

    init(paths: [String], file: URL, source: String, host: String, port: Int) throws {
        try paths.joined(separator: "\n").write(to: file, atomically: true, encoding: .utf8)
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = [
            "idle-client", "--paths-file", file.path, "--source", source, "--host", host, "--port", String(port),
        ]
        process.standardOutput = output
        try process.run()
    }

    /// Blocks until the child reports how many of its streams are open.
    func waitUntilReady() throws -> Int {
        try expect("ready")
    }

    /// SIGTERMs the child and returns the pings it received.
    func stop() throws -> Int {
        process.terminate()
        defer { process.waitUntilExit() }
        return try expect("pings")
    }

    private func expect(_ word: String) throws -> Int {
        while true {
            if let newline = buffer.firstIndex(of: "\n") {
                let line = buffer[..<newline]
                buffer = String(buffer[buffer.index(after: newline)...])
                let parts = line.split(separator: " ")
                if parts.first.map(String.init) == word, parts.count == 2, let value = Int(parts[1]) { return value }
                continue
            }
            let data = output.fileHandleForReading.availableData
            guard !data.isEmpty else { throw BenchError.protocolViolation("idle client exited before '\(word)'") }
            buffer += String(decoding: data, as: UTF8.self)
        }
    }
}
