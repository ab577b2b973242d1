import Foundation
import HTTPTypes
import HandoffRuntime
import HandoffStore
import HandoffWire
import Hummingbird
import HummingbirdTesting
import Testing

@testable import APIServer

/// The API server's application driven in process (HummingbirdTesting's router framework: no socket), on a test
/// database, with its enqueue batcher running beside it.
enum InProcessAPI {
    static let secret = String(repeating: "5e", count: 32)

    static func with(
        _ database: TestDatabase, auth: AuthMode = .off, environment: [String: String] = [:],
        _ body: @Sendable (any TestClientProtocol) async throws -> Void
    ) async throws {
        let settings = Settings(
            environment: environment.merging([ConfigKey.secret.rawValue: secret]) { mine, _ in mine })
        let api = try APIApplication(
            settings: settings, mode: auth, client: database.client, timeout: database.settings.timeout,
            logger: database.logger)
        let app = api.application(
            host: "127.0.0.1", port: 0,
            operations: Operations(readiness: Readiness(listens: false), metrics: .disabled), logger: database.logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await api.batcher.run() }
            group.addTask { try await api.withdrawal.run() }
            defer { group.cancelAll() }
            try await app.test(.router, body)
        }
    }

    /// A new key with no limits, as `handoff-api keys create` makes it.
    static func key(_ database: TestDatabase, name: String = "test") async throws -> APIKey {
        try await APIKeyStore(client: database.client, timeout: database.settings.timeout, logger: database.logger)
            .create(name: name, limits: RateLimits(), maxTokens: nil, expiresIn: nil).key
    }
}

extension TestResponse {
    /// The body as JSON.
    var json: [String: Any] {
        get throws {
            let object = try JSONSerialization.jsonObject(with: Data(buffer: body))
            return try #require(object as? [String: Any], "not a JSON object: \(String(buffer: body))")
        }
    }

    /// The OpenAI error document: all four fields present, `type` and `message` strings. Returns the `error` object.
    func openAIError(status expected: HTTPResponse.Status, sourceLocation: SourceLocation = #_sourceLocation) throws
        -> [String: Any]
    {
        #expect(status == expected, sourceLocation: sourceLocation)
        #expect(headers[.contentType] == "application/json", sourceLocation: sourceLocation)
        let error = try #require(try json["error"] as? [String: Any], sourceLocation: sourceLocation)
        #expect(Set(error.keys) == ["message", "type", "param", "code"], sourceLocation: sourceLocation)
        #expect(error["message"] is String && error["type"] is String, sourceLocation: sourceLocation)
        return error
    }
}

extension HTTPFields {
    static let json: HTTPFields = [.contentType: "application/json"]

    static func bearer(_ key: APIKey) -> HTTPFields {
        [.contentType: "application/json", .authorization: "Bearer \(key.text)"]
    }
}

extension ByteBuffer {
    static let demoChat = ByteBuffer(string: #"{"model":"demo","messages":[{"role":"user","content":"hi"}]}"#)
}
