import Foundation
import Testing

@testable import HandoffWire

struct RateLimitReportTests {
    @Test(arguments: [
        (Duration.milliseconds(12), "12ms"), (.seconds(1), "1s"), (.milliseconds(1500), "1.5s"),
        (.milliseconds(59_500), "59.5s"),
        (.seconds(360), "6m0s"), (.milliseconds(90_250), "1m30.25s"), (.seconds(3723), "1h2m3s"), (.zero, "0s"),
    ])
    func durationsAreWrittenAsOpenAIWritesThem(duration: Duration, text: String) {
        #expect(RateLimitReport.goDuration(duration) == text)
    }

    func report(_ scopes: [RateLimitScope], reservation: Int = 100) -> RateLimitReport {
        RateLimitReport(
            keyName: "alice", scopes: scopes, reservation: reservation, untilMinuteReset: .milliseconds(1200),
            untilDayReset: .seconds(3600))
    }

    func scope(
        model: String = "", rpm: Int? = nil, tpm: Int? = nil, tpd: Int? = nil, requests: Int = 0, minute: Int = 0,
        day: Int = 0,
        reserved: Int = 0
    ) -> RateLimitScope {
        RateLimitScope(
            model: model, requestsPerMinute: rpm, tokensPerMinute: tpm, tokensPerDay: tpd, requestsThisMinute: requests,
            tokensThisMinute: minute, tokensToday: day, reserved: reserved)
    }

    @Test func headersShowTheTightestWindowOfEachKind() {
        let headers = report([
            scope(rpm: 10, tpm: 1000, tpd: 5000, requests: 3, minute: 200, day: 4500, reserved: 100),
            scope(model: "big", tpm: 800, minute: 100, reserved: 50),
        ])
        .headers(admitted: true)
        #expect(
            Dictionary(uniqueKeysWithValues: headers.map { ($0.name, $0.value) }) == [
                "x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "6",
                "x-ratelimit-reset-requests": "1.2s",
                // The day has 5000 - 4500 - 100 - 100 = 300 left, the minute 600, the model's minute 550.
                "x-ratelimit-limit-tokens": "5000", "x-ratelimit-remaining-tokens": "300",
                "x-ratelimit-reset-tokens": "1h0m0s",
            ])
        #expect(report([scope()]).headers(admitted: true).isEmpty, "a key without limits has no x-ratelimit headers")
    }

    @Test func aRefusalSaysWhatWasUsedAndWhenToRetry() {
        // Charged tokens alone leave no room: wait for the window.
        let full = report([scope(tpm: 1000, minute: 950)]).refusal(.tokensPerMinute)
        #expect(
            full.error.message
                == "Rate limit reached for key 'alice' on tokens per min (TPM): Limit 1000, Used 950, Requested 100. Please try again in 1.2s."
        )
        #expect(
            full.error.type == "tokens" && full.error.code == "rate_limit_exceeded"
                && full.retryAfter == .milliseconds(1200))
        // Only running tasks' reservations stand in the way: they end with their streams.
        let reserved = RateLimitReport(
            keyName: "alice", scopes: [scope(tpm: 1000, minute: 100, reserved: 850)], reservation: 100,
            untilMinuteReset: .seconds(40), untilDayReset: .seconds(3600)
        ).refusal(.tokensPerMinute)
        #expect(reserved.retryAfter == .seconds(1))
        let daily = report([scope(model: "m", tpd: 500, day: 450)]).refusal(.tokensPerDay)
        #expect(
            daily.error.message.hasPrefix(
                "Rate limit reached for key 'alice' and model 'm' on tokens per day (TPD): Limit 500, Used 450"))
    }
}
