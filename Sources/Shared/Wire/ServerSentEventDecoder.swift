import NIOCore

/// An incremental `text/event-stream` parser that follows the WHATWG rules: lines end with LF, CR or CRLF (a CR
/// at the end of one read and the LF at the start of the next are one line end); a leading BOM is dropped; lines
/// starting with `:` are comments; `data:` lines join with LF; `event:` sets the type and `id:` the last event id
/// (unless it holds NUL); `retry:` and unknown fields are ignored; a blank line dispatches the event if it has
/// data. Bytes are kept until their line ends, so a UTF-8 character split across reads decodes whole.
struct ServerSentEventDecoder {
    struct Event: Equatable, Sendable {
        var type: String
        var data: String
        var lastEventID: String
    }

    private static let bom: [UInt8] = [0xEF, 0xBB, 0xBF]

    private var line: [UInt8] = []
    /// How many bytes of a leading BOM have matched so far; `nil` once the stream's start is past.
    private var bomMatched: Int? = 0
    private var lastByteWasCR = false
    private var data: [UInt8] = []
    private var hasData = false
    private var type = ""
    private var lastEventID = ""

    /// Feeds the next bytes; returns the events they complete, in order.
    mutating func feed(_ buffer: ByteBuffer) -> [Event] {
        buffer.withUnsafeReadableBytes { feed($0) }
    }

    mutating func feed(_ bytes: some Sequence<UInt8>) -> [Event] {
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
                if let event = endLine() { events.append(event) }
            default:
                lastByteWasCR = false
                line.append(byte)
            }
        }
        return events
    }

    private mutating func endLine() -> Event? {
        defer { line.removeAll(keepingCapacity: true) }
        if line.isEmpty { return dispatch() }
        if line.first == UInt8(ascii: ":") { return nil }
        let colon = line.firstIndex(of: UInt8(ascii: ":"))
        let field = line[..<(colon ?? line.endIndex)]
        var value = colon.map { line[line.index(after: $0)...] } ?? []
        if value.first == UInt8(ascii: " ") { value = value.dropFirst() }
        switch String(decoding: field, as: UTF8.self) {
        case "data":
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

    private mutating func dispatch() -> Event? {
        defer {
            data.removeAll(keepingCapacity: true)
            hasData = false
            type = ""
        }
        guard hasData else { return nil }
        return Event(type: type.isEmpty ? "message" : type, data: String(decoding: data, as: UTF8.self), lastEventID: lastEventID)
    }
}
