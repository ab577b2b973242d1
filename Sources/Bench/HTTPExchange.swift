import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// One HTTP/1.1 exchange per connection over SwiftNIO: small, and able to pick its source address, which is
/// how the idle scenario spreads tens of thousands of connections over 127.0.0.0/8 without running out of ports.
struct HTTPExchange: Sendable {
    let host: String
    let port: Int
    var source: String?
    let group: any EventLoopGroup

    init(
        host: String, port: Int, source: String? = nil,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.host = host
        self.port = port
        self.source = source
        self.group = group
    }

    struct Head: Sendable {
        let status: Int
        let headers: HTTPHeaders
    }

    /// Sends one request and hands the response to `body` as it arrives: the head first, then each body part.
    func run<Result: Sendable>(
        method: HTTPMethod, path: String, json: String? = nil, headers extraHeaders: [(String, String)] = [],
        _ body: (Head, inout NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator) async throws -> Result
    ) async throws -> Result {
        var bootstrap = ClientBootstrap(group: group).connectTimeout(.seconds(10))
        if let source { bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: source, port: 0)) }
        // An address, not a host name: NIO would resolve a name on another thread for every connection.
        let channel = try await bootstrap.connect(to: try SocketAddress(ipAddress: host, port: port)) { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHTTPClientHandlers()
                return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(
                    wrappingChannelSynchronously: channel)
            }
        }
        return try await channel.executeThenClose { inbound, outbound in
            var headers: HTTPHeaders = ["Host": "\(host):\(port)", "Connection": "close"]
            headers.add(contentsOf: extraHeaders)
            let payload = json.map { ByteBuffer(string: $0) }
            if let payload {
                headers.add(name: "Content-Type", value: "application/json")
                headers.add(name: "Content-Length", value: String(payload.readableBytes))
            }
            // In one write: a server that answers (and, as asked, closes) as soon as it has parsed the head would
            // otherwise make a separate write of the end fail with "I/O on closed channel".
            var request: [HTTPClientRequestPart] = [
                .head(HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: headers))
            ]
            if let payload { request.append(.body(.byteBuffer(payload))) }
            request.append(.end(nil))
            try await outbound.write(contentsOf: request)
            var parts = inbound.makeAsyncIterator()
            guard case .head(let head) = try await parts.next() else {
                throw BenchError.protocolViolation("no response head")
            }
            return try await body(Head(status: Int(head.status.code), headers: head.headers), &parts)
        }
    }

    /// POSTs `json` and returns the redirect target (the API's hand-off).
    func handoff(path: String, json: String, headers: [(String, String)] = []) async throws -> String {
        try await run(method: .POST, path: path, json: json, headers: headers) { head, parts in
            while case .some(let part) = try await parts.next(), case .body = part {}
            guard head.status == 302, let location = head.headers.first(name: "Location") else {
                throw BenchError.unexpectedStatus(head.status)
            }
            return location
        }
    }
}

enum BenchError: Error, CustomStringConvertible {
    case unexpectedStatus(Int)
    case protocolViolation(String)

    var description: String {
        switch self {
        case .unexpectedStatus(let status): "unexpected HTTP status \(status)"
        case .protocolViolation(let what): "protocol violation: \(what)"
        }
    }
}
