import HandoffWire
import Metrics

/// What a process tells its operators: whether it is ready, and its metrics.
package struct Operations: Sendable {
    package let readiness: Readiness
    package let metrics: MetricsExporter

    package init(readiness: Readiness, metrics: MetricsExporter) {
        self.readiness = readiness
        self.metrics = metrics
    }

    /// A server process's: swift-metrics bootstrapped first, so that every handle made from here on (readiness's
    /// gauge among them) reaches the registry. `listens`: the process has a LISTEN connection (see `Readiness`).
    package static func bootstrap(settings: Settings, listens: Bool) throws(SettingsError) -> Operations {
        let metrics = try MetricsExporter.bootstrap(settings: settings)
        return Operations(readiness: Readiness(listens: listens), metrics: metrics)
    }
}
