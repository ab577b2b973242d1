import Foundation
import HandoffWire
import Logging
import PostgresNIO

/// Limits of one scope of a key: the whole key (`model` ''), or one model on top of it. `nil`: unlimited.
package struct RateLimits: Sendable, Equatable {
    package var model: String
    package var requestsPerMinute: Int?
    package var tokensPerMinute: Int?
    package var tokensPerDay: Int?

    package init(
        model: String = "", requestsPerMinute: Int? = nil, tokensPerMinute: Int? = nil, tokensPerDay: Int? = nil
    ) {
        self.model = model
        self.requestsPerMinute = requestsPerMinute
        self.tokensPerMinute = tokensPerMinute
        self.tokensPerDay = tokensPerDay
    }
}

/// A stored key, as the admin command shows it: never the key itself, which only its creator saw.
package struct APIKeyRecord: Sendable {
    package var id: UUID
    package var name: String
    package var hint: String
    package var createdAt: Date
    package var expiresAt: Date?
    package var revokedAt: Date?
    package var maxTokens: Int?
    package var maxConcurrentTasks: Int?
    package var limits: [RateLimits]

    package var status: String {
        if revokedAt != nil { return "revoked" }
        if let expiresAt, expiresAt <= Date() { return "expired" }
        return "active"
    }
}

/// The key table: what the admin command does with keys, and the API's lookup of a presented key. A key is named
/// by its id or its name (a name matches every key of that name: rotation keeps the old one until it is revoked).
package struct APIKeyStore: Sendable {
    let client: PostgresClient
    let timeout: Duration
    let logger: Logger

    package init(client: PostgresClient, timeout: Duration = .seconds(5), logger: Logger) {
        self.client = client
        self.timeout = timeout
        self.logger = logger
    }

    /// Stores a new key with its key-wide limits and returns it: the only time the key exists outside its owner.
    package func create(
        name: String, limits: RateLimits, maxTokens: Int?, maxConcurrentTasks: Int? = nil, expiresIn: Duration?
    ) async throws -> (id: UUID, key: APIKey) {
        let id = UUID()
        let key = APIKey.generate()
        let expiry = expiresIn.map { Int($0.components.seconds) }
        try await client.perform(
            """
            WITH key AS (
                INSERT INTO handoff_api_keys (id, name, digest, hint, max_tokens, max_concurrent_tasks, expires_at)
                VALUES (\(id), \(name), \(key.digest), \(key.hint), \(maxTokens), \(maxConcurrentTasks),
                    now() + \(expiry)::int * interval '1 second')
                RETURNING id
            )
            INSERT INTO handoff_rate_limits (key_id, model, requests_per_minute, tokens_per_minute, tokens_per_day)
            SELECT id, '', \(limits.requestsPerMinute), \(limits.tokensPerMinute), \(limits.tokensPerDay) FROM key
            """, timeout: timeout, logger: logger)
        return (id, key)
    }

    /// Every key, oldest first, with its limits.
    package func list() async throws -> [APIKeyRecord] {
        let rows = try await client.perform(
            """
            SELECT k.id, k.name, k.hint, k.created_at, k.expires_at, k.revoked_at, k.max_tokens, k.max_concurrent_tasks,
                l.model, l.requests_per_minute, l.tokens_per_minute, l.tokens_per_day
            FROM handoff_api_keys k LEFT JOIN handoff_rate_limits l ON l.key_id = k.id
            ORDER BY k.created_at, k.id, l.model
            """, timeout: timeout, logger: logger)
        var records: [APIKeyRecord] = []
        for (id, name, hint, created, expires, revoked, maxTokens, maxConcurrent, model, rpm, tpm, tpd)
            in try rows.decode(
                (UUID, String, String, Date, Date?, Date?, Int?, Int?, String?, Int?, Int?, Int?).self)
        {
            if records.last?.id != id {
                records.append(
                    APIKeyRecord(
                        id: id, name: name, hint: hint, createdAt: created, expiresAt: expires, revokedAt: revoked,
                        maxTokens: maxTokens, maxConcurrentTasks: maxConcurrent, limits: []))
            }
            if let model {
                records[records.count - 1].limits.append(
                    RateLimits(model: model, requestsPerMinute: rpm, tokensPerMinute: tpm, tokensPerDay: tpd))
            }
        }
        return records
    }

    /// Revokes the active keys `key` names; returns how many. Every new request with them gets 401, and their tasks'
    /// streams stop: refused at open, and ended within a poll when open (`StreamLog.ownerLapsed`).
    package func revoke(_ key: String) async throws -> Int {
        try await client.perform(
            """
            UPDATE handoff_api_keys SET revoked_at = now()
            WHERE (id::text = \(key) OR name = \(key)) AND revoked_at IS NULL
            RETURNING id
            """, timeout: timeout, logger: logger
        ).count
    }

    /// Sets one scope's limits on the active keys `key` names; returns how many keys.
    package func setLimits(_ key: String, _ limits: RateLimits) async throws -> Int {
        try await client.perform(
            """
            INSERT INTO handoff_rate_limits (key_id, model, requests_per_minute, tokens_per_minute, tokens_per_day)
            SELECT id, \(limits.model), \(limits.requestsPerMinute), \(limits.tokensPerMinute), \(limits.tokensPerDay)
            FROM handoff_api_keys WHERE (id::text = \(key) OR name = \(key)) AND revoked_at IS NULL
            ON CONFLICT (key_id, model) DO UPDATE SET requests_per_minute = excluded.requests_per_minute,
                tokens_per_minute = excluded.tokens_per_minute, tokens_per_day = excluded.tokens_per_day
            RETURNING key_id
            """, timeout: timeout, logger: logger
        ).count
    }

    /// Each key's standing in each of its scopes: charged this minute and today, reserved now. `key` '' is all keys.
    package func usage(_ key: String) async throws -> [(id: UUID, name: String, scope: RateLimitScope)] {
        let rows = try await client.perform(
            """
            WITH \(unescaped: RateLimitLedger.clock)
            SELECT k.id, k.name, \(unescaped: Self.scopeColumns)
            FROM handoff_api_keys k JOIN handoff_rate_limits l ON l.key_id = k.id CROSS JOIN clock
            WHERE \(key) = '' OR k.id::text = \(key) OR k.name = \(key)
            ORDER BY k.created_at, k.id, l.model
            """, timeout: timeout, logger: logger)
        return try rows.map { row in
            let cells = row.makeRandomAccess()
            return (
                try cells[0].decode(UUID.self), try cells[1].decode(String.self), try RateLimitScope(cells, from: 2)
            )
        }
    }

    /// The valid key with SHA-256 `digest`, as its standing (nothing reserved by this request); `nil` when there
    /// is none — unknown, revoked and expired keys look the same.
    package func authenticate(digest: String) async throws -> RateLimitReport? {
        let rows = try await client.perform(
            """
            WITH \(unescaped: RateLimitLedger.clock)
            SELECT k.name, clock.minute_reset_ms, clock.day_reset_ms, \(unescaped: Self.scopeColumns)
            FROM handoff_api_keys k JOIN handoff_rate_limits l ON l.key_id = k.id CROSS JOIN clock
            WHERE k.digest = \(digest) AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())
            """, timeout: timeout, logger: logger)
        guard let first = rows.first?.makeRandomAccess() else { return nil }
        return RateLimitReport(
            keyName: try first[0].decode(String.self),
            scopes: try rows.map { try RateLimitScope($0.makeRandomAccess(), from: 3) },
            reservation: 0, untilMinuteReset: .milliseconds(try first[1].decode(Int.self)),
            untilDayReset: .milliseconds(try first[2].decode(Int.self)))
    }

    /// `RateLimitScope`'s columns, in the order `RateLimitScope(_:from:)` reads them.
    private static let scopeColumns = """
        l.model, l.requests_per_minute, l.tokens_per_minute, l.tokens_per_day, \(RateLimitLedger.minuteRequests("l")),
        \(RateLimitLedger.minuteTokens("l")), \(RateLimitLedger.dayTokens("l")), l.reserved_tokens
        """
}
