import HandoffWire
import NIOHTTP1

extension StreamRequest {
    /// The request a NIO request head makes.
    init(_ head: HTTPRequestHead, secret: StreamSecret) throws(OpenAIError) {
        try self.init(
            method: head.method.rawValue, uri: head.uri, header: { head.headers.first(name: $0) }, secret: secret)
    }
}
