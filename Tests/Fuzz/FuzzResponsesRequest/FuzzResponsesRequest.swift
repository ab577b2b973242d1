// libFuzzer target: what the API server makes of a `POST /v1/responses` body. `ResponsesRequest` decodes it,
// checks it and builds the chat completion the worker runs; any bytes must end in a request or an `OpenAIError`,
// never a trap.
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
    guard let request = try? ResponsesRequest(Data(bytes: start, count: count), validation: validation) else {
        return 0
    }
    // What the worker relies on: the chat completion it runs streams, with usage, within the model's limit.
    precondition(
        request.chat.stream == true && request.chat.includeUsage, "built a chat body that does not stream usage")
    let cap = validation.tokenCap(of: request.chat)
    precondition(
        (1...validation.tokenLimit(of: request.chat.model)).contains(cap), "accepted a request with token cap \(cap)")
    return 0
}

runFuzzer(fuzz)
