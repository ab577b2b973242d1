import Hummingbird
import Logging

/// The HTTP application of a Handoff server: an `X-Request-Id` on every answer, OpenAI error JSON for every failure
/// (the middlewares come before the routes, so unknown paths are covered too) and the `HealthRoute` for Caddy's
/// health checks.
public enum HTTPService {
    public static func make(
        name: String, host: String, port: Int, logger: Logger, routes: (Router<BasicRequestContext>) -> Void
    ) -> some ApplicationProtocol {
        let router = Router()
        // Outermost, so that an error's answer carries the id too, and the error middleware logs it.
        router.add(middleware: RequestIDMiddleware())
        router.add(middleware: OpenAIErrorMiddleware())
        router.get(RouterPath(HealthRoute.path)) { _, _ in HealthRoute.body }
        routes(router)
        return Application(
            router: router, configuration: .init(address: .hostname(host, port: port), serverName: name), logger: logger)
    }
}
