import HandoffRuntime
import HandoffWire
import Hummingbird
import Logging

/// The HTTP application of a Handoff server: an `X-Request-Id` on every answer, counted by route and status, OpenAI
/// error JSON for every failure (the middlewares come before the routes, so unknown paths are covered too), and the
/// `OperationsRoute`s: health, readiness and metrics.
package enum HTTPService {
    package static func make(
        name: String, host: String, port: Int, logger: Logger, operations: Operations,
        routes: (Router<BasicRequestContext>) -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let router = Router()
        // Outermost, so that an error's answer carries the id too, and the error middleware logs it.
        router.add(middleware: RequestIDMiddleware())
        router.add(middleware: RequestMetricsMiddleware())
        router.add(middleware: OpenAIErrorMiddleware())
        operations.addRoutes(to: router)
        routes(router)
        return Application(
            router: router, configuration: .init(address: .hostname(host, port: port), serverName: name), logger: logger
        )
    }
}

extension Operations {
    func addRoutes(to router: Router<BasicRequestContext>) {
        router.get(RouterPath(OperationsRoute.health)) { _, _ in OperationsRoute.healthBody }
        router.get(RouterPath(OperationsRoute.readiness)) { _, _ -> Response in
            if let problem = readiness.problem { return OpenAIError.notReady(problem).response }
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: OperationsRoute.readyBody)))
        }
        router.get(RouterPath(OperationsRoute.metrics)) { _, _ -> Response in
            guard let text = metrics.render() else {
                throw OpenAIError.notFound("Metrics are off (HANDOFF_METRICS=off).")
            }
            return Response(
                status: .ok, headers: [.contentType: MetricsExporter.contentType],
                body: .init(byteBuffer: ByteBuffer(bytes: text)))
        }
    }
}
