import HandoffWire
import PostgresNIO

/// One answer row of an enqueue statement (`RateLimitLedger.standingColumns`): one request and one row of its
/// key's limits. A keyless request has one row and no scope.
struct AdmissionRow {
    static let columns = 16

    var ord: Int
    var verdict: Admission.Verdict
    var keyName: String?
    var keyMaxTokens: Int?
    var scope: RateLimitScope?
    var reservation: Int
    var untilMinuteReset: Duration
    var untilDayReset: Duration
    var keyMaxConcurrentTasks: Int?

    init(_ row: PostgresRandomAccessRow) throws {
        ord = try row[0].decode(Int.self)
        let verdict = try row[1].decode(String.self)
        guard let known = Admission.Verdict(rawValue: verdict) else { throw UnknownVerdict(verdict: verdict) }
        self.verdict = known
        keyName = try row[2].decode(String?.self)
        keyMaxTokens = try row[3].decode(Int?.self)
        if try row[4].decode(String?.self) != nil {
            scope = try RateLimitScope(row, from: 4)
        }
        reservation = try row[12].decode(Int.self)
        untilMinuteReset = .milliseconds(try row[13].decode(Int.self))
        untilDayReset = .milliseconds(try row[14].decode(Int.self))
        keyMaxConcurrentTasks = try row[15].decode(Int?.self)
    }

    struct UnknownVerdict: Error {
        var verdict: String
    }
}

extension RateLimitScope {
    /// The eight columns from `first` on: model, the three limits, the three counters, the reservation.
    init(_ cells: PostgresRandomAccessRow, from first: Int) throws {
        self.init(
            model: try cells[first].decode(String.self), requestsPerMinute: try cells[first + 1].decode(Int?.self),
            tokensPerMinute: try cells[first + 2].decode(Int?.self),
            tokensPerDay: try cells[first + 3].decode(Int?.self),
            requestsThisMinute: try cells[first + 4].decode(Int.self),
            tokensThisMinute: try cells[first + 5].decode(Int.self),
            tokensToday: try cells[first + 6].decode(Int.self), reserved: try cells[first + 7].decode(Int.self))
    }
}

extension Admission {
    /// The admissions of `count` requests, in order, from their answer rows.
    static func assemble(_ rows: [AdmissionRow], count: Int) throws -> [Admission] {
        var admissions = [Admission?](repeating: nil, count: count)
        for (ord, rows) in Dictionary(grouping: rows, by: \.ord) where (1...count).contains(ord) {
            let first = rows[0]
            var admission = Admission(
                verdict: first.verdict, keyMaxTokens: first.keyMaxTokens,
                keyMaxConcurrentTasks: first.keyMaxConcurrentTasks)
            if let keyName = first.keyName {
                admission.limits = RateLimitReport(
                    keyName: keyName, scopes: rows.compactMap(\.scope).sorted { $0.model < $1.model },
                    reservation: first.reservation, untilMinuteReset: first.untilMinuteReset,
                    untilDayReset: first.untilDayReset)
            }
            admissions[ord - 1] = admission
        }
        // Every request has a row; one without would be neither queued nor refused.
        guard !admissions.contains(where: { $0 == nil }) else { throw MissingAnswer() }
        return admissions.compactMap { $0 }
    }

    struct MissingAnswer: Error {}
}
