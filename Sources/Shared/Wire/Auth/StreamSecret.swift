import Crypto
import Foundation

/// The HMAC key shared by the API server (which signs stream tokens) and the SSE servers (which verify them).
///
/// `HANDOFF_SECRET` wins. Without it, local development reads `HANDOFF_SECRET_FILE`, creating it with fresh
/// random bytes the first time; creation is exclusive, so processes that start together agree on one secret.
/// There is no built-in fallback value.
package struct StreamSecret: Sendable {
    /// Raw bytes, because Crypto's `SymmetricKey` is not `Sendable`; `key` wraps them when needed.
    private let bytes: [UInt8]

    package init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    package var key: SymmetricKey { SymmetricKey(data: bytes) }

    package static func load(settings: Settings = Settings()) throws -> StreamSecret {
        if let value = settings.environment[ConfigKey.secret.rawValue], !value.isEmpty {
            return try StreamSecret(text: value, origin: ConfigKey.secret.rawValue)
        }
        guard let path = settings.string(.secretFile) else { throw SettingsError.missing(.secret) }
        return try loadOrCreate(path: path)
    }

    static func loadOrCreate(path: String) throws -> StreamSecret {
        let url = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        let fresh = SymmetricKey(size: .bits256).withUnsafeBytes { Hex.encode($0) }
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        if fd >= 0 {
            let written = fresh.withCString { write(fd, $0, strlen($0)) }
            close(fd)
            guard written == fresh.utf8.count else { throw StreamSecretError.unreadable(path) }
        } else if errno != EEXIST {
            throw StreamSecretError.unreadable(path)
        }
        // Another process may have created the file a moment ago and not written it yet.
        for _ in 0..<50 {
            if let text = try? String(contentsOf: url, encoding: .utf8), !text.isEmpty {
                return try StreamSecret(text: text, origin: path)
            }
            usleep(10_000)
        }
        throw StreamSecretError.unreadable(path)
    }

    init(text: String, origin: String) throws {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard trimmed.utf8.count >= 32 else { throw StreamSecretError.tooShort(origin) }
        self.bytes = Array(trimmed.utf8)
    }
}

package enum StreamSecretError: Error, CustomStringConvertible {
    case tooShort(String)
    case unreadable(String)

    package var description: String {
        switch self {
        case .tooShort(let origin): "the stream secret from \(origin) is shorter than 32 characters"
        case .unreadable(let path): "cannot create or read the stream secret file \(path)"
        }
    }
}
