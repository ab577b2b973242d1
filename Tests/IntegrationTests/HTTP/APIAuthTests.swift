import Foundation
import HTTPTypes
import HandoffWire
import Hummingbird
import HummingbirdTesting
import Testing

/// `HANDOFF_AUTH=required` in process: no key, a wrong key and a valid one on every route, and what belongs to one
/// key is not another key's.
struct APIAuthTests {
    static let routes: [(method: HTTPRequest.Method, uri: String, body: ByteBuffer?)] = [
        (.post, "/api/chat/completions", .demoChat),
        (.post, "/v1/chat/completions", .demoChat),
        (.get, "/v1/models", nil),
        (.get, "/v1/models/demo", nil),
        (.post, "/v1/responses", ByteBuffer(string: #"{"model":"demo","input":"hi"}"#)),
        (.get, "/v1/responses/resp_00000000000000000000000000000000", nil),
        (.post, "/v1/chat/completions/chatcmpl-00000000-0000-0000-0000-000000000000/cancel", nil),
    ]

    @Test func everyRouteWantsAValidKey() async throws {
        try await TestDatabase.with { database in
            try await InProcessAPI.with(database, auth: .required) { client in
                let forged = "Bearer sk-handoff-" + String(repeating: "A", count: 43)
                for route in Self.routes {
                    for headers: HTTPFields in [.json, [.contentType: "application/json", .authorization: forged]] {
                        let response = try await client.execute(
                            uri: route.uri, method: route.method, headers: headers, body: route.body)
                        let error = try response.openAIError(status: .unauthorized)
                        #expect(error["code"] as? String == "invalid_api_key", "\(route.uri)")
                    }
                }
            }
            let count = try await database.client.query("SELECT count(*) FROM handoff_tasks", logger: database.logger)
            for try await n in count.decode(Int.self) { #expect(n == 0, "nothing stored without a key") }
        }
    }

    @Test func aValidKeyIsServedWithItsRateHeaders() async throws {
        try await TestDatabase.with { database in
            let key = try await InProcessAPI.key(database)
            try await InProcessAPI.with(database, auth: .required) { client in
                let created = try await client.execute(
                    uri: "/v1/chat/completions", method: .post, headers: .bearer(key), body: .demoChat)
                #expect(created.status == .found)
                let models = try await client.execute(uri: "/v1/models", method: .get, headers: .bearer(key))
                #expect(models.status == .ok)
            }
        }
    }

    @Test func anotherKeysResponseIsNotFound() async throws {
        try await TestDatabase.with { database in
            let owner = try await InProcessAPI.key(database, name: "owner")
            let stranger = try await InProcessAPI.key(database, name: "stranger")
            try await InProcessAPI.with(database, auth: .required) { client in
                let created = try await client.execute(
                    uri: "/v1/responses", method: .post, headers: .bearer(owner),
                    body: ByteBuffer(string: #"{"model":"demo","input":"hi","background":true}"#))
                let id = try #require(try created.json["id"] as? String)
                let mine = try await client.execute(uri: "/v1/responses/\(id)", method: .get, headers: .bearer(owner))
                #expect(mine.status == .ok)
                for method: HTTPRequest.Method in [.get, .delete] {
                    _ = try await client.execute(uri: "/v1/responses/\(id)", method: method, headers: .bearer(stranger))
                        .openAIError(status: .notFound)
                }
                let cancel = try await client.execute(
                    uri: "/v1/responses/\(id)/cancel", method: .post, headers: .bearer(stranger))
                _ = try cancel.openAIError(status: .notFound)
            }
        }
    }

    @Test func aCompletionIsCancelledOnlyWithTheKeyThatMadeIt() async throws {
        try await TestDatabase.with { database in
            let owner = try await InProcessAPI.key(database, name: "owner")
            let stranger = try await InProcessAPI.key(database, name: "stranger")
            try await InProcessAPI.with(database, auth: .required) { client in
                let created = try await client.execute(
                    uri: "/v1/chat/completions", method: .post, headers: .bearer(owner), body: .demoChat)
                let id = try #require(try created.json["id"] as? String)
                let location = try #require(created.headers[.location])
                let token = try #require(
                    URLComponents(string: location)?.queryItems?.first { $0.name == "token" }?.value)
                let foreign = try await client.execute(
                    uri: "/v1/chat/completions/\(id)/cancel?token=\(token)", method: .post, headers: .bearer(stranger))
                #expect(foreign.status.code >= 400 && foreign.status.code < 500, "the token is bound to its key")
                let own = try await client.execute(
                    uri: "/v1/chat/completions/\(id)/cancel?token=\(token)", method: .post, headers: .bearer(owner))
                #expect(own.status == .ok)
            }
        }
    }
}
