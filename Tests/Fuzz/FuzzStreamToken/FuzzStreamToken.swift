// libFuzzer target: the stream token, the capability in every stream URL, which anyone holding a URL can alter.
// An input is a presented token (first line) and an `Authorization` header (second line, if any). Verifying any
// text must end in a token or a `StreamTokenError`, never a trap; and a token this server signs must verify, for
// its task and kind only.
import Foundation
import FuzzDriver
import HandoffWire

let secret = StreamSecret(bytes: Array("fuzz-stream-secret-of-32-bytes!!".utf8))
let task = UUID(uuidString: "0f0e0d0c-0b0a-4908-8706-050403020100")!
/// When verification happens, for the presented token: inside the range the seeds' expiries straddle.
let now: Int64 = 1_800_000_000

/// Named as libFuzzer names it, because libFuzzer's own `main`, linked in though never run, refers to it.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: start, count: count)
    let lines = input.split(separator: UInt8(ascii: "\n"), maxSplits: 1, omittingEmptySubsequences: false)
    let presented = String(decoding: lines[0], as: UTF8.self)
    let authorization = lines.count > 1 ? String(decoding: lines[1], as: UTF8.self) : nil
    for kind in [StreamToken.Kind.chat, .responses] {
        _ = try? StreamToken.verify(presented, taskID: task, kind: kind, secret: secret, now: now)
        try? StreamToken.authorize(presented, taskID: task, kind: kind, authorization: authorization, secret: secret)
    }
    checkRoundTrip(like: presented, authorization: authorization)
    return 0
}

/// Signs a token with the presented one's expiry (one second past the earliest, so an instant before it exists)
/// and, if it names one, an owner (the tag of that text, as the server derives owners): it verifies as itself for
/// its own kind, and is forged for the other.
func checkRoundTrip(like presented: String, authorization: String?) {
    let parts = presented.split(separator: ".", omittingEmptySubsequences: false)
    let expiresAt = max(Int64(parts[0]) ?? 0, .min + 1)
    let owner = parts.count == 3 ? StreamToken.ownerTag(keyDigest: String(parts[1]), secret: secret) : nil
    for (kind, other) in [(StreamToken.Kind.chat, StreamToken.Kind.responses), (.responses, .chat)] {
        let token = StreamToken(taskID: task, expiresAt: expiresAt, owner: owner, kind: kind)
        let text = token.encoded(secret: secret)
        let verified = try? StreamToken.verify(text, taskID: task, kind: kind, secret: secret, now: expiresAt - 1)
        precondition(verified == token, "\(text) does not verify as \(token)")
        do {
            _ = try StreamToken.verify(text, taskID: task, kind: other, secret: secret, now: expiresAt - 1)
            preconditionFailure("\(text), a \(kind) token, verifies as a \(other) token")
        } catch {
            precondition(error == .forged, "\(text) as a \(other) token: \(error), expected forged")
        }
        try? StreamToken.authorize(text, taskID: task, kind: kind, authorization: authorization, secret: secret)
    }
}

runFuzzer(fuzz)
