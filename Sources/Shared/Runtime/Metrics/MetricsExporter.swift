import HandoffWire
import Metrics
import Prometheus

/// The process's metrics registry, rendered in Prometheus's text format at `/metrics`.
///
/// swift-metrics is bootstrapped once per process with a Prometheus factory that knows each histogram's buckets
/// (`MetricName`). With `HANDOFF_METRICS=off` nothing is bootstrapped: every metric handle is swift-metrics's no-op,
/// and `/metrics` answers 404 — what the benchmark compares against to measure the metrics' cost.
package struct MetricsExporter: Sendable {
    private let registry: PrometheusCollectorRegistry?

    /// A process that exports nothing (the tests that run servers in process, `HANDOFF_METRICS=off`).
    package static let disabled = MetricsExporter(registry: nil)

    private init(registry: PrometheusCollectorRegistry?) {
        self.registry = registry
    }

    /// Bootstraps swift-metrics for this process; call once, before any component makes a metric handle.
    package static func bootstrap(settings: Settings) throws(SettingsError) -> MetricsExporter {
        guard try settings.isOn(.metrics) else { return .disabled }
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        for name in MetricName.allCases {
            if let buckets = name.durationBuckets { factory.durationHistogramBuckets[name.rawValue] = buckets }
            if let buckets = name.valueBuckets { factory.valueHistogramBuckets[name.rawValue] = buckets }
        }
        MetricsSystem.bootstrap(factory)
        return MetricsExporter(registry: registry)
    }

    /// The text exposition of every metric, or nil when metrics are off.
    package func render() -> [UInt8]? {
        registry?.emitToBuffer()
    }

    /// `Content-Type` of `render()`'s text.
    package static let contentType = "text/plain; version=0.0.4; charset=utf-8"
}
