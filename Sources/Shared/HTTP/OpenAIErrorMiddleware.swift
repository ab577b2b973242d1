import Foundation
import HandoffStore
import HandoffWire
import Hummingbird
import Logging

/// Turns every error a route throws into OpenAI's error JSON with the matching status, so no client ever sees
/// Hummingbird's plain-text errors. Added before the routes, so it also covers unknown paths (404).
package struct OpenAIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    package init() {}

    package func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            let openAIError = OpenAIError(routeError: error)
            if openAIError.status >= 500 {
                context.logger.error("request failed", metadata: ["error": "\(String(reflecting: error))"])
            }
            return openAIError.response
        }
    }
}

extension OpenAIError {
    /// The OpenAI error for any error a route throws: Hummingbird's own (an unknown path, a body too large) as OpenAI
    /// words them, the rest as `OpenAIError(_:)` maps them.
    init(routeError error: any Error) {
        if !(error is OpenAIError), let error = error as? any HTTPResponseError {
            self = OpenAIError(httpError: error)
        } else {
            self = OpenAIError(error)
        }
    }

    private init(httpError: any HTTPResponseError) {
        switch httpError.status {
        case .contentTooLarge:
            self = OpenAIError(
                status: 413, message: "The request body is too large.", type: "invalid_request_error",
                code: "request_too_large")
        case .notFound:
            self = .notFound("Unknown URL. Supported: POST /v1/chat/completions.")
        case .methodNotAllowed:
            self = OpenAIError(
                status: 405, message: "Method not allowed.", type: "invalid_request_error", code: "method_not_allowed")
        default:
            self = OpenAIError(
                status: Int(httpError.status.code), message: httpError.status.reasonPhrase,
                type: httpError.status.code < 500 ? "invalid_request_error" : "server_error")
        }
    }

    /// The error as an answer. A 503 says when to come back (`Retry-After`, and openai-python's `retry-after-ms`):
    /// the database failing over, a full queue or an overloaded upstream pass within seconds, and clients that
    /// retry then retry soon rather than after their own back-off.
    package var response: Response {
        var response = json.response(status: .init(code: status))
        if status == 503 {
            response.headers[.retryAfter] = "1"
            response.headers[.retryAfterMilliseconds] = "1000"
        }
        return response
    }
}

extension JSONValue {
    /// This value as an `application/json` response.
    package func response(status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        var headers = headers
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}
