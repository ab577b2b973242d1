import Foundation
import HTTPTypes
import Hummingbird
import Logging

/// `X-Request-Id`: the caller's (or a proxy's) id when it sent a sane one, else a new one.
package enum RequestID {
    /// Up to 128 visible ASCII characters: anything else is not echoed into headers and logs.
    static func isSane(_ id: String) -> Bool {
        (1...128).contains(id.utf8.count) && id.utf8.allSatisfy { (0x21...0x7E).contains($0) }
    }

    static func of(_ request: Request) -> String {
        request.headers[.requestID].flatMap { isSane($0) ? $0 : nil } ?? UUID().uuidString.lowercased()
    }
}

/// Returns the `RequestID` on every answer, errors included, and sets it on the request's logger, so every line a
/// request logs carries it.
package struct RequestIDMiddleware<Context: RequestContext>: RouterMiddleware {
    package init() {}

    package func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let id = RequestID.of(request)
        var context = context
        context.logger[metadataKey: "request_id"] = .string(id)
        var response = try await next(request, context)
        response.headers[.requestID] = id
        return response
    }
}
