import HandoffWire
import Logging
import ServiceLifecycle

/// The worker's backends, built from the model catalogue, and the owner of the upstream HTTP clients: as a
/// service it closes them once the dispatcher (which shuts down before it) has finished its tasks.
struct UpstreamBackends: Service {
    let registry: ModelRegistry
    private let endpoints: [UpstreamEndpoint]
    private let logger: Logger

    init(
        catalogue: ModelCatalogue, settings: Settings, demo: DemoModel, continuation: ContinuationPolicy, logger: Logger
    ) {
        var models: [String: any ChatModel] = [:]
        var all: [UpstreamEndpoint] = []
        for model in catalogue.models {
            switch model.backend {
            case .demo:
                models[model.name] = demo
            case .openai:
                let endpoints = model.upstreams.enumerated().map { position, upstream in
                    let key = upstream.apiKeyEnv.flatMap { settings.environment[$0] }.flatMap { $0.isEmpty ? nil : $0 }
                    if let name = upstream.apiKeyEnv, key == nil {
                        logger.notice(
                            "upstream API key variable is not set; sending no Authorization",
                            metadata: [
                                "model": "\(model.name)", "upstream": "\(position)", "api_key_env": "\(name)",
                            ])
                    }
                    return UpstreamEndpoint(position: position, configuration: upstream, apiKey: key)
                }
                all += endpoints
                models[model.name] = UpstreamModel(
                    name: model.name, endpoints: endpoints, continuation: continuation, logger: logger)
            }
        }
        self.registry = ModelRegistry(models)
        self.endpoints = all
        self.logger = logger
    }

    func run() async throws {
        try? await gracefulShutdown()
        for endpoint in endpoints {
            do {
                try await endpoint.shutdown()
            } catch {
                logger.warning("closing an upstream client failed", metadata: ["error": "\(String(reflecting: error))"])
            }
        }
    }
}
