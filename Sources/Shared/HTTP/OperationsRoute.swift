/// What every Handoff process serves for its operators, whatever else it does: the API server and the worker
/// through `HTTPService`, an SSE replica through its own handler.
public enum OperationsRoute {
    /// `200 ok` while the process runs and takes requests.
    public static let health = "/healthz"
    public static let healthBody = "ok"
    /// `200 ready`, or `503` with the reason as an OpenAI error: see `Readiness`. Caddy's active health checks use it.
    public static let readiness = "/readyz"
    public static let readyBody = "ready"
    /// Prometheus's text format (`MetricsExporter`).
    public static let metrics = "/metrics"
}
