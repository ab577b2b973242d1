import Foundation

/// Where a key stands against one row of its limits (the whole key, or one model), as a request found it.
package struct RateLimitScope: Sendable, Equatable {
    /// '' for the whole key.
    package var model: String
    package var requestsPerMinute: Int?
    package var tokensPerMinute: Int?
    package var tokensPerDay: Int?
    package var requestsThisMinute: Int
    /// Charged in the current minute and day.
    package var tokensThisMinute: Int
    package var tokensToday: Int
    /// Held by the key's queued and running tasks.
    package var reserved: Int

    package init(
        model: String, requestsPerMinute: Int?, tokensPerMinute: Int?, tokensPerDay: Int?, requestsThisMinute: Int,
        tokensThisMinute: Int, tokensToday: Int, reserved: Int
    ) {
        self.model = model
        self.requestsPerMinute = requestsPerMinute
        self.tokensPerMinute = tokensPerMinute
        self.tokensPerDay = tokensPerDay
        self.requestsThisMinute = requestsThisMinute
        self.tokensThisMinute = tokensThisMinute
        self.tokensToday = tokensToday
        self.reserved = reserved
    }
}

/// A keyed request's standing against its limits: the `x-ratelimit-*` headers every answer carries, and the 429
/// a refused request gets — in OpenAI's words, so SDKs read them as they read OpenAI's.
package struct RateLimitReport: Sendable, Equatable {
    package var keyName: String
    package var scopes: [RateLimitScope]
    /// The tokens this request reserves (0 for a request that reserves nothing, e.g. `GET /models`).
    package var reservation: Int
    package var untilMinuteReset: Duration
    package var untilDayReset: Duration

    package init(
        keyName: String, scopes: [RateLimitScope], reservation: Int, untilMinuteReset: Duration, untilDayReset: Duration
    ) {
        self.keyName = keyName
        self.scopes = scopes
        self.reservation = reservation
        self.untilMinuteReset = untilMinuteReset
        self.untilDayReset = untilDayReset
    }

    private struct Window {
        var name: String
        var limit: Int
        var used: Int
        var charged: Int
        var reset: Duration
        var scope: String
        var daily = false
    }

    private func requestWindows() -> [Window] {
        scopes.compactMap { scope in
            scope.requestsPerMinute.map {
                Window(
                    name: "requests per min (RPM)", limit: $0, used: scope.requestsThisMinute,
                    charged: scope.requestsThisMinute,
                    reset: untilMinuteReset, scope: scope.model)
            }
        }
    }

    private func tokenWindows() -> [Window] {
        scopes.flatMap { scope in
            [
                scope.tokensPerMinute.map {
                    Window(
                        name: "tokens per min (TPM)", limit: $0, used: scope.tokensThisMinute + scope.reserved,
                        charged: scope.tokensThisMinute, reset: untilMinuteReset, scope: scope.model)
                },
                scope.tokensPerDay.map {
                    Window(
                        name: "tokens per day (TPD)", limit: $0, used: scope.tokensToday + scope.reserved,
                        charged: scope.tokensToday, reset: untilDayReset, scope: scope.model, daily: true)
                },
            ].compactMap { $0 }
        }
    }

    /// `x-ratelimit-*` for the tightest window of each kind; `admitted` counts this request in them.
    package func headers(admitted: Bool) -> [(name: String, value: String)] {
        var headers: [(name: String, value: String)] = []
        let kinds = [
            ("requests", requestWindows(), admitted ? 1 : 0), ("tokens", tokenWindows(), admitted ? reservation : 0),
        ]
        for (kind, windows, spent) in kinds {
            let remaining = { (window: Window) in max(window.limit - window.used - spent, 0) }
            guard let tightest = windows.min(by: { remaining($0) < remaining($1) }) else { continue }
            headers += [
                ("x-ratelimit-limit-\(kind)", "\(tightest.limit)"),
                ("x-ratelimit-remaining-\(kind)", "\(remaining(tightest))"),
                ("x-ratelimit-reset-\(kind)", Self.goDuration(tightest.reset)),
            ]
        }
        return headers
    }

    /// The 429 for a request refused on `kind`, and how long to wait: until the window resets — or about a second
    /// when only other requests' reservations stand in the way, since those end with their streams.
    package func refusal(_ kind: Admission.Verdict) -> (error: OpenAIError, retryAfter: Duration) {
        let isRequests = kind == .requests
        let candidates = isRequests ? requestWindows() : tokenWindows().filter { $0.daily == (kind == .tokensPerDay) }
        let requested = isRequests ? 1 : reservation
        let window = candidates.first { $0.used + requested > $0.limit } ?? candidates.first
        guard let window else {
            return (
                OpenAIError(
                    status: 429, message: "Rate limit reached.", type: isRequests ? "requests" : "tokens",
                    code: "rate_limit_exceeded"), .seconds(1)
            )
        }
        let onlyReservations = !isRequests && window.charged + requested <= window.limit
        let retryAfter = onlyReservations ? min(.seconds(1), window.reset) : window.reset
        let subject = window.scope.isEmpty ? "key '\(keyName)'" : "key '\(keyName)' and model '\(window.scope)'"
        // Within one statement's batch, refused requests ahead of this one count in `used` (see RateLimitLedger), so
        // it can exceed the limit; what was admitted never does.
        let message =
            "Rate limit reached for \(subject) on \(window.name): Limit \(window.limit), Used \(min(window.used, window.limit)), "
            + "Requested \(requested). Please try again in \(Self.goDuration(retryAfter))."
        return (
            OpenAIError(
                status: 429, message: message, type: isRequests ? "requests" : "tokens", code: "rate_limit_exceeded"),
            retryAfter
        )
    }

    /// A duration as OpenAI writes it in `x-ratelimit-reset-*` (Go's notation): `12ms`, `1s`, `1.5s`, `6m0s`, `1h2m3s`.
    package static func goDuration(_ duration: Duration) -> String {
        let milliseconds = max(Int(duration.wholeMilliseconds), 0)
        if milliseconds == 0 { return "0s" }
        if milliseconds < 1000 { return "\(milliseconds)ms" }
        let hours = milliseconds / 3_600_000
        let minutes = milliseconds / 60_000 % 60
        let rest = milliseconds % 60_000
        var seconds = "\(rest / 1000)"
        if rest % 1000 != 0 {
            seconds += "." + String(String(format: "%03d", rest % 1000).reversed().drop { $0 == "0" }.reversed())
        }
        if hours > 0 { return "\(hours)h\(minutes)m\(seconds)s" }
        if minutes > 0 { return "\(minutes)m\(seconds)s" }
        return "\(seconds)s"
    }
}
