/// How an upstream server continues an answer from the text already streamed, when the server that was writing it
/// failed mid-answer: the catalogue's `"continuation"` of each upstream. The continuation is the original request
/// with one more message, the assistant's text so far, which the server extends instead of starting over.
package enum UpstreamContinuation: String, Sendable, Equatable, Decodable, CaseIterable {
    /// Not continued: a failure mid-answer ends the stream with an error event (the default).
    case none
    /// A trailing assistant message is continued as it is: llama.cpp's `llama-server`; Ollama, for templates that
    /// allow it.
    case prefill
    /// vLLM: continued when the request also says `continue_final_message: true, add_generation_prompt: false`.
    case continueFinalMessage = "continue_final_message"
}

extension ModelCatalogue {
    /// The models whose answers can be continued: the demo model (it continues deterministically) and those with a
    /// server that continues answers.
    package var continuableModels: [String] {
        models.filter { $0.backend == .demo || $0.upstreams.contains { $0.continuation != .none } }.map(\.name)
    }
}
