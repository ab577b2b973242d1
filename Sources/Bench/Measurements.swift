import Foundation
import Synchronization

/// Latencies in milliseconds, summarised the way the report shows them.
struct LatencySummary: Codable, Sendable {
    let count: Int
    let p50: Double
    let p90: Double
    let p99: Double
    let max: Double

    init(_ samples: [Duration]) {
        let sorted = samples.map { Double($0.components.seconds) * 1e3 + Double($0.components.attoseconds) / 1e15 }
            .sorted()
        func percentile(_ p: Double) -> Double {
            sorted.isEmpty ? .nan : sorted[min(sorted.count - 1, Int((p * Double(sorted.count)).rounded(.up)) - 1)]
        }
        self.count = sorted.count
        self.p50 = percentile(0.50)
        self.p90 = percentile(0.90)
        self.p99 = percentile(0.99)
        self.max = sorted.last ?? .nan
    }
}

/// Every scenario prints one JSON object on stdout; progress goes to stderr.
func emit(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    encoder.nonConformingFloatEncodingStrategy = .convertToString(
        positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    FileHandle.standardOutput.write(try encoder.encode(value) + Data("\n".utf8))
}

func progress(_ message: String) {
    FileHandle.standardError.write(Data("[bench] \(message)\n".utf8))
}

/// A sendable counter for the few totals the scenarios keep.
final class Tally: Sendable {
    private let values = Mutex<[String: Int]>([:])

    func add(_ key: String, _ amount: Int = 1) {
        values.withLock { $0[key, default: 0] += amount }
    }

    subscript(key: String) -> Int {
        values.withLock { $0[key, default: 0] }
    }
}
