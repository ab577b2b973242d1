import Foundation
import HTTPTypes
import HandoffHTTP
import HandoffWire
import Hummingbird
import HummingbirdTesting
import Logging
import Testing

@testable import HandoffRuntime

/// The error middleware maps every error a route can throw to OpenAI's JSON with its status, and the request id
/// rides on the answer: a router of routes that throw, in process.
struct ErrorMiddlewareTests {
    struct Unexpected: Error {}

    /// Each route throws one kind of error: (what it throws, the status, `type` and `code` the client gets).
    static let cases: [(path: String, error: any Error, status: Int, type: String, code: String?)] = [
        ("/openai", OpenAIError.invalidRequest("bad", param: "x", code: "c"), 400, "invalid_request_error", "c"),
        ("/overloaded", OpenAIError.overloaded, 503, OpenAIError.overloaded.type, OpenAIError.overloaded.code),
        ("/too-large", HTTPError(.contentTooLarge), 413, "invalid_request_error", "request_too_large"),
        ("/method", HTTPError(.methodNotAllowed), 405, "invalid_request_error", "method_not_allowed"),
        ("/teapot", HTTPError(.badRequest), 400, "invalid_request_error", nil),
        ("/gateway", HTTPError(.badGateway), 502, "server_error", nil),
        ("/deadline", DeadlineExceeded(duration: .seconds(1)), 503, "server_error", "service_unavailable"),
        ("/unexpected", Unexpected(), 500, "server_error", "internal_error"),
    ]

    func application() -> some ApplicationProtocol {
        var logger = Logger(label: "errors")
        logger.logLevel = .critical  // each 5xx is logged as an error: expected here
        return HTTPService.make(
            name: "errors", host: "127.0.0.1", port: 0, logger: logger,
            operations: Operations(readiness: Readiness(listens: false), metrics: .disabled),
            routes: { router in
                for (path, error, _, _, _) in Self.cases {
                    router.get(RouterPath(path)) { _, _ -> Response in throw error }
                }
            })
    }

    @Test func everyThrownErrorIsOpenAIJSON() async throws {
        try await application().test(.router) { client in
            for (path, _, status, type, code) in Self.cases {
                let response = try await client.execute(uri: path, method: .get)
                let error = try response.openAIError(status: .init(code: status))
                #expect(error["type"] as? String == type, "\(path)")
                #expect(error["code"] as? String == code, "\(path)")
                #expect(response.headers[.requestID]?.isEmpty == false, "\(path): an error carries the request id")
                let retryAfter = response.headers[.retryAfter]
                #expect(retryAfter == (status == 503 ? "1" : nil), "\(path): a 503 says when to come back")
            }
        }
    }

    @Test func anUnexpectedErrorSaysNothingOfItsCause() async throws {
        try await application().test(.router) { client in
            let error = try await client.execute(uri: "/unexpected", method: .get).openAIError(
                status: .internalServerError)
            #expect(error["message"] as? String == "The server had an error while processing your request.")
        }
    }

    @Test func aSaneRequestIDIsEchoedAndAnyOtherReplaced() async throws {
        try await application().test(.router) { client in
            let sane = try await client.execute(
                uri: OperationsRoute.health, method: .get, headers: [.requestID: "abc-123"])
            #expect(sane.headers[.requestID] == "abc-123")
            let long = String(repeating: "a", count: 129)
            for insane in ["has space", long] {
                let response = try await client.execute(
                    uri: OperationsRoute.health, method: .get, headers: [.requestID: insane])
                let id = try #require(response.headers[.requestID])
                #expect(id != insane && UUID(uuidString: id) != nil, "replaced by a fresh id")
            }
            let first = try await client.execute(uri: OperationsRoute.health, method: .get)
            let second = try await client.execute(uri: OperationsRoute.health, method: .get)
            #expect(first.headers[.requestID] != second.headers[.requestID], "each request its own id")
        }
    }
}
