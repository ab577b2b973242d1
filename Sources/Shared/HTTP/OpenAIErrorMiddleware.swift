import Foundation
import Hummingbird
import Logging
import PostgresNIO

/// Turns every error a route throws into OpenAI's error JSON with the matching status, so no client ever sees
/// Hummingbird's plain-text errors. Added before the routes, so it also covers unknown paths (404).
public struct OpenAIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    public init() {}

    public func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            let openAIError = OpenAIError(error)
            if openAIError.status >= 500 {
                context.logger.error("request failed", metadata: ["error": "\(String(reflecting: error))"])
            }
            return openAIError.response
        }
    }
}

extension OpenAIError {
    /// The OpenAI error for any error: our own pass through; Postgres being unreachable or too slow is 503.
    public init(_ error: any Error) {
        switch error {
        case let error as OpenAIError:
            self = error
        case is DeadlineExceeded:
            self = .databaseUnavailable
        case let error as PSQLError where error.meansDatabaseUnavailable:
            self = .databaseUnavailable
        case let error as any HTTPResponseError:
            self = OpenAIError(httpError: error)
        default:
            self = .server("The server had an error while processing your request.")
        }
    }

    private init(httpError: any HTTPResponseError) {
        switch httpError.status {
        case .contentTooLarge:
            self = OpenAIError(status: 413, message: "The request body is too large.", type: "invalid_request_error", code: "request_too_large")
        case .notFound:
            self = .notFound("Unknown URL. Supported: POST /v1/chat/completions.")
        case .methodNotAllowed:
            self = OpenAIError(status: 405, message: "Method not allowed.", type: "invalid_request_error", code: "method_not_allowed")
        default:
            self = OpenAIError(
                status: Int(httpError.status.code), message: httpError.status.reasonPhrase,
                type: httpError.status.code < 500 ? "invalid_request_error" : "server_error")
        }
    }

    public var response: Response {
        json.response(status: .init(code: status))
    }
}

extension JSONValue {
    /// This value as an `application/json` response.
    public func response(status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        var headers = headers
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}
