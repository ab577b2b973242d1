import Crypto
import Foundation

/// The capability in a stream URL: `<expiry unix seconds>.<base64url HMAC-SHA256>`.
///
/// The MAC covers a version tag, the task id and the expiry, so a token opens exactly one task's stream until
/// it expires. The task id travels in the path, not in the token.
public struct StreamToken: Sendable, Equatable {
    public let taskID: UUID
    public let expiresAt: Int64

    public init(taskID: UUID, expiresAt: Int64) {
        self.taskID = taskID
        self.expiresAt = expiresAt
    }

    public func encoded(secret: StreamSecret) -> String {
        "\(expiresAt).\(Self.base64URL(Self.mac(taskID: taskID, expiresAt: expiresAt, secret: secret)))"
    }

    /// Checks `text` for `taskID`; `now` is injectable so expiry is testable without sleeping.
    public static func verify(
        _ text: String?, taskID: UUID, secret: StreamSecret, now: Int64 = Int64(Date().timeIntervalSince1970)
    ) throws(StreamTokenError) -> StreamToken {
        guard let text, !text.isEmpty else { throw .missing }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let expiresAt = Int64(parts[0]), !parts[1].isEmpty, let mac = decodeBase64URL(parts[1]) else {
            throw .malformed
        }
        // One spelling per token: base64's last character carries padding bits that decoding ignores.
        guard base64URL(mac) == parts[1] else { throw .forged }
        // Constant-time comparison through Crypto's MAC check.
        guard mac.count == SHA256.byteCount,
            HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: message(taskID, expiresAt), using: secret.key)
        else { throw .forged }
        guard expiresAt > now else { throw .expired }
        return StreamToken(taskID: taskID, expiresAt: expiresAt)
    }

    /// `verify`, answered as the OpenAI error a request carrying the token gets: 401 when it is missing or
    /// expired, 403 when it is not valid for `taskID`. The stream and the cancel endpoint both use it.
    public static func authorize(_ text: String?, taskID: UUID, secret: StreamSecret) throws(OpenAIError) {
        do {
            _ = try verify(text, taskID: taskID, secret: secret)
        } catch .missing {
            throw .unauthorized("A stream token is required: use the one in the Location of POST /v1/chat/completions.")
        } catch .expired {
            throw .unauthorized("The stream token has expired.")
        } catch {
            throw .forbidden("The stream token is not valid for this completion.")
        }
    }

    private static func message(_ taskID: UUID, _ expiresAt: Int64) -> Data {
        Data("handoff-stream-v1|\(taskID.uuidString.lowercased())|\(expiresAt)".utf8)
    }

    private static func mac(taskID: UUID, expiresAt: Int64, secret: StreamSecret) -> Data {
        Data(HMAC<SHA256>.authenticationCode(for: message(taskID, expiresAt), using: secret.key))
    }

    private static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    private static func decodeBase64URL(_ text: Substring) -> Data? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        return Data(base64Encoded: base64)
    }
}

public enum StreamTokenError: Error, Equatable {
    case missing
    case malformed
    case forged
    case expired
}
