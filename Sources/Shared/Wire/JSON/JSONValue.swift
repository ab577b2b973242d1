/// JSON with its keys in the order given. Foundation's `JSONEncoder` does not keep key order on Linux, and
/// Handoff's events must match OpenAI's byte for byte, so the wire types render themselves through this.
package indirect enum JSONValue: Sendable, Equatable {
    case string(String)
    case int(Int64)
    /// A finite number (`temperature`, `top_p`), written as Swift writes a Double: `1.0`, `0.7`.
    case number(Double)
    case bool(Bool)
    case null
    case array([JSONValue])
    case object([(String, JSONValue)])

    package static func optional(_ value: String?) -> JSONValue {
        value.map(JSONValue.string) ?? .null
    }

    package var text: String {
        var output = ""
        write(to: &output)
        return output
    }

    package func write(to output: inout String) {
        switch self {
        case .string(let value): Self.writeString(value, to: &output)
        case .int(let value): output += String(value)
        case .number(let value): output += value.isFinite ? String(value) : "null"
        case .bool(let value): output += value ? "true" : "false"
        case .null: output += "null"
        case .array(let values):
            output += "["
            for (index, value) in values.enumerated() {
                if index > 0 { output += "," }
                value.write(to: &output)
            }
            output += "]"
        case .object(let members):
            output += "{"
            for (index, (key, value)) in members.enumerated() {
                if index > 0 { output += "," }
                Self.writeString(key, to: &output)
                output += ":"
                value.write(to: &output)
            }
            output += "}"
        }
    }

    /// Escapes what RFC 8259 requires (quote, backslash, control characters) and nothing else, like OpenAI.
    /// Runs of bytes that need no escape are copied whole: this is the worker's hottest loop (one content chunk
    /// per token).
    static func writeString(_ value: String, to output: inout String) {
        output += "\""
        let utf8 = value.utf8
        var run = utf8.startIndex
        var index = run
        while index != utf8.endIndex {
            let byte = utf8[index]
            // Every byte that needs an escape is ASCII, so `index` is a scalar boundary wherever one is found — but
            // not always a character boundary (`"` + U+0301 is one character): slice scalars, never characters.
            if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 {
                output += Substring(value.unicodeScalars[run..<index])
                output += escape(byte)
                run = utf8.index(after: index)
            }
            index = utf8.index(after: index)
        }
        output += Substring(value.unicodeScalars[run...])
        output += "\""
    }

    private static func escape(_ byte: UInt8) -> String {
        switch byte {
        case UInt8(ascii: "\""): return "\\\""
        case UInt8(ascii: "\\"): return "\\\\"
        case UInt8(ascii: "\n"): return "\\n"
        case UInt8(ascii: "\r"): return "\\r"
        case UInt8(ascii: "\t"): return "\\t"
        case 0x08: return "\\b"
        case 0x0C: return "\\f"
        default:
            let hex = String(byte, radix: 16)
            return "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        }
    }

    package static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        lhs.text == rhs.text
    }
}
