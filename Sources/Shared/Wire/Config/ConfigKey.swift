/// Every setting of every Handoff process: its environment variable, its default and what it does.
///
/// This is the only place a key is named. The settings table of docs/settings.md is checked against this list by
/// `SettingsTests.everyKeyIsDocumented`, so a new key cannot ship undocumented.
package enum ConfigKey: String, CaseIterable, Sendable {
    case databaseURL = "DATABASE_URL"
    case listenDatabaseURL = "HANDOFF_LISTEN_DATABASE_URL"
    case databasePoolSize = "HANDOFF_DB_POOL_SIZE"
    case databaseTimeoutMilliseconds = "HANDOFF_DB_TIMEOUT_MS"
    case databasePrepare = "HANDOFF_DB_PREPARE"
    case secret = "HANDOFF_SECRET"
    case secretFile = "HANDOFF_SECRET_FILE"
    case tokenTTLSeconds = "HANDOFF_TOKEN_TTL_SECONDS"
    case models = "HANDOFF_MODELS"
    case modelsFile = "HANDOFF_MODELS_FILE"
    case maxBodyBytes = "HANDOFF_MAX_BODY_BYTES"
    case maxTokensLimit = "HANDOFF_MAX_TOKENS_LIMIT"
    case maxMessages = "HANDOFF_MAX_MESSAGES"
    case maxPromptCharacters = "HANDOFF_MAX_PROMPT_CHARS"
    case auth = "HANDOFF_AUTH"
    case authOffAllowNetwork = "HANDOFF_AUTH_OFF_ALLOW_NETWORK"
    case reserveMaxTokens = "HANDOFF_RESERVE_MAX_TOKENS"
    case maxQueued = "HANDOFF_MAX_QUEUED"
    case apiHost = "HANDOFF_API_HOST"
    case apiPort = "HANDOFF_API_PORT"
    case sseHost = "HANDOFF_SSE_HOST"
    case ssePort = "HANDOFF_SSE_PORT"
    case keepaliveSeconds = "HANDOFF_KEEPALIVE_SECONDS"
    case ssePollMilliseconds = "HANDOFF_SSE_POLL_MS"
    case sseDrainSeconds = "HANDOFF_SSE_DRAIN_SECONDS"
    case sseHeaderTimeoutSeconds = "HANDOFF_SSE_HEADER_TIMEOUT_SECONDS"
    case sseMaxConnections = "HANDOFF_SSE_MAX_CONNECTIONS"
    case sseMaxStreamsPerTask = "HANDOFF_SSE_MAX_STREAMS_PER_TASK"
    case workerID = "HANDOFF_WORKER_ID"
    case workerConcurrency = "HANDOFF_WORKER_CONCURRENCY"
    case workerPollMilliseconds = "HANDOFF_WORKER_POLL_MS"
    case flushWindowMilliseconds = "HANDOFF_FLUSH_MS"
    case flushMaxEvents = "HANDOFF_FLUSH_MAX_EVENTS"
    case flushRowsPerSecond = "HANDOFF_FLUSH_ROWS_PER_SECOND"
    case leaseSeconds = "HANDOFF_LEASE_SECONDS"
    case maxAttempts = "HANDOFF_MAX_ATTEMPTS"
    case maxContinuations = "HANDOFF_MAX_CONTINUATIONS"
    case abandonSeconds = "HANDOFF_ABANDON_SECONDS"
    case workerGraceSeconds = "HANDOFF_WORKER_GRACE_SECONDS"
    case retentionSeconds = "HANDOFF_RETENTION_SECONDS"
    case idempotencySeconds = "HANDOFF_IDEMPOTENCY_SECONDS"
    case demoTokenDelayMilliseconds = "HANDOFF_DEMO_TOKEN_DELAY_MS"
    case logLevel = "HANDOFF_LOG_LEVEL"
    case logFormat = "HANDOFF_LOG_FORMAT"
    case metrics = "HANDOFF_METRICS"
    case readyDeadlineMilliseconds = "HANDOFF_READY_DEADLINE_MS"
    case workerHost = "HANDOFF_WORKER_HOST"
    case workerPort = "HANDOFF_WORKER_PORT"
    case queueSampleMilliseconds = "HANDOFF_QUEUE_SAMPLE_MS"
    case benchStamps = "HANDOFF_BENCH_STAMPS"

    /// The value used when the variable is not set; `nil` when there is deliberately none.
    package var defaultValue: String? {
        switch self {
        case .databaseURL: "postgres://postgres@127.0.0.1:54329/handoff"
        case .listenDatabaseURL: nil
        case .databasePoolSize: "4"
        case .databasePrepare: "on"
        case .databaseTimeoutMilliseconds: "1500"
        case .secret: nil
        case .secretFile: ".data/stream-secret"
        case .tokenTTLSeconds: "3600"
        case .models: "demo"
        case .modelsFile: nil
        case .maxBodyBytes: "1048576"
        case .maxTokensLimit: "4096"
        case .maxMessages: "2048"
        case .maxPromptCharacters: "1000000"
        case .auth: "required"
        case .authOffAllowNetwork: "0"
        case .reserveMaxTokens: "1024"
        case .maxQueued: "10000"
        case .apiHost: "127.0.0.1"
        case .apiPort: "8081"
        case .sseHost: "127.0.0.1"
        case .ssePort: "8082"
        case .keepaliveSeconds: "15"
        case .ssePollMilliseconds: "1000"
        case .sseDrainSeconds: "10"
        case .sseHeaderTimeoutSeconds: "10"
        case .sseMaxConnections: "30000"
        case .sseMaxStreamsPerTask: "8"
        case .workerID: nil
        case .workerConcurrency: "16"
        case .workerPollMilliseconds: "1000"
        case .flushWindowMilliseconds: "5"
        case .flushMaxEvents: "4096"
        case .flushRowsPerSecond: "15000"
        case .leaseSeconds: "10"
        case .maxAttempts: "3"
        case .maxContinuations: "2"
        case .abandonSeconds: "30"
        case .workerGraceSeconds: "10"
        case .retentionSeconds: "86400"
        case .idempotencySeconds: "86400"
        case .demoTokenDelayMilliseconds: "20"
        case .logLevel: "info"
        case .logFormat: "text"
        case .metrics: "on"
        case .readyDeadlineMilliseconds: "1000"
        case .workerHost: "127.0.0.1"
        case .workerPort: "8084"
        case .queueSampleMilliseconds: "5000"
        case .benchStamps: "0"
        }
    }

    package var summary: String {
        switch self {
        case .databaseURL: "Postgres URL (postgres://user[:password]@host[:port]/database)."
        case .listenDatabaseURL:
            "The LISTEN connection's Postgres URL (default: DATABASE_URL): a direct one when DATABASE_URL goes through a transaction-mode PgBouncer."
        case .databasePoolSize:
            "Most pooled Postgres connections a process holds (the listener has its own one, a worker's stream writer two more)."
        case .databasePrepare:
            "on: the hot statements are prepared once per pooled connection; off: behind a transaction-mode PgBouncer older than 1.21."
        case .databaseTimeoutMilliseconds: "How long the API waits for Postgres before answering 503."
        case .secret: "HMAC secret for stream tokens, shared by API and SSE servers. Overrides the secret file."
        case .secretFile: "Where the secret is read from, and created (random, mode 0600) when missing."
        case .tokenTTLSeconds: "How long a stream token stays valid."
        case .models: "Without a model catalogue: comma-separated model names, all served by the demo model."
        case .modelsFile:
            "The model catalogue (JSON): public model names and their backends, demo or OpenAI-compatible upstreams."
        case .maxBodyBytes: "Largest request body the API reads; larger gets 413."
        case .maxTokensLimit:
            "Largest accepted max_tokens, and the cap of a request that sets none (a key's or a model's own cap may be lower)."
        case .maxMessages: "Most messages in one request; more gets 400 naming messages."
        case .maxPromptCharacters: "Most characters of message content in one request; more gets 400 naming messages."
        case .auth: "required: every API request needs an API key (handoff-api keys create); off: no keys, no limits."
        case .authOffAllowNetwork:
            "1 lets the API run with HANDOFF_AUTH=off on a non-loopback address; it refuses to otherwise."
        case .reserveMaxTokens:
            "Most reply tokens a request reserves against its key's token limits (its max_tokens, or this)."
        case .maxQueued:
            "Most tasks queued at once, over all keys and API replicas; past it a POST gets 503 overloaded (0: no cap)."
        case .apiHost: "Address the API server binds."
        case .apiPort: "Port the API server binds (flag --port)."
        case .sseHost: "Address an SSE server binds."
        case .ssePort: "Port an SSE server binds (flag --port)."
        case .keepaliveSeconds: "Interval of the ': ping' keepalive line on a silent stream."
        case .ssePollMilliseconds: "Poll fallback of the SSE notifier, so a lost NOTIFY costs latency only."
        case .sseDrainSeconds: "On SIGTERM, how long an SSE server lets its open streams run before closing them."
        case .sseHeaderTimeoutSeconds:
            "An SSE server closes a connection that has not sent a whole request head within this long."
        case .sseMaxConnections:
            "Most connections one SSE server holds; past it a request gets 503 and /readyz says so."
        case .sseMaxStreamsPerTask:
            "Most streams of one task one SSE server serves at once; past it a request gets 429."
        case .workerID: "Name of a worker (default: the host name); its claims add the pid and a random suffix."
        case .workerConcurrency: "Tasks a worker runs at once (flag --concurrency)."
        case .workerPollMilliseconds: "Poll fallback of the worker's claim loop."
        case .flushWindowMilliseconds:
            "Minibatch window: pending tokens of all tasks are committed together at most this often."
        case .flushMaxEvents: "Pending events that force a flush before the window ends."
        case .flushRowsPerSecond:
            "Stream rows a worker writes a second at most, on average: past it the writer flushes less often and each row carries more of its stream's events."
        case .leaseSeconds: "Lease on a running task; renewed every third of it, rescued when it expires."
        case .maxAttempts: "Claims of one task before an expired lease fails it instead of requeueing it."
        case .maxContinuations:
            "Times one answer is continued on an upstream after its server failed mid-answer (catalogue `continuation`)."
        case .abandonSeconds: "A running task no client has watched for this long (plus up to 5 s) is cancelled."
        case .workerGraceSeconds:
            "On SIGTERM, how long a worker lets its tasks run before handing them back or failing them."
        case .retentionSeconds: "Finished tasks and their streams are deleted this long after they finished."
        case .idempotencySeconds: "How long an Idempotency-Key sends its caller's retries back to the same task."
        case .demoTokenDelayMilliseconds: "Delay between tokens of the demo model (0 for benchmarks)."
        case .logLevel: "trace, debug, info, notice, warning, error or critical."
        case .logFormat: "text, or json: one JSON object a line (time, level, process, message, source, metadata)."
        case .metrics:
            "on: every process serves Prometheus metrics at /metrics; off: none are kept (/metrics answers 404)."
        case .readyDeadlineMilliseconds:
            "How long /readyz's Postgres check (every second) may take before the process reports not ready."
        case .workerHost: "Address the worker's operations server (/healthz, /readyz, /metrics) binds."
        case .workerPort: "Port of the worker's operations server (flag --port); each worker on a host needs its own."
        case .queueSampleMilliseconds: "How often each worker samples the queue's depth and oldest age for its metrics."
        case .benchStamps:
            "Benchmarks only: 1 makes the SSE server prefix each minibatch with a ': committed <began> <notified> <received> <sent>' comment (µs)."
        }
    }
}
