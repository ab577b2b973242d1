import Crypto
import Foundation

/// The capability in a stream URL: `<expiry unix seconds>.<base64url HMAC-SHA256>` for a task nobody owns (auth
/// off), `<expiry>.<owner>.<mac>` for a task an API key created.
///
/// The MAC covers a version tag, the token's kind, the task id, the expiry and the owner, so a token opens exactly
/// one task's stream, through the routes of its kind only (a chat token is no Responses token), until it expires or
/// its key is revoked. The task id travels in the path, not in the token. The owner is a tag derived from the key's
/// digest with the server secret (`ownerTag`): a replica checks a request's `Authorization` against it without the
/// database, and the URL reveals nothing about the key.
package struct StreamToken: Sendable, Equatable {
    /// Which routes a token opens: a chat completion's stream (and its cancel), or a Responses task's. The kind is
    /// signed, under its own domain tag, rather than spelled in the token, so no token can be relabelled.
    package enum Kind: String, Sendable {
        case chat
        case responses
    }

    package let taskID: UUID
    package let expiresAt: Int64
    /// `ownerTag` of the key that created the task; `nil` for a keyless task.
    package let owner: String?
    package let kind: Kind

    package init(taskID: UUID, expiresAt: Int64, owner: String? = nil, kind: Kind = .chat) {
        self.taskID = taskID
        self.expiresAt = expiresAt
        self.owner = owner
        self.kind = kind
    }

    package func encoded(secret: StreamSecret) -> String {
        let mac = Base64URL.encode(Self.mac(Self.message(kind, taskID, expiresAt, owner), secret: secret))
        guard let owner else { return "\(expiresAt).\(mac)" }
        return "\(expiresAt).\(owner).\(mac)"
    }

    /// The owner tag of the key with SHA-256 `digest`: 128 bits of an HMAC under the stream secret.
    package static func ownerTag(keyDigest digest: String, secret: StreamSecret) -> String {
        Base64URL.encode(mac(Data("handoff-stream-owner|\(digest)".utf8), secret: secret).prefix(16))
    }

    /// Checks `text` for `taskID`; `now` is injectable so expiry is testable without sleeping.
    package static func verify(
        _ text: String?, taskID: UUID, kind: Kind = .chat, secret: StreamSecret,
        now: Int64 = Int64(Date().timeIntervalSince1970)
    ) throws(StreamTokenError) -> StreamToken {
        guard let text, !text.isEmpty else { throw .missing }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard (2...3).contains(parts.count), let expiresAt = Int64(parts[0]), let last = parts.last, !last.isEmpty,
            let mac = Base64URL.decode(last)
        else { throw .malformed }
        let owner = parts.count == 3 ? String(parts[1]) : nil
        guard owner?.isEmpty != true else { throw .malformed }
        // One spelling per token: base64's last character carries padding bits that decoding ignores.
        guard Base64URL.encode(mac) == last else { throw .forged }
        // Constant-time comparison through Crypto's MAC check.
        guard mac.count == SHA256.byteCount,
            HMAC<SHA256>.isValidAuthenticationCode(
                mac, authenticating: message(kind, taskID, expiresAt, owner), using: secret.key)
        else { throw .forged }
        guard expiresAt > now else { throw .expired }
        return StreamToken(taskID: taskID, expiresAt: expiresAt, owner: owner, kind: kind)
    }

    /// `verify`, answered as the OpenAI error a request carrying the token gets: 401 when it is missing or
    /// expired, 403 when it is not valid for `taskID` — or when the request names an API key (`authorization`, an
    /// SDK keeps it on the redirect) that is not the owner's: a leaked URL does not let another key in. The stream
    /// and the cancel endpoint both use it.
    package static func authorize(
        _ text: String?, taskID: UUID, kind: Kind = .chat, authorization: String?, secret: StreamSecret
    ) throws(OpenAIError) {
        let token: StreamToken
        do {
            token = try verify(text, taskID: taskID, kind: kind, secret: secret)
        } catch .missing {
            throw .unauthorized("A stream token is required: use the one in the Location of POST /v1/chat/completions.")
        } catch .expired {
            throw .unauthorized("The stream token has expired.")
        } catch {
            throw .forbidden("The stream token is not valid for this completion.")
        }
        if let owner = token.owner, authorization != nil {
            let presented = APIKey(authorization: authorization).map { ownerTag(keyDigest: $0.digest, secret: secret) }
            guard let presented, ConstantTime.equal(Data(presented.utf8), Data(owner.utf8)) else {
                throw .forbidden("This completion belongs to another API key.")
            }
        }
    }

    /// A chat token signs what tokens signed before kinds existed (so those stay valid); a Responses token signs
    /// under its own tag.
    private static func message(_ kind: Kind, _ taskID: UUID, _ expiresAt: Int64, _ owner: String?) -> Data {
        let task = taskID.uuidString.lowercased()
        switch (kind, owner) {
        case (.chat, nil): return Data("handoff-stream-v1|\(task)|\(expiresAt)".utf8)
        case (.chat, let owner?): return Data("handoff-stream-v2|\(task)|\(expiresAt)|\(owner)".utf8)
        case (.responses, let owner): return Data("handoff-responses-v1|\(task)|\(expiresAt)|\(owner ?? "")".utf8)
        }
    }

    private static func mac(_ message: Data, secret: StreamSecret) -> Data {
        Data(HMAC<SHA256>.authenticationCode(for: message, using: secret.key))
    }
}

package enum StreamTokenError: Error, Equatable {
    case missing
    case malformed
    case forged
    case expired
}

/// Comparing secrets without leaking, through timing, how much of them matched.
package enum ConstantTime {
    package static func equal(_ lhs: Data, _ rhs: Data) -> Bool {
        guard lhs.count == rhs.count else { return false }
        return zip(lhs, rhs).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
