import NIOCore

/// An incremental parser of `text/event-stream` bytes, fed as they arrive, so latency is measured at the
/// moment each event is complete. Only what Handoff and OpenAI-style servers send matters here: `id:`,
/// `data:`, comment lines and the blank line that ends an event.
struct SSEParser {
    struct Event: Equatable {
        var id: String?
        var data: String
        /// Comment lines inside this event's block (their text after the colon).
        var comments: [String] = []
    }

    private var line: [UInt8] = []
    private var id: String?
    private var data: [String] = []
    private var blockComments: [String] = []
    private(set) var comments = 0

    /// Feeds `buffer`; returns the events it completed, in order.
    mutating func feed(_ buffer: ByteBuffer) -> [Event] {
        var events: [Event] = []
        // Line by line, not byte by byte: the parser runs on the machine it measures, so its cost is kept small.
        buffer.withUnsafeReadableBytes { bytes in
            var start = bytes.startIndex
            while let newline = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) {
                line.append(contentsOf: bytes[start..<newline])
                if let event = endLine() { events.append(event) }
                start = newline + 1
            }
            line.append(contentsOf: bytes[start...])
        }
        return events
    }

    private mutating func endLine() -> Event? {
        defer { line.removeAll(keepingCapacity: true) }
        if line.last == UInt8(ascii: "\r") { line.removeLast() }
        guard !line.isEmpty else {
            guard !data.isEmpty else { return nil }
            defer {
                data.removeAll()
                blockComments.removeAll()
                id = nil
            }
            return Event(
                id: id, data: data.count == 1 ? data[0] : data.joined(separator: "\n"), comments: blockComments)
        }
        if line.first == UInt8(ascii: ":") {
            comments += 1
            // Part of the block it stands in: Handoff's keepalive, sent without a blank line, joins the next event.
            blockComments.append(String(decoding: line.dropFirst(), as: UTF8.self))
            return nil
        }
        // On the bytes, not on `Character`s: a thousand streams' events are parsed on the machine being measured.
        let colon = line.firstIndex(of: UInt8(ascii: ":")) ?? line.endIndex
        var valueStart = min(colon + 1, line.endIndex)
        if valueStart < line.endIndex, line[valueStart] == UInt8(ascii: " ") { valueStart += 1 }
        let field = line[..<colon]
        if field.elementsEqual("data".utf8) {
            data.append(String(decoding: line[valueStart...], as: UTF8.self))
        } else if field.elementsEqual("id".utf8) {
            id = String(decoding: line[valueStart...], as: UTF8.self)
        }
        return nil
    }
}
