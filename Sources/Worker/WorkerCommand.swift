import ArgumentParser
import Foundation
import HandoffHTTP
import HandoffProcess
import HandoffRuntime
import HandoffStore
import HandoffWire
import Logging
import PostgresNIO

@main
struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "handoff-worker",
        abstract: "Claims completion tasks from Postgres, runs the model and appends its output to the stream table.",
        subcommands: [Serve.self, MigrateCommand.self],
        defaultSubcommand: Serve.self)

    static func main() async {
        ConcurrencyPool.useEventLoops()
        await main(nil)
    }

    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run the worker (default).")

        @Option(help: "Tasks run at once (\(ConfigKey.workerConcurrency.rawValue)).")
        var concurrency: Int?

        @Option(help: "Delay between demo tokens in milliseconds (\(ConfigKey.demoTokenDelayMilliseconds.rawValue)).")
        var tokenDelayMs: Int?

        @Option(help: "Port of the operations server: /healthz, /readyz, /metrics (\(ConfigKey.workerPort.rawValue)).")
        var port: Int?

        func run() async throws {
            let startup = try ServeStartup(label: "handoff.worker", listens: true)
            let (settings, logger, operations, database) =
                (startup.settings, startup.logger, startup.operations, startup.database)
            try await startup.migrate()

            // Unique to this process's life even under a fixed name: a worker restarted under the same name must
            // not renew (and so keep alive) the leases of the tasks its killed predecessor held.
            let nonce = String(UInt32.random(in: .min ... .max), radix: 16)
            let workerID = "\(settings.string(.workerID) ?? ProcessInfo.processInfo.hostName)-\(getpid())-\(nonce)"
            let client = database.makeClient(applicationName: "handoff-worker")
            // The writer flushes one statement at a time; a second connection lets a flush start while the pool
            // replaces a connection that broke.
            let writerClient = database.makeWriterClient(applicationName: "handoff-worker-writer", connections: 2)
            let log = StreamLog(client: writerClient, timeout: database.timeout, logger: logger)
            let writer = StreamWriter(
                configuration: .init(
                    window: try settings.milliseconds(.flushWindowMilliseconds),
                    rowsPerSecond: max(1, try settings.int(.flushRowsPerSecond)),
                    maxPendingEvents: max(1, try settings.int(.flushMaxEvents)), workerID: workerID),
                log: log, logger: logger)
            let tokenDelay = Duration.milliseconds(
                try settings.int(.demoTokenDelayMilliseconds, override: tokenDelayMs))
            let queue = TaskQueue(client: client, timeout: database.timeout, logger: logger)
            let cancellations = TaskCancellations()
            let clock = DemoClock()
            let catalogue = try ModelCatalogue(settings: settings)
            let continuation = ContinuationPolicy(maxContinuations: max(0, try settings.int(.maxContinuations)))
            let backends = UpstreamBackends(
                catalogue: catalogue, settings: settings, demo: DemoModel(tokenDelay: tokenDelay, timer: clock),
                continuation: continuation, logger: logger)
            let continuable = TaskQueue.Continuable(
                models: catalogue.continuableModels, max: continuation.maxContinuations)
            // A continued answer's earlier events are read on the process's pool: after an outage many tasks are
            // continued at once, and their reads must not queue ahead of the writer's flushes.
            let executor = TaskExecutor(
                models: backends.registry, writer: writer, queue: queue,
                stream: StreamLog(client: client, timeout: database.timeout, logger: logger), continuable: continuable,
                cancellations: cancellations, workerID: workerID, logger: logger)
            let doorbell = Doorbell()
            let listener = PostgresListener(
                endpoint: database.listenerEndpoint(applicationName: "handoff-worker-listener"),
                channels: [NotifyChannel.taskQueued, NotifyChannel.taskCancelled], logger: logger,
                onListening: {
                    operations.readiness.listener(listening: true)
                    doorbell.ring()
                },
                onLost: { operations.readiness.listener(listening: false) },
                onNotification: { channel, payload in
                    if channel == NotifyChannel.taskCancelled, let task = UUID(uuidString: payload) {
                        cancellations.stop(task, because: .cancelled)
                    } else {
                        doorbell.ring()
                    }
                })
            let lease = try settings.seconds(.leaseSeconds)
            let dispatcher = TaskDispatcher(
                configuration: .init(
                    workerID: workerID,
                    concurrency: max(1, try settings.int(.workerConcurrency, override: concurrency)),
                    pollInterval: try settings.milliseconds(.workerPollMilliseconds), lease: lease,
                    grace: try settings.seconds(.workerGraceSeconds)),
                queue: queue, executor: executor, cancellations: cancellations, doorbell: doorbell, logger: logger)
            let leaseKeeper = LeaseKeeper(
                queue: queue, cancellations: cancellations, workerID: workerID, lease: lease,
                abandonAfter: try settings.seconds(.abandonSeconds), logger: logger)
            let rescuer = TaskRescuer(
                queue: queue, lease: lease, maxAttempts: max(1, try settings.int(.maxAttempts)),
                continuable: continuable,
                logger: logger)
            let pruner = TaskPruner(queue: queue, retention: try settings.seconds(.retentionSeconds), logger: logger)
            let sampler = QueueSampler(
                queue: queue, interval: try settings.milliseconds(.queueSampleMilliseconds), logger: logger)
            let operationsServer = HTTPService.make(
                name: "handoff-worker", host: settings.string(.workerHost) ?? "127.0.0.1",
                port: try settings.int(.workerPort, override: port), logger: logger, operations: operations)
            logger.info("worker started", metadata: ["worker": "\(workerID)"])
            // Shut down in reverse: readiness fails, stop claiming and finish tasks (their leases renewed meanwhile),
            // then drain the writer, then stop the demo model's clock, close the upstream clients and Postgres.
            try await startup.run(
                [
                    client, writerClient, operationsServer, sampler, backends, clock, listener, pruner, rescuer,
                    leaseKeeper, writer, dispatcher,
                ],
                probing: client)
        }
    }
}
