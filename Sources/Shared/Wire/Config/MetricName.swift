/// Every metric a Handoff process exports, by its Prometheus name: `handoff_` prefix, base units (seconds),
/// `_total` on counters, and labels of bounded cardinality (a route pattern, a model of the catalogue, an outcome —
/// never a task id or a key).
///
/// This is the only place a metric is named. The metrics table of docs/operations.md is checked against this list
/// (`MetricsTests.everyMetricIsDocumented`), and the Prometheus rules in `ops/prometheus` use these names.
package enum MetricName: String, CaseIterable, Sendable {
    // Every process
    case httpRequests = "handoff_http_requests_total"
    case ready = "handoff_ready"
    case connectionsInUse = "handoff_postgres_connections_in_use"
    case poolSize = "handoff_postgres_pool_size"
    case deadlineMisses = "handoff_postgres_deadline_misses_total"
    case listenerConnected = "handoff_postgres_listener_connected"
    case listenerReconnects = "handoff_postgres_listener_reconnects_total"
    // The API server
    case handoffDuration = "handoff_handoff_duration_seconds"
    case rateLimitRejections = "handoff_rate_limit_rejections_total"
    // The worker
    case queueDepth = "handoff_queue_depth"
    case queueOldestAge = "handoff_queue_oldest_age_seconds"
    case queueWait = "handoff_task_queue_wait_seconds"
    case tasks = "handoff_tasks_total"
    case tasksRescued = "handoff_tasks_rescued_total"
    case tokens = "handoff_tokens_total"
    case eventsWritten = "handoff_stream_events_written_total"
    case flushEvents = "handoff_stream_flush_events"
    case flushDuration = "handoff_stream_flush_duration_seconds"
    case upstreamRequests = "handoff_upstream_requests_total"
    case upstreamErrors = "handoff_upstream_errors_total"
    case upstreamFailovers = "handoff_upstream_failovers_total"
    case continuations = "handoff_continuations_total"
    // An SSE replica
    case openStreams = "handoff_sse_open_streams"
    case firstEvent = "handoff_sse_first_event_seconds"
    case eventsSent = "handoff_sse_events_sent_total"
    case keepalives = "handoff_sse_keepalives_total"

    /// What it measures, and its labels: docs/operations.md's table.
    package var summary: String {
        switch self {
        case .httpRequests: "Requests answered, by `route` (the route's pattern), `method` and `status`."
        case .ready: "1 while `/readyz` answers 200, else 0."
        case .connectionsInUse: "Pooled Postgres connections running a statement now."
        case .poolSize:
            "Most pooled Postgres connections this process may open (`HANDOFF_DB_POOL_SIZE`; a worker's stream writer has two more)."
        case .deadlineMisses: "Statements that got no answer within their deadline (`HANDOFF_DB_TIMEOUT_MS`)."
        case .listenerConnected: "1 while the LISTEN connection listens, else 0 (worker and SSE replicas)."
        case .listenerReconnects: "LISTEN connections lost and reconnected."
        case .handoffDuration: "POST received to `302` answered, by `route`."
        case .rateLimitRejections: "`429`s of a key's limits, by `kind` (`requests` or `tokens`)."
        case .queueDepth: "Queued tasks, sampled by each worker."
        case .queueOldestAge: "Age of the oldest queued task (0 when none), sampled by each worker."
        case .queueWait: "Enqueue to claim, per claimed task."
        case .tasks:
            "Tasks ended by this worker, by `outcome` (`succeeded`, `failed`, `cancelled`, `abandoned`, `handed_back`, "
                + "`lost`)."
        case .tasksRescued:
            "Tasks whose worker was lost, by `result` (`requeued`: to start again, or to be continued; or `failed` with "
                + "`worker_lost`)."
        case .tokens: "Tokens of ended tasks by `model` and `kind` (`prompt`, `completion`), from their usage."
        case .eventsWritten: "Stream events committed to the stream table."
        case .flushEvents: "Events per minibatch flush."
        case .flushDuration: "Duration of a minibatch flush (one statement and its commit)."
        case .upstreamRequests: "Requests sent to upstream model servers, by `model`."
        case .upstreamErrors: "Upstream requests that failed, before or during the reply, by `model`."
        case .upstreamFailovers:
            "Upstream failures before the first token, after which the next server is tried, by `model`."
        case .continuations:
            "Answers continued after their server failed mid-answer, by `model` and `outcome` (`completed`, `failed`, "
                + "`not_continuable`)."
        case .openStreams: "Streams this replica is serving now."
        case .firstEvent: "Stream request received to its first event written, by `api` (`chat`, `responses`)."
        case .eventsSent: "Stream events written to clients."
        case .keepalives: "`: ping` keepalive lines written."
        }
    }

    /// Histogram buckets for the metrics that are histograms.
    package var durationBuckets: [Duration]? {
        switch self {
        case .handoffDuration:
            [
                .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
                .milliseconds(25),
                .milliseconds(50), .milliseconds(100), .milliseconds(250), .seconds(1),
            ]
        case .flushDuration:
            [
                .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
                .milliseconds(25),
                .milliseconds(50), .milliseconds(100), .milliseconds(500),
            ]
        case .queueWait, .firstEvent:
            [
                .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
                .milliseconds(250),
                .milliseconds(500), .seconds(1), .seconds(5), .seconds(30), .seconds(120),
            ]
        default: nil
        }
    }

    package var valueBuckets: [Double]? {
        self == .flushEvents ? [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024] : nil
    }
}
