/// Every setting of every Handoff process: its environment variable, its default and what it does.
///
/// This is the only place a key is named. The README's settings table is checked against this list by
/// `ConfigKeyDocumentationTests`, so a new key cannot ship undocumented.
public enum ConfigKey: String, CaseIterable, Sendable {
    case databaseURL = "DATABASE_URL"
    case databasePoolSize = "HANDOFF_DB_POOL_SIZE"
    case databaseTimeoutMilliseconds = "HANDOFF_DB_TIMEOUT_MS"
    case secret = "HANDOFF_SECRET"
    case secretFile = "HANDOFF_SECRET_FILE"
    case tokenTTLSeconds = "HANDOFF_TOKEN_TTL_SECONDS"
    case models = "HANDOFF_MODELS"
    case maxBodyBytes = "HANDOFF_MAX_BODY_BYTES"
    case maxTokensLimit = "HANDOFF_MAX_TOKENS_LIMIT"
    case apiHost = "HANDOFF_API_HOST"
    case apiPort = "HANDOFF_API_PORT"
    case sseHost = "HANDOFF_SSE_HOST"
    case ssePort = "HANDOFF_SSE_PORT"
    case keepaliveSeconds = "HANDOFF_KEEPALIVE_SECONDS"
    case ssePollMilliseconds = "HANDOFF_SSE_POLL_MS"
    case sseDrainSeconds = "HANDOFF_SSE_DRAIN_SECONDS"
    case workerID = "HANDOFF_WORKER_ID"
    case workerConcurrency = "HANDOFF_WORKER_CONCURRENCY"
    case workerPollMilliseconds = "HANDOFF_WORKER_POLL_MS"
    case flushWindowMilliseconds = "HANDOFF_FLUSH_MS"
    case flushMaxEvents = "HANDOFF_FLUSH_MAX_EVENTS"
    case leaseSeconds = "HANDOFF_LEASE_SECONDS"
    case maxAttempts = "HANDOFF_MAX_ATTEMPTS"
    case demoTokenDelayMilliseconds = "HANDOFF_DEMO_TOKEN_DELAY_MS"
    case logLevel = "HANDOFF_LOG_LEVEL"
    case benchStamps = "HANDOFF_BENCH_STAMPS"

    /// The value used when the variable is not set; `nil` when there is deliberately none.
    public var defaultValue: String? {
        switch self {
        case .databaseURL: "postgres://postgres@127.0.0.1:54329/handoff"
        case .databasePoolSize: "4"
        case .databaseTimeoutMilliseconds: "1500"
        case .secret: nil
        case .secretFile: ".data/stream-secret"
        case .tokenTTLSeconds: "3600"
        case .models: "demo"
        case .maxBodyBytes: "1048576"
        case .maxTokensLimit: "4096"
        case .apiHost: "127.0.0.1"
        case .apiPort: "8081"
        case .sseHost: "127.0.0.1"
        case .ssePort: "8082"
        case .keepaliveSeconds: "15"
        case .ssePollMilliseconds: "1000"
        case .sseDrainSeconds: "10"
        case .workerID: nil
        case .workerConcurrency: "16"
        case .workerPollMilliseconds: "1000"
        case .flushWindowMilliseconds: "15"
        case .flushMaxEvents: "256"
        case .leaseSeconds: "10"
        case .maxAttempts: "3"
        case .demoTokenDelayMilliseconds: "20"
        case .logLevel: "info"
        case .benchStamps: "0"
        }
    }

    public var summary: String {
        switch self {
        case .databaseURL: "Postgres URL (postgres://user[:password]@host[:port]/database)."
        case .databasePoolSize: "Most pooled Postgres connections a process holds (the listener has its own one)."
        case .databaseTimeoutMilliseconds: "How long the API waits for Postgres before answering 503."
        case .secret: "HMAC secret for stream tokens, shared by API and SSE servers. Overrides the secret file."
        case .secretFile: "Where the secret is read from, and created (random, mode 0600) when missing."
        case .tokenTTLSeconds: "How long a stream token stays valid."
        case .models: "Comma-separated model names the API accepts."
        case .maxBodyBytes: "Largest request body the API reads; larger gets 413."
        case .maxTokensLimit: "Largest accepted max_tokens."
        case .apiHost: "Address the API server binds."
        case .apiPort: "Port the API server binds (flag --port)."
        case .sseHost: "Address an SSE server binds."
        case .ssePort: "Port an SSE server binds (flag --port)."
        case .keepaliveSeconds: "Interval of the ': ping' keepalive line on a silent stream."
        case .ssePollMilliseconds: "Poll fallback of the SSE notifier, so a lost NOTIFY costs latency only."
        case .sseDrainSeconds: "On SIGTERM, how long an SSE server lets its open streams run before closing them."
        case .workerID: "Name a worker claims tasks under (default: hostname-pid)."
        case .workerConcurrency: "Tasks a worker runs at once (flag --concurrency)."
        case .workerPollMilliseconds: "Poll fallback of the worker's claim loop."
        case .flushWindowMilliseconds: "Minibatch window: pending tokens of all tasks are committed together this often."
        case .flushMaxEvents: "Pending events that force a flush before the window ends."
        case .leaseSeconds: "Lease on a running task; renewed every third of it, rescued when it expires."
        case .maxAttempts: "Claims of one task before an expired lease fails it instead of requeueing it."
        case .demoTokenDelayMilliseconds: "Delay between tokens of the demo model (0 for benchmarks)."
        case .logLevel: "trace, debug, info, notice, warning, error or critical."
        case .benchStamps: "Benchmarks only: 1 makes the SSE server prefix each minibatch with a ': committed <µs>' comment."
        }
    }
}
