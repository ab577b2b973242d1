import Foundation
import HandoffWire
import Testing

@Suite struct MetricsTests {
    /// The metrics table (docs/operations.md) is what operators build dashboards from: every metric must be in it,
    /// described as `MetricName` describes it.
    @Test(arguments: MetricName.allCases)
    func everyMetricIsDocumented(metric: MetricName) throws {
        let readme = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
            "../../docs/operations.md")
        let text = try String(contentsOf: readme, encoding: .utf8)
        let row = try #require(
            text.split(separator: "\n").first { $0.hasPrefix("| `\(metric.rawValue)`") },
            "docs/operations.md lacks \(metric.rawValue)")
        #expect(row.hasSuffix("| \(metric.summary) |"))
    }

    /// Prometheus's conventions: one prefix, counters end in `_total`, durations are in seconds.
    @Test(arguments: MetricName.allCases)
    func namesFollowPrometheusConventions(metric: MetricName) {
        #expect(metric.rawValue.hasPrefix("handoff_"))
        if metric.durationBuckets != nil { #expect(metric.rawValue.hasSuffix("_seconds")) }
        #expect(!metric.rawValue.contains("__"))
    }
}
