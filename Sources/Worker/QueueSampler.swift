import HandoffRuntime
import HandoffStore
import HandoffWire
import Logging
import Metrics
import ServiceLifecycle

/// Samples the queue's depth and the age of its oldest task for the metrics, every `interval`. Every worker
/// samples (no leader to elect): each reports the same queue, so dashboards take the max over workers.
struct QueueSampler: Service {
    let queue: TaskQueue
    let interval: Duration
    let logger: Logger
    private let depth = Gauge(label: MetricName.queueDepth.rawValue)
    private let oldestAge = Gauge(label: MetricName.queueOldestAge.rawValue)

    init(queue: TaskQueue, interval: Duration, logger: Logger) {
        self.queue = queue
        self.interval = interval
        self.logger = logger
    }

    func run() async throws {
        await sample()
        await repeatEvery(interval) { await sample() }
    }

    private func sample() async {
        do {
            let (queued, oldest) = try await queue.depth()
            depth.record(queued)
            oldestAge.record(oldest)
        } catch {
            logger.debug("queue sample failed", metadata: ["error": "\(String(reflecting: error))"])
        }
    }
}
