import HandoffHTTP
import HandoffRuntime
import HandoffStore
import HandoffWire
import Hummingbird
import Logging
import PostgresNIO

/// The API server's routes and the enqueue batcher they hand tasks to, built from its settings and its database:
/// what `serve` runs, and what the in-process HTTP tests drive (HummingbirdTesting).
struct APIApplication {
    /// Must run beside the application: every enqueue waits for its batch.
    let batcher: EnqueueBatcher
    /// Runs beside the batcher: withdraws the tasks of a batch that missed its deadline, should it commit after all.
    let withdrawal: EnqueueWithdrawal
    private let completions: CompletionsController
    private let responses: ResponsesController
    private let cancellation: CancellationController
    private let models: ModelsController

    init(settings: Settings, mode: AuthMode, client: PostgresClient, timeout: Duration, logger: Logger) throws {
        let queue = TaskQueue(client: client, timeout: timeout, maxQueued: try settings.int(.maxQueued), logger: logger)
        let secret = try StreamSecret.load(settings: settings)
        let catalogue = try ModelCatalogue(settings: settings)
        let authentication = Authentication(
            mode: mode, keys: APIKeyStore(client: client, timeout: timeout, logger: logger), secret: secret)
        withdrawal = EnqueueWithdrawal(queue: queue, logger: logger)
        batcher = EnqueueBatcher(queue: queue, withdrawal: withdrawal, logger: logger)
        let admission = TaskAdmission(
            batcher: batcher, queue: queue, authentication: authentication,
            maxBodyBytes: try settings.int(.maxBodyBytes),
            idempotencyWindow: try settings.seconds(.idempotencySeconds),
            reservationCeiling: try settings.int(.reserveMaxTokens))
        let validation = try RequestValidation(catalogue: catalogue, settings: settings)
        let tokenTTL = try settings.seconds(.tokenTTLSeconds)
        completions = CompletionsController(admission: admission, validation: validation, tokenTTL: tokenTTL)
        responses = ResponsesController(
            admission: admission, validation: validation,
            log: StreamLog(client: client, timeout: timeout, logger: logger), tokenTTL: tokenTTL)
        cancellation = CancellationController(queue: queue, authentication: authentication, secret: secret)
        models = ModelsController(models: catalogue.names, authentication: authentication)
    }

    /// The HTTP application: Handoff's middlewares, the operations routes and the API's.
    func application(host: String, port: Int, operations: Operations, logger: Logger) -> some ApplicationProtocol {
        HTTPService.make(
            name: "handoff-api", host: host, port: port, logger: logger, operations: operations,
            routes: { router in
                completions.addRoutes(to: router)
                responses.addRoutes(to: router)
                cancellation.addRoutes(to: router)
                models.addRoutes(to: router)
            })
    }
}
