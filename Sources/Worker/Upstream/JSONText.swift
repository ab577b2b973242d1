import Foundation

/// The structure of JSON text without decoding its values: the members of an object and the elements of an array,
/// as slices of the original text. The upstream relay rewrites a chunk's identity (`id`, `created`, `model`) and
/// passes every other member on byte for byte — numbers keep their spelling, unknown fields survive — and it
/// reads the few things it must know (a delta's keys, a finish reason) without decoding the whole chunk.
enum JSONText {
    struct Malformed: Error {}

    /// The members of the object `text`, in order. Keys are unescaped; values are the exact text.
    static func members(_ text: Substring) throws(Malformed) -> [(key: String, value: Substring)] {
        var scanner = Scanner(text)
        var members: [(key: String, value: Substring)] = []
        try scanner.expect(UInt8(ascii: "{"))
        if try scanner.consume(UInt8(ascii: "}")) { return try scanner.finished(members) }
        repeat {
            let key = try scanner.string()
            try scanner.expect(UInt8(ascii: ":"))
            members.append((try unescape(key), try scanner.value()))
        } while try scanner.consume(UInt8(ascii: ","))
        try scanner.expect(UInt8(ascii: "}"))
        return try scanner.finished(members)
    }

    /// The elements of the array `text`, in order, as exact text.
    static func elements(_ text: Substring) throws(Malformed) -> [Substring] {
        var scanner = Scanner(text)
        var elements: [Substring] = []
        try scanner.expect(UInt8(ascii: "["))
        if try scanner.consume(UInt8(ascii: "]")) { return try scanner.finished(elements) }
        repeat {
            elements.append(try scanner.value())
        } while try scanner.consume(UInt8(ascii: ","))
        try scanner.expect(UInt8(ascii: "]"))
        return try scanner.finished(elements)
    }

    /// The value of a JSON string literal (`"a\nb"`), or `nil` for anything else (`null`, a number, ...).
    static func string(_ text: Substring) -> String? {
        guard text.first == "\"" else { return nil }
        return try? unescape(text)
    }

    /// Whether `text` is `null`, `""` or absent: a field that says nothing.
    static func isEmpty(_ text: Substring?) -> Bool {
        guard let text else { return true }
        return text == "null" || text == "\"\""
    }

    private static func unescape(_ literal: Substring) throws(Malformed) -> String {
        let inner = literal.dropFirst().dropLast()
        guard inner.contains("\\") else { return String(inner) }
        guard let value = try? JSONDecoder().decode(String.self, from: Data(literal.utf8)) else { throw Malformed() }
        return value
    }

    /// Walks the UTF-8 of a JSON text. Every structural character is ASCII, so each index it stops at is also a
    /// boundary of the text's characters and slices cleanly.
    private struct Scanner {
        let text: Substring
        var index: Substring.Index

        init(_ text: Substring) {
            self.text = text
            self.index = text.startIndex
        }

        private var bytes: Substring.UTF8View { text.utf8 }

        mutating func skipSpace() {
            while index < bytes.endIndex, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) {
                index = bytes.index(after: index)
            }
        }

        mutating func consume(_ byte: UInt8) throws(Malformed) -> Bool {
            skipSpace()
            guard index < bytes.endIndex, bytes[index] == byte else { return false }
            index = bytes.index(after: index)
            return true
        }

        mutating func expect(_ byte: UInt8) throws(Malformed) {
            guard try consume(byte) else { throw Malformed() }
        }

        func finished<T>(_ result: T) throws(Malformed) -> T {
            var rest = self
            rest.skipSpace()
            guard rest.index == bytes.endIndex else { throw Malformed() }
            return result
        }

        /// A string literal, quotes included.
        mutating func string() throws(Malformed) -> Substring {
            skipSpace()
            let start = index
            guard index < bytes.endIndex, bytes[index] == UInt8(ascii: "\"") else { throw Malformed() }
            index = bytes.index(after: index)
            while index < bytes.endIndex {
                let byte = bytes[index]
                index = bytes.index(after: index)
                if byte == UInt8(ascii: "\\") {
                    guard index < bytes.endIndex else { throw Malformed() }
                    index = bytes.index(after: index)
                } else if byte == UInt8(ascii: "\"") {
                    return text[start..<index]
                }
            }
            throw Malformed()
        }

        /// Any value, skipped over without decoding; nested objects and arrays by depth.
        mutating func value() throws(Malformed) -> Substring {
            skipSpace()
            let start = index
            guard index < bytes.endIndex else { throw Malformed() }
            switch bytes[index] {
            case UInt8(ascii: "\""):
                _ = try string()
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                var depth = 0
                repeat {
                    guard index < bytes.endIndex else { throw Malformed() }
                    switch bytes[index] {
                    case UInt8(ascii: "\""):
                        _ = try string()
                        continue
                    case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
                    case UInt8(ascii: "}"), UInt8(ascii: "]"): depth -= 1
                    default: break
                    }
                    index = bytes.index(after: index)
                } while depth > 0
            default:
                // A number or a literal: up to the next delimiter.
                while index < bytes.endIndex,
                    ![UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]"), 0x20, 0x09, 0x0A, 0x0D]
                        .contains(bytes[index])
                {
                    index = bytes.index(after: index)
                }
                guard index > start else { throw Malformed() }
            }
            return text[start..<index]
        }
    }
}
