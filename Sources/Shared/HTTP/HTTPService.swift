import Hummingbird
import Logging

/// The HTTP application of a Handoff server: OpenAI error JSON for every failure (the middleware comes before
/// the routes, so unknown paths are covered too) and the `HealthRoute` for Caddy's health checks.
public enum HTTPService {
    public static func make(
        name: String, host: String, port: Int, logger: Logger, routes: (Router<BasicRequestContext>) -> Void
    ) -> some ApplicationProtocol {
        let router = Router()
        router.add(middleware: OpenAIErrorMiddleware())
        router.get(RouterPath(HealthRoute.path)) { _, _ in HealthRoute.body }
        routes(router)
        return Application(
            router: router, configuration: .init(address: .hostname(host, port: port), serverName: name), logger: logger)
    }
}
