import Foundation
import HTTPTypes
import HandoffWire
import Hummingbird
import HummingbirdTesting
import Testing

/// Every API route in process: its success shape, its errors as OpenAI JSON, and the request id on both.
struct APIRoutesTests {
    @Test(arguments: ["/api", "/v1"])
    func aCompletionIsStoredAndHandedOff(prefix: String) async throws {
        try await TestDatabase.with { database in
            try await InProcessAPI.with(database) { client in
                let response = try await client.execute(
                    uri: "\(prefix)/chat/completions", method: .post, headers: .json, body: .demoChat)
                #expect(response.status == .found)
                let location = try #require(response.headers[.location])
                let body = try response.json
                #expect(body["stream_url"] as? String == location)
                let task = try #require((body["task_id"] as? String).flatMap(UUID.init(uuidString:)))
                #expect(body["id"] as? String == ClaimedTask.completionID(for: task))
                #expect(location.hasPrefix(StreamRoute.location(task: task, token: "")))
                #expect(response.headers[.requestID]?.isEmpty == false)
                let stored = try await database.client.query(
                    "SELECT model, status FROM handoff_tasks WHERE id = \(task)", logger: database.logger)
                var rows: [(String, String)] = []
                for try await row in stored.decode((String, String).self) { rows.append(row) }
                #expect(rows.count == 1 && rows[0] == ("demo", "queued"))
            }
        }
    }

    @Test func badRequestsAreOpenAIErrorsAndStoreNothing() async throws {
        try await TestDatabase.with { database in
            try await InProcessAPI.with(database) { client in
                let cases: [(body: String, status: HTTPResponse.Status, param: String?)] = [
                    ("{", .badRequest, nil),
                    (#"{"model":"demo","messages":[]}"#, .badRequest, "messages"),
                    (#"{"model":"nope","messages":[{"role":"user","content":"x"}]}"#, .notFound, "model"),
                    (
                        #"{"model":"demo","model":"demo","messages":[{"role":"user","content":"x"}]}"#, .badRequest,
                        "model"
                    ),
                ]
                for (body, status, param) in cases {
                    let response = try await client.execute(
                        uri: "/v1/chat/completions", method: .post, headers: .json, body: ByteBuffer(string: body))
                    let error = try response.openAIError(status: status)
                    if let param { #expect(error["param"] as? String == param, "\(body)") }
                }
            }
            let count = try await database.client.query("SELECT count(*) FROM handoff_tasks", logger: database.logger)
            for try await n in count.decode(Int.self) { #expect(n == 0) }
        }
    }

    @Test func aBodyPastTheLimitIs413() async throws {
        try await TestDatabase.with { database in
            try await InProcessAPI.with(database, environment: [ConfigKey.maxBodyBytes.rawValue: "64"]) { client in
                let response = try await client.execute(
                    uri: "/api/chat/completions", method: .post, headers: .json,
                    body: ByteBuffer(
                        string: #"{"model":"demo","messages":[{"role":"user","content":""#
                            + String(repeating: "x", count: 100) + #""}]}"#))
                let error = try response.openAIError(status: .contentTooLarge)
                #expect(error["code"] as? String == "request_too_large")
            }
        }
    }

    @Test func unknownPathsAndMethodsAreOpenAIErrors() async throws {
        try await TestDatabase.with { database in
            try await InProcessAPI.with(database) { client in
                let missing = try await client.execute(uri: "/v1/nothing", method: .get)
                #expect(
                    try missing.openAIError(status: .notFound)["message"] as? String
                        == "Unknown URL. Supported: POST /v1/chat/completions.")
                // Hummingbird's router answers a known path with another method as an unknown one.
                let wrongMethod = try await client.execute(uri: "/v1/chat/completions", method: .get)
                _ = try wrongMethod.openAIError(status: .notFound)
            }
        }
    }

    @Test func theModelsAreListedAndLookedUp() async throws {
        try await TestDatabase.with { database in
            try await InProcessAPI.with(database) { client in
                let list = try await client.execute(uri: "/v1/models", method: .get)
                #expect(list.status == .ok)
                #expect(try list.json["object"] as? String == "list")
                let ids = (try list.json["data"] as? [[String: Any]])?.compactMap { $0["id"] as? String }
                #expect(ids?.contains("demo") == true)
                let demo = try await client.execute(uri: "/v1/models/demo", method: .get)
                #expect(try demo.json["id"] as? String == "demo")
                _ = try await client.execute(uri: "/v1/models/nope", method: .get).openAIError(status: .notFound)
            }
        }
    }

    @Test func aCompletionIsCancelledOnceByItsTokenHolder() async throws {
        try await TestDatabase.with { database in
            try await InProcessAPI.with(database) { client in
                let created = try await client.execute(
                    uri: "/api/chat/completions", method: .post, headers: .json, body: .demoChat)
                let id = try #require(try created.json["id"] as? String)
                let location = try #require(created.headers[.location])
                let token = try #require(
                    URLComponents(string: location)?.queryItems?.first { $0.name == "token" }?.value)
                let unsigned = try await client.execute(uri: "/api/chat/completions/\(id)/cancel", method: .post)
                #expect(unsigned.status.code >= 400, "no token, no cancel")
                let cancelled = try await client.execute(
                    uri: "/api/chat/completions/\(id)/cancel?token=\(token)", method: .post)
                #expect(cancelled.status == .ok)
                #expect(try cancelled.json["status"] as? String == "cancelling")
                _ = try await client.execute(uri: "/api/chat/completions/chatcmpl-nope/cancel", method: .post)
                    .openAIError(status: .notFound)
            }
        }
    }

    @Test func aBackgroundResponseIsCreatedReadAndDeleted() async throws {
        try await TestDatabase.with { database in
            try await InProcessAPI.with(database) { client in
                let created = try await client.execute(
                    uri: "/v1/responses", method: .post, headers: .json,
                    body: ByteBuffer(string: #"{"model":"demo","input":"hi","background":true}"#))
                #expect(created.status == .ok)
                let id = try #require(try created.json["id"] as? String)
                #expect(try created.json["status"] as? String == "queued")
                let read = try await client.execute(uri: "/v1/responses/\(id)", method: .get)
                #expect(try read.json["id"] as? String == id)
                let streamed = try await client.execute(uri: "/v1/responses/\(id)?stream=true", method: .get)
                #expect(streamed.status == .found)
                let badCursor = try await client.execute(
                    uri: "/v1/responses/\(id)?stream=true&starting_after=x", method: .get)
                #expect(try badCursor.openAIError(status: .badRequest)["param"] as? String == "starting_after")
                let deleted = try await client.execute(uri: "/v1/responses/\(id)", method: .delete)
                #expect(try deleted.json["deleted"] as? Bool == true)
                _ = try await client.execute(uri: "/v1/responses/\(id)", method: .get).openAIError(status: .notFound)
            }
        }
    }

    @Test func operationsRoutesAnswer() async throws {
        try await TestDatabase.with { database in
            try await InProcessAPI.with(database) { client in
                #expect(try await client.execute(uri: OperationsRoute.health, method: .get).status == .ok)
                // Nothing probed the database yet: not ready, as an OpenAI error.
                _ = try await client.execute(uri: OperationsRoute.readiness, method: .get)
                    .openAIError(status: .serviceUnavailable)
                // Metrics are off in process.
                _ = try await client.execute(uri: OperationsRoute.metrics, method: .get).openAIError(status: .notFound)
            }
        }
    }
}
