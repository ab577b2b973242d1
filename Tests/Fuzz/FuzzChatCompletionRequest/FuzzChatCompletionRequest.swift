// libFuzzer target: what the API server makes of a `POST /v1/chat/completions` body from anyone on the network.
// `RequestValidation.decode` (JSON, duplicate keys, NUL, the checks) must answer any bytes with a request or an
// `OpenAIError`, never a trap; `JSONDuplicateKeys` promises the same for bytes no decoder accepted.
import Foundation
import FuzzDriver
import HandoffWire

/// Limits small enough that inputs of `-max_len` bytes reach every one of them.
let validation = RequestValidation(
    models: ["demo", "local"], maxTokensLimit: 4096, modelMaxTokens: ["local": 512], maxMessages: 8,
    maxPromptCharacters: 1000)

/// Named as libFuzzer names it, because libFuzzer's own `main`, linked in though never run, refers to it.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let body = Data(bytes: start, count: count)
    _ = JSONDuplicateKeys.first(in: body)
    guard let request = try? validation.decode(body) else { return 0 }
    // What the worker relies on: an accepted request's reply cap lies within its model's limit.
    let cap = validation.tokenCap(of: request)
    precondition(
        (1...validation.tokenLimit(of: request.model)).contains(cap), "accepted a request with token cap \(cap)")
    return 0
}

runFuzzer(fuzz)
