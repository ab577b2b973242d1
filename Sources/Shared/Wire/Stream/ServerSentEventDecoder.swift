/// An incremental `text/event-stream` parser that follows the WHATWG rules: lines end with LF, CR or CRLF (a CR
/// at the end of one read and the LF at the start of the next are one line end); a leading BOM is dropped; lines
/// starting with `:` are comments; `data:` lines join with LF; `event:` sets the type and `id:` the last event id
/// (unless it holds NUL); `retry:` and unknown fields are ignored; a blank line dispatches the event if it has
/// data. Bytes are kept until their line ends, so a UTF-8 character split across reads decodes whole.
///
/// Comments are counted, and kept with the event whose block they stand in when asked for (`keepsComments`): the
/// benchmark reads its commit stamps from them, and Handoff's keepalive, sent without a blank line, joins the next
/// event's block. The worker relays upstreams with it and the benchmark reads Handoff's streams with it.
///
/// What it holds is bounded: a line longer than `maxLineBytes`, an event whose data grows past it, or a stream of
/// more than `maxStreamBytes` in all throws `Oversized`, so a server that never ends a line (or a reply) costs
/// one task its stream and nothing else in the process.
package struct ServerSentEventDecoder: Sendable {
    package struct Event: Equatable, Sendable {
        package var type: String
        package var data: String
        package var lastEventID: String
        /// The comment lines in this event's block (their text after the colon), when the decoder keeps them.
        package var comments: [String]

        package init(type: String, data: String, lastEventID: String, comments: [String] = []) {
            self.type = type
            self.data = data
            self.lastEventID = lastEventID
            self.comments = comments
        }
    }

    /// Which bound a stream broke.
    package enum Oversized: Error, Equatable {
        case line(limit: Int)
        case stream(limit: Int)
    }

    package let maxLineBytes: Int
    package let maxStreamBytes: Int
    package let keepsComments: Bool
    /// Comment lines seen so far.
    package private(set) var comments = 0
    private var streamBytes = 0

    private static let bom: [UInt8] = [0xEF, 0xBB, 0xBF]

    private var line: [UInt8] = []
    /// How many bytes of a leading BOM have matched so far; `nil` once the stream's start is past.
    private var bomMatched: Int? = 0
    private var lastByteWasCR = false
    private var data: [UInt8] = []
    private var hasData = false
    private var type = ""
    private var lastEventID = ""
    private var blockComments: [String] = []

    package init(maxLineBytes: Int = 1 << 20, maxStreamBytes: Int = 64 << 20, keepsComments: Bool = false) {
        self.maxLineBytes = maxLineBytes
        self.maxStreamBytes = maxStreamBytes
        self.keepsComments = keepsComments
    }

    /// Feeds the next bytes; returns the events they complete, in order.
    package mutating func feed(_ bytes: some Collection<UInt8>) throws(Oversized) -> [Event] {
        streamBytes += bytes.count
        guard streamBytes <= maxStreamBytes else { throw .stream(limit: maxStreamBytes) }
        var events: [Event] = []
        for byte in bytes {
            if let matched = bomMatched {
                if byte == Self.bom[matched] {
                    bomMatched = matched + 1 == Self.bom.count ? nil : matched + 1
                    continue
                }
                // Not a BOM after all: what matched so far was text.
                line.append(contentsOf: Self.bom[..<matched])
                bomMatched = nil
            }
            switch byte {
            case UInt8(ascii: "\n") where lastByteWasCR:
                lastByteWasCR = false
            case UInt8(ascii: "\n"), UInt8(ascii: "\r"):
                lastByteWasCR = byte == UInt8(ascii: "\r")
                if let event = try endLine() { events.append(event) }
            default:
                lastByteWasCR = false
                guard line.count < maxLineBytes else { throw .line(limit: maxLineBytes) }
                line.append(byte)
            }
        }
        return events
    }

    private mutating func endLine() throws(Oversized) -> Event? {
        defer { line.removeAll(keepingCapacity: true) }
        if line.isEmpty { return dispatch() }
        if line.first == UInt8(ascii: ":") {
            comments += 1
            if keepsComments { blockComments.append(String(decoding: line.dropFirst(), as: UTF8.self)) }
            return nil
        }
        let colon = line.firstIndex(of: UInt8(ascii: ":"))
        let field = line[..<(colon ?? line.endIndex)]
        var value = colon.map { line[line.index(after: $0)...] } ?? []
        if value.first == UInt8(ascii: " ") { value = value.dropFirst() }
        switch String(decoding: field, as: UTF8.self) {
        case "data":
            // An event of many short data lines grows as one long line would.
            guard data.count + value.count < maxLineBytes else { throw Oversized.line(limit: maxLineBytes) }
            if hasData { data.append(UInt8(ascii: "\n")) }
            data.append(contentsOf: value)
            hasData = true
        case "event":
            type = String(decoding: value, as: UTF8.self)
        case "id" where !value.contains(0):
            lastEventID = String(decoding: value, as: UTF8.self)
        default:
            break
        }
        return nil
    }

    /// A blank line: the event, if it has data. A block of comments alone makes no event, and its comments stay
    /// for the next one.
    private mutating func dispatch() -> Event? {
        defer {
            data.removeAll(keepingCapacity: true)
            hasData = false
            type = ""
        }
        guard hasData else { return nil }
        defer { blockComments.removeAll() }
        return Event(
            type: type.isEmpty ? "message" : type, data: String(decoding: data, as: UTF8.self),
            lastEventID: lastEventID,
            comments: blockComments)
    }
}
