/// What every Handoff process serves for its operators, whatever else it does: the API server and the worker
/// through `HTTPService`, an SSE replica through its own handler.
package enum OperationsRoute {
    /// `200 ok` while the process runs and takes requests.
    package static let health = "/healthz"
    package static let healthBody = "ok"
    /// `200 ready`, or `503` with the reason as an OpenAI error: see `Readiness`. Caddy's active health checks use it.
    package static let readiness = "/readyz"
    package static let readyBody = "ready"
    /// Prometheus's text format (`MetricsExporter`).
    package static let metrics = "/metrics"
}
