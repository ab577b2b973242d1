import ArgumentParser
import Foundation
import HandoffStore
import HandoffWire
import Logging
import PostgresNIO

/// `handoff-api keys …`: API keys and their limits, in the configured database (`DATABASE_URL`). A key is printed
/// once, by `create`, alone on the last line of its output (`key=$(handoff-api keys create --name ci | tail -n 1)`);
/// nothing prints it again.
struct KeysCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys", abstract: "Create, list, revoke and limit API keys; show what they used.",
        subcommands: [Create.self, List.self, Revoke.self, Limit.self, Usage.self])

    /// The three limits every scope has, as options.
    struct LimitOptions: ParsableArguments {
        @Option(help: "Requests admitted per UTC minute.") var requestsPerMinute: Int?
        @Option(help: "Tokens per UTC minute (reserved at admission, charged from real usage at the end).")
        var tokensPerMinute: Int?
        @Option(help: "Tokens per UTC day.") var tokensPerDay: Int?

        func limits(model: String) -> RateLimits {
            RateLimits(
                model: model, requestsPerMinute: requestsPerMinute, tokensPerMinute: tokensPerMinute,
                tokensPerDay: tokensPerDay)
        }

        func validate() throws {
            for (name, value) in [
                ("requests-per-minute", requestsPerMinute), ("tokens-per-minute", tokensPerMinute),
                ("tokens-per-day", tokensPerDay),
            ] {
                if let value, value <= 0 { throw ValidationError("--\(name) must be positive (omit it for no limit)") }
            }
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a key; it is printed once, alone on the last line.")
        @Option(help: "Who or what the key is for.") var name: String
        @OptionGroup var limits: LimitOptions
        @Option(help: "The largest max_tokens a request with this key may ask for (and the cap of one that sets none).")
        var maxTokens: Int?
        @Option(help: "Tasks this key may have queued or running at once, background responses included.")
        var maxConcurrentTasks: Int?
        @Option(help: "Lifetime, e.g. 90s, 15m, 12h, 30d (default: until revoked).", transform: KeysCommand.duration)
        var expiresIn: Duration?

        func validate() throws {
            for (name, value) in [("max-tokens", maxTokens), ("max-concurrent-tasks", maxConcurrentTasks)] {
                if let value, value <= 0 { throw ValidationError("--\(name) must be positive (omit it for no cap)") }
            }
        }

        func run() async throws {
            let limits = limits.limits(model: "")
            let (id, key) = try await KeysCommand.withStore {
                try await $0.create(
                    name: name, limits: limits, maxTokens: maxTokens, maxConcurrentTasks: maxConcurrentTasks,
                    expiresIn: expiresIn)
            }
            print("id: \(id.uuidString.lowercased())")
            print("name: \(name)")
            print("limits: \(KeysCommand.describe(limits))")
            print("max_tokens: \(maxTokens.map(String.init) ?? "not capped")")
            print("max_concurrent_tasks: \(maxConcurrentTasks.map(String.init) ?? "not capped")")
            print(
                "expires: \(expiresIn.map { AdminDatabase.iso(Date().addingTimeInterval(Double($0.components.seconds))) } ?? "never")"
            )
            print("The key follows. It is shown only this once: store it now.")
            print(key.text)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every key (never the key itself: its hint).")
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let records = try await KeysCommand.withStore { try await $0.list() }
            if json {
                print(JSONValue.array(records.map(KeysCommand.json)).text)
                return
            }
            for record in records {
                let scopes = record.limits.map {
                    ($0.model.isEmpty ? "" : "model \($0.model): ") + KeysCommand.describe($0)
                }
                print(
                    [
                        record.id.uuidString.lowercased(), record.name, record.hint, record.status,
                        "created \(AdminDatabase.iso(record.createdAt))",
                        "expires \(record.expiresAt.map(AdminDatabase.iso) ?? "never")",
                        "max_tokens \(record.maxTokens.map(String.init) ?? "-")",
                        "max_concurrent_tasks \(record.maxConcurrentTasks.map(String.init) ?? "-")",
                        scopes.joined(separator: "; "),
                    ].joined(separator: "  "))
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke a key (by id), or every active key of a name.")
        @Argument(help: "The key's id or name.") var key: String

        func run() async throws {
            let revoked = try await KeysCommand.withStore { try await $0.revoke(key) }
            guard revoked > 0 else { throw KeysCommand.noActiveKey(key) }
            print("revoked \(revoked) key\(revoked == 1 ? "" : "s")")
        }
    }

    struct Limit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Set the limits of a key (omitted ones become unlimited), or of one model for that key, on top of the key's own."
        )
        @Argument(help: "The key's id or name.") var key: String
        @Option(help: "Limit only this model's requests (default: the whole key).") var model = ""
        @OptionGroup var limits: LimitOptions

        func run() async throws {
            let limits = limits.limits(model: model)
            let changed = try await KeysCommand.withStore { try await $0.setLimits(key, limits) }
            guard changed > 0 else { throw KeysCommand.noActiveKey(key) }
            print(
                "\(model.isEmpty ? "key" : "model \(model)") limits of \(changed) key\(changed == 1 ? "" : "s"): \(KeysCommand.describe(limits))"
            )
        }
    }

    struct Usage: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Requests and tokens charged in the current minute and day, and tokens reserved by running tasks, per key and scope."
        )
        @Argument(help: "A key's id or name (default: every key).") var key = ""
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let usage = try await KeysCommand.withStore { try await $0.usage(key) }
            if json {
                print(
                    JSONValue.array(
                        usage.map { id, name, scope in
                            .object([
                                ("id", .string(id.uuidString.lowercased())), ("name", .string(name)),
                                ("model", .string(scope.model)),
                                ("requests_this_minute", .int(Int64(scope.requestsThisMinute))),
                                ("tokens_this_minute", .int(Int64(scope.tokensThisMinute))),
                                ("tokens_today", .int(Int64(scope.tokensToday))),
                                ("reserved_tokens", .int(Int64(scope.reserved))),
                                ("requests_per_minute", AdminDatabase.json(scope.requestsPerMinute)),
                                ("tokens_per_minute", AdminDatabase.json(scope.tokensPerMinute)),
                                ("tokens_per_day", AdminDatabase.json(scope.tokensPerDay)),
                            ])
                        }
                    ).text)
                return
            }
            for (id, name, scope) in usage {
                let of = { (used: Int, limit: Int?) in "\(used)/\(limit.map(String.init) ?? "-")" }
                print(
                    "\(name) \(id.uuidString.lowercased())\(scope.model.isEmpty ? "" : " model \(scope.model)"):"
                        + " requests this minute \(of(scope.requestsThisMinute, scope.requestsPerMinute)),"
                        + " tokens this minute \(of(scope.tokensThisMinute, scope.tokensPerMinute)),"
                        + " tokens today \(of(scope.tokensToday, scope.tokensPerDay)), reserved now \(scope.reserved)")
            }
        }
    }

    static func withStore<Result: Sendable>(_ body: @Sendable (APIKeyStore) async throws -> Result) async throws
        -> Result
    {
        try await AdminDatabase.with { client, timeout, logger in
            try await body(APIKeyStore(client: client, timeout: timeout, logger: logger))
        }
    }

    static func noActiveKey(_ key: String) -> ValidationError {
        ValidationError("no active key has the id or name '\(key)'")
    }

    /// `90s`, `15m`, `12h`, `30d`.
    static func duration(_ text: String) throws -> Duration {
        let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        guard let unit = text.last.flatMap({ units[$0] }), let count = Int64(text.dropLast()), count > 0 else {
            throw ValidationError("'\(text)' is not a lifetime: use a number and s, m, h or d (e.g. 30d)")
        }
        return .seconds(count * unit)
    }

    static func describe(_ limits: RateLimits) -> String {
        let part = { (value: Int?, unit: String) in "\(value.map(String.init) ?? "unlimited") \(unit)" }
        return [
            part(limits.requestsPerMinute, "requests/min"), part(limits.tokensPerMinute, "tokens/min"),
            part(limits.tokensPerDay, "tokens/day"),
        ]
        .joined(separator: ", ")
    }

    static func json(_ record: APIKeyRecord) -> JSONValue {
        .object([
            ("id", .string(record.id.uuidString.lowercased())), ("name", .string(record.name)),
            ("hint", .string(record.hint)),
            ("created_at", .string(AdminDatabase.iso(record.createdAt))),
            ("expires_at", .optional(record.expiresAt.map(AdminDatabase.iso))),
            ("revoked_at", .optional(record.revokedAt.map(AdminDatabase.iso))), ("status", .string(record.status)),
            ("max_tokens", AdminDatabase.json(record.maxTokens)),
            ("max_concurrent_tasks", AdminDatabase.json(record.maxConcurrentTasks)),
            (
                "limits",
                .array(
                    record.limits.map { limits in
                        .object([
                            ("model", .string(limits.model)),
                            ("requests_per_minute", AdminDatabase.json(limits.requestsPerMinute)),
                            ("tokens_per_minute", AdminDatabase.json(limits.tokensPerMinute)),
                            ("tokens_per_day", AdminDatabase.json(limits.tokensPerDay)),
                        ])
                    })
            ),
        ])
    }
}
