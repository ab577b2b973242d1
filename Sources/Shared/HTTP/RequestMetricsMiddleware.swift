import HandoffWire
import Hummingbird
import Metrics

/// Counts every answer by route pattern, method and status (`handoff_http_requests_total`) and times the
/// hand-offs (`handoff_handoff_duration_seconds`: request in, `302` out). Sits outside `OpenAIErrorMiddleware`, so
/// failures are counted with the status their client saw.
package struct RequestMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    package init() {}

    package func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let start = ContinuousClock.now
        let response: Response
        do {
            response = try await next(request, context)
        } catch {
            record(request, route: context.endpointPath, status: 500)
            throw error
        }
        let route = record(request, route: context.endpointPath, status: Int(response.status.code))
        if response.status == .found {
            Timer(label: MetricName.handoffDuration.rawValue, dimensions: [("route", route)])
                .record(duration: ContinuousClock.now - start)
        }
        return response
    }

    /// Returns the route label: the matched pattern, or `unmatched` (never the raw path, which may hold ids).
    @discardableResult
    private func record(_ request: Request, route: String?, status: Int) -> String {
        let route = route ?? "unmatched"
        Counter(
            label: MetricName.httpRequests.rawValue,
            dimensions: [("route", route), ("method", request.method.rawValue), ("status", String(status))]
        ).increment()
        return route
    }
}
