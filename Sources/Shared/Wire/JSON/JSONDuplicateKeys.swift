/// Finds an object that names the same member twice, at any depth.
///
/// RFC 8259 leaves such an object's meaning open, and readers disagree: Swift's `JSONDecoder` keeps the first
/// member, Postgres's `jsonb` the last. A body checked by one and run from the other would run what was never
/// checked (`"max_tokens":2, …, "max_tokens":100000`), so Handoff refuses it before either reads it.
///
/// Keys compare as the strings they decode to, escapes resolved (`"max_\u0074okens"` is `max_tokens`), as `jsonb`
/// compares them. One pass over the bytes with an explicit stack: no recursion, so nesting depth cannot exhaust the
/// thread's stack. It expects JSON a decoder has accepted; on anything else it stops and may miss a duplicate, but
/// never traps.
package enum JSONDuplicateKeys {
    package struct Duplicate: Equatable, Sendable {
        /// The member's name, decoded.
        package var key: String
        /// Where the second one stands, as OpenAI names a parameter: `messages[1].content`.
        package var path: String
    }

    private enum Frame {
        case object(path: String, keys: Set<String>, expectingKey: Bool, key: String)
        case array(path: String, index: Int)
    }

    package static func first(in json: some Collection<UInt8>) -> Duplicate? {
        let bytes = Array(json)
        var stack: [Frame] = []
        var index = 0
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: "{"):
                stack.append(.object(path: childPath(stack), keys: [], expectingKey: true, key: ""))
            case UInt8(ascii: "["):
                stack.append(.array(path: childPath(stack), index: 0))
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                _ = stack.popLast()
            case UInt8(ascii: ","):
                switch stack.last {
                case .array(let path, let position): stack[stack.count - 1] = .array(path: path, index: position + 1)
                case .object(let path, let keys, _, let key):
                    stack[stack.count - 1] = .object(path: path, keys: keys, expectingKey: true, key: key)
                case nil: break
                }
            case UInt8(ascii: ":"):
                if case .object(let path, let keys, _, let key) = stack.last {
                    stack[stack.count - 1] = .object(path: path, keys: keys, expectingKey: false, key: key)
                }
            case UInt8(ascii: "\""):
                guard let (text, end) = string(in: bytes, from: index) else { return nil }
                index = end
                if case .object(let path, var keys, true, _) = stack.last {
                    guard keys.insert(text).inserted else { return Duplicate(key: text, path: join(path, text)) }
                    stack[stack.count - 1] = .object(path: path, keys: keys, expectingKey: false, key: text)
                }
                continue
            default:
                break
            }
            index += 1
        }
        return nil
    }

    /// The path of the value about to start inside the innermost container.
    private static func childPath(_ stack: [Frame]) -> String {
        switch stack.last {
        case .object(let path, _, _, let key): join(path, key)
        case .array(let path, let index): "\(path)[\(index)]"
        case nil: ""
        }
    }

    private static func join(_ path: String, _ key: String) -> String {
        path.isEmpty ? key : "\(path).\(key)"
    }

    /// The string literal opening at `start`, decoded, and the index just past its closing quote.
    private static func string(in bytes: [UInt8], from start: Int) -> (String, Int)? {
        var decoded: [UInt8] = []
        var index = start + 1
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                return (String(decoding: decoded, as: UTF8.self), index + 1)
            case UInt8(ascii: "\\"):
                guard index + 1 < bytes.count else { return nil }
                let escape = bytes[index + 1]
                index += 2
                switch escape {
                case UInt8(ascii: "b"): decoded.append(0x08)
                case UInt8(ascii: "f"): decoded.append(0x0C)
                case UInt8(ascii: "n"): decoded.append(0x0A)
                case UInt8(ascii: "r"): decoded.append(0x0D)
                case UInt8(ascii: "t"): decoded.append(0x09)
                case UInt8(ascii: "u"):
                    guard let (scalar, end) = unicodeEscape(in: bytes, from: index) else { return nil }
                    decoded.append(contentsOf: Array(String(Character(scalar)).utf8))
                    index = end
                default: decoded.append(escape)  // \" \\ \/
                }
            default:
                decoded.append(byte)
                index += 1
            }
        }
        return nil
    }

    /// The scalar of `XXXX` at `start` (just past `\u`), joining a surrogate pair; a lone surrogate decodes as
    /// U+FFFD, which no key a decoder accepted can then collide with by accident.
    private static func unicodeEscape(in bytes: [UInt8], from start: Int) -> (Unicode.Scalar, Int)? {
        guard let high = hex4(bytes, start) else { return nil }
        if (0xD800...0xDBFF).contains(high), start + 10 <= bytes.count, bytes[start + 4] == UInt8(ascii: "\\"),
            bytes[start + 5] == UInt8(ascii: "u"), let low = hex4(bytes, start + 6), (0xDC00...0xDFFF).contains(low)
        {
            let value = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
            return (Unicode.Scalar(value) ?? "\u{FFFD}", start + 10)
        }
        return (Unicode.Scalar(high) ?? "\u{FFFD}", start + 4)
    }

    private static func hex4(_ bytes: [UInt8], _ start: Int) -> UInt32? {
        guard start + 4 <= bytes.count else { return nil }
        var value: UInt32 = 0
        for byte in bytes[start..<start + 4] {
            guard let digit = hexDigit(byte) else { return nil }
            value = value << 4 | digit
        }
        return value
    }

    private static func hexDigit(_ byte: UInt8) -> UInt32? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt32(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt32(byte - UInt8(ascii: "A") + 10)
        default: nil
        }
    }
}
