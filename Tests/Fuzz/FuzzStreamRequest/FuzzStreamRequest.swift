// libFuzzer target: the SSE server's reading of a request, `StreamRequest`, over what any client controls: the
// request target (path, query, token, `last_event_id`, `stream`, `starting_after`), `Last-Event-ID` and
// `Authorization`. It must answer with a route or an `OpenAIError`, never a trap.
//
// An input is lines of text: the request target, then `Last-Event-ID`, `Authorization` and the method (GET when
// absent); a missing line is a missing header. No mutation forges a MAC, so placeholders stand for tokens this
// server signed for the seeds' task — `{chat-token}`, `{responses-token}`, and `{owned-chat-token}`,
// `{owned-responses-token}` owned by the API key `{key}` — and mutations reach what is parsed behind the check.
import Foundation
import FuzzDriver
import HandoffWire

let secret = StreamSecret(bytes: Array("fuzz-stream-secret-of-32-bytes!!".utf8))
let task = UUID(uuidString: "0f0e0d0c-0b0a-4908-8706-050403020100")!
let key = "hk-FuzzKeyFuzzKeyFuzzKeyFuzzKeyFuzzKeyFuzzKey0"

let placeholders: [(String, String)] = {
    // 2100-01-01: valid whenever this runs.
    let expiresAt: Int64 = 4_102_444_800
    let owner = StreamToken.ownerTag(keyDigest: APIKey(authorization: "Bearer \(key)")!.digest, secret: secret)
    func token(_ kind: StreamToken.Kind, owner: String? = nil) -> String {
        StreamToken(taskID: task, expiresAt: expiresAt, owner: owner, kind: kind).encoded(secret: secret)
    }
    return [
        ("{owned-chat-token}", token(.chat, owner: owner)),
        ("{owned-responses-token}", token(.responses, owner: owner)),
        ("{chat-token}", token(.chat)), ("{responses-token}", token(.responses)), ("{key}", key),
    ]
}()

/// Named as libFuzzer names it, because libFuzzer's own `main`, linked in though never run, refers to it.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: start, count: count)
    let lines = input.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map { line in
        placeholders.reduce(String(decoding: line, as: UTF8.self)) { $0.replacingOccurrences(of: $1.0, with: $1.1) }
    }
    let line = { (index: Int) in index < lines.count ? lines[index] : nil }
    let header = { (name: String) -> String? in
        switch name {
        case StreamRoute.lastEventIDHeader: line(1)
        case "Authorization": line(2)
        default: nil
        }
    }
    guard let request = try? StreamRequest(method: line(3) ?? "GET", uri: lines[0], header: header, secret: secret)
    else { return 0 }
    // A stream opens only for the task its token was signed for, from a cursor the stream table can hold.
    switch request {
    case .health, .readiness, .metrics:
        break
    case .stream(let opened, let start):
        precondition(opened == task && (0...StreamCursor.maxSequence).contains(start.sequence), "opened \(request)")
    case .responses(let opened, _, let startingAfter):
        precondition(opened == task && (-1...StreamCursor.maxSequence).contains(startingAfter), "opened \(request)")
    }
    return 0
}

runFuzzer(fuzz)
