import HandoffWire
import Metrics

/// An SSE replica's metrics, made once, after the process bootstrapped swift-metrics, and shared by every
/// connection: the handles of a stream's hot path are looked up here, never in the registry per event.
struct StreamMetrics: Sendable {
    let openStreams = Meter(label: MetricName.openStreams.rawValue)
    let eventsSent = Counter(label: MetricName.eventsSent.rawValue)
    let keepalives = Counter(label: MetricName.keepalives.rawValue)
    private let firstChatEvent = Timer(label: MetricName.firstEvent.rawValue, dimensions: [("api", "chat")])
    private let firstResponsesEvent = Timer(label: MetricName.firstEvent.rawValue, dimensions: [("api", "responses")])

    func firstEvent(_ form: StreamDelivery.Form) -> Timer {
        form == .chat ? firstChatEvent : firstResponsesEvent
    }

    /// Counts an answer; `route` is the pattern the request matched (`StreamRequest.route`).
    func answered(route: String, method: String, status: Int) {
        Counter(
            label: MetricName.httpRequests.rawValue,
            dimensions: [("route", route), ("method", method), ("status", String(status))]
        )
        .increment()
    }
}
