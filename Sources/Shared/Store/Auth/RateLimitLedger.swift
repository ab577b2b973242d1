/// The SQL that keeps every key's counters, as fragments of the statements that enqueue and end tasks — so
/// admission and reservation ride on the enqueue (no extra round trip), and settlement on the statement that
/// records a task's outcome (the reservation is released in the same transaction as the charge).
///
/// Windows are fixed: the UTC minute and the UTC day. A row's counters belong to the window its `minute_start` /
/// `day_start` names; every statement rolls them to `clock`'s windows as it reads or writes them. Fixed windows
/// are what Limitador counts, cost one row per key and scope, and make `x-ratelimit-reset-*` exact; their known
/// cost is a burst of up to twice a limit across a window boundary.
///
/// Every statement that writes a key's rows locks all of them first, in (key_id, model) order, so concurrent
/// admissions and settlements — from any number of API replicas and workers — serialise per key and never
/// deadlock. Under READ COMMITTED a locked row is re-read at its newest version, so what is checked is what is
/// then written: no overshoot by the concurrency.
enum RateLimitLedger {
    /// The windows now: `clock.minute`, `clock.day`, and the milliseconds until each resets.
    static let clock = """
        clock AS (
            SELECT date_trunc('minute', now() AT TIME ZONE 'UTC') AS minute, date_trunc('day', now() AT TIME ZONE 'UTC') AS day,
                ceil(extract(epoch FROM date_trunc('minute', now() AT TIME ZONE 'UTC') + interval '1 minute'
                    - (now() AT TIME ZONE 'UTC')) * 1000)::bigint AS minute_reset_ms,
                ceil(extract(epoch FROM date_trunc('day', now() AT TIME ZONE 'UTC') + interval '1 day'
                    - (now() AT TIME ZONE 'UTC')) * 1000)::bigint AS day_reset_ms
        )
        """

    /// A row's counters as of `clock` (a past window's count as nothing).
    static func minuteRequests(_ row: String) -> String {
        "CASE WHEN \(row).minute_start = clock.minute THEN \(row).minute_requests ELSE 0 END"
    }
    static func minuteTokens(_ row: String) -> String {
        "CASE WHEN \(row).minute_start = clock.minute THEN \(row).minute_tokens ELSE 0 END"
    }
    static func dayTokens(_ row: String) -> String {
        "CASE WHEN \(row).day_start = clock.day THEN \(row).day_tokens ELSE 0 END"
    }

    /// Admission, after `clock`, from a CTE `requests (id, model, body, digest, estimate, prompt_tokens, max_tokens,
    /// cap, response, max_queued, ord)` (`digest` '' when auth is off; `max_tokens` the request's own, 0 when it
    /// set none; `cap` the reply's cap before the key's, 0 for none; `max_queued` HANDOFF_MAX_QUEUED, 0 for none). Ends with
    /// `decided (ord, id, model, body, response, key_id, prompt_tokens, reservation, token_cap, verdict)` and
    /// `running`, each request's standing in each scope it counts against.
    ///
    /// The requests of one statement are checked in `ord` order against running sums, so a batch admits exactly what
    /// fits. A request refused in a batch still counts in the sums after it — a later, smaller request of the same
    /// key in the same batch may be refused though it would fit: conservative, never over.
    ///
    /// The load caps are counted after the locks: the queue's under the `gate` (taken before any key's rows, so
    /// enqueues never wait on each other in two orders), a key's tasks from its locked rows (`active`), each through
    /// a function that reads with a fresh snapshot (migration 6), so a task committed while this statement waited
    /// counts.
    static let admission = """
        callers AS (
            SELECT r.*, k.id AS key_id, k.name AS key_name, k.max_tokens AS key_max_tokens,
                k.max_concurrent_tasks AS key_max_concurrent, least(nullif(r.cap, 0), k.max_tokens) AS token_cap,
                least(r.estimate, r.prompt_tokens + k.max_tokens) AS capped_estimate
            FROM requests r LEFT JOIN handoff_api_keys k ON r.digest <> '' AND k.digest = r.digest
                AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())
        ), gate AS (
            SELECT handoff_queued_tasks(coalesce((SELECT max(max_queued) FROM requests), 0)) AS queued
        ), locked AS (
            SELECT l.* FROM handoff_rate_limits l
            WHERE l.key_id IN (SELECT key_id FROM callers WHERE key_id IS NOT NULL) AND (SELECT queued FROM gate) IS NOT NULL
            ORDER BY l.key_id, l.model FOR UPDATE
        ), active AS (
            SELECT l.key_id, handoff_active_tasks(l.key_id) AS tasks FROM locked l
            WHERE l.model = '' AND l.key_id IN (SELECT key_id FROM callers WHERE key_max_concurrent IS NOT NULL)
        ), scopes AS (
            SELECT c.ord, c.capped_estimate AS estimate, l.key_id, l.model, l.requests_per_minute AS rpm,
                l.tokens_per_minute AS tpm, l.tokens_per_day AS tpd, l.reserved_tokens AS reserved,
                \(minuteRequests("l")) AS minute_requests, \(minuteTokens("l")) AS minute_tokens, \(dayTokens("l")) AS day_tokens
            FROM callers c JOIN locked l ON l.key_id = c.key_id AND l.model IN ('', c.model) CROSS JOIN clock
        ), reservations AS (
            -- A request never reserves more than a whole window holds: one larger than a limit waits for an empty window.
            SELECT ord, least(min(estimate), min(tpm), min(tpd)) AS tokens FROM scopes GROUP BY ord
        ), running AS (
            SELECT s.*, r.tokens AS reservation, count(*) OVER w AS requests_through, sum(r.tokens) OVER w AS tokens_through
            FROM scopes s JOIN reservations r USING (ord)
            WINDOW w AS (PARTITION BY s.key_id, s.model ORDER BY s.ord)
        ), verdicts AS (
            SELECT ord, CASE
                WHEN NOT bool_and(rpm IS NULL OR minute_requests + requests_through <= rpm) THEN 'requests'
                WHEN NOT bool_and(tpm IS NULL OR minute_tokens + reserved + tokens_through <= tpm) THEN 'tokens'
                WHEN NOT bool_and(tpd IS NULL OR day_tokens + reserved + tokens_through <= tpd) THEN 'tokens_per_day'
                ELSE 'admitted' END AS verdict
            FROM running GROUP BY ord
        ), loads AS (
            SELECT c.ord, CASE
                WHEN c.key_max_concurrent IS NOT NULL
                    AND a.tasks + count(*) OVER (PARTITION BY c.key_id ORDER BY c.ord) > c.key_max_concurrent THEN 'concurrency'
                WHEN c.max_queued > 0 AND gate.queued + count(*) OVER (ORDER BY c.ord) > c.max_queued THEN 'overloaded'
                END AS verdict
            FROM callers c LEFT JOIN active a USING (key_id) CROSS JOIN gate
        ), decided AS (
            SELECT c.ord, c.id, c.model, c.body, c.response, c.key_id, c.prompt_tokens, coalesce(r.tokens, 0) AS reservation,
                c.token_cap, CASE WHEN c.digest <> '' AND c.key_id IS NULL THEN 'invalid_api_key'
                    WHEN c.max_tokens > c.key_max_tokens THEN 'max_tokens'
                    WHEN o.verdict = 'concurrency' THEN o.verdict
                    WHEN coalesce(v.verdict, 'admitted') <> 'admitted' THEN v.verdict
                    ELSE coalesce(o.verdict, 'admitted') END AS verdict
            FROM callers c LEFT JOIN reservations r USING (ord) LEFT JOIN verdicts v USING (ord) LEFT JOIN loads o USING (ord)
        )
        """

    /// After a CTE `queued (id, key_id, model, reserved_tokens)` — the tasks inserted — counts their requests and
    /// reserves their tokens on every row they count against.
    static let reservation = """
        reserved AS (
            UPDATE handoff_rate_limits l SET minute_start = clock.minute, day_start = clock.day,
                minute_requests = \(minuteRequests("l")) + q.requests, minute_tokens = \(minuteTokens("l")),
                day_tokens = \(dayTokens("l")), reserved_tokens = l.reserved_tokens + q.tokens
            FROM (
                SELECT s.key_id, s.model, count(*) AS requests, sum(q.reserved_tokens) AS tokens
                FROM queued q JOIN locked s ON s.key_id = q.key_id AND s.model IN ('', q.model) GROUP BY 1, 2
            ) q, clock
            WHERE l.key_id = q.key_id AND l.model = q.model
            RETURNING 1
        )
        """

    /// The answer rows, one per request and scope (`AdmissionRow`'s columns, then the statement's own): the
    /// counters as the request found them, with the earlier requests of its batch; `ord` is 1-based.
    static let standingColumns = """
        d.ord::bigint, d.verdict, c.key_name, c.key_max_tokens, s.model, s.rpm, s.tpm, s.tpd,
        (s.minute_requests + s.requests_through - 1)::bigint, s.minute_tokens, s.day_tokens,
        (s.reserved + s.tokens_through - s.reservation)::bigint, d.reservation, clock.minute_reset_ms, clock.day_reset_ms,
        c.key_max_concurrent
        """
    static let standingSource = "decided d JOIN callers c USING (ord) LEFT JOIN running s USING (ord) CROSS JOIN clock"

    /// Settlement, after `clock`, from a CTE `ended (key_id, model, reserved_tokens, charge)` — tasks that just
    /// reached their outcome: each is charged `charge` in the current windows and its reservation released.
    static let settlement = """
        settling AS (
            SELECT l.key_id, l.model FROM handoff_rate_limits l
            WHERE l.key_id IN (SELECT key_id FROM ended WHERE key_id IS NOT NULL)
            ORDER BY l.key_id, l.model FOR UPDATE
        ), settled AS (
            UPDATE handoff_rate_limits l SET minute_start = clock.minute, day_start = clock.day,
                minute_requests = \(minuteRequests("l")), minute_tokens = \(minuteTokens("l")) + e.charge,
                day_tokens = \(dayTokens("l")) + e.charge, reserved_tokens = greatest(l.reserved_tokens - e.reserved, 0)
            FROM (
                SELECT s.key_id, s.model, sum(e.charge) AS charge, sum(e.reserved_tokens) AS reserved
                FROM ended e JOIN settling s ON s.key_id = e.key_id AND s.model IN ('', e.model) GROUP BY 1, 2
            ) e, clock
            WHERE l.key_id = e.key_id AND l.model = e.model
            RETURNING 1
        )
        """
}
