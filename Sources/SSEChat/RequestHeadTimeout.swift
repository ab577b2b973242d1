import NIOCore

/// What the connection handler tells `RequestHeadTimeout`, through the pipeline.
enum RequestCycle {
    /// A whole request head arrived.
    case headReceived
    /// The response to it is over and the connection waits for the next request.
    case responded
}

/// Closes a connection whose request head does not arrive whole within `timeout` (`HANDOFF_SSE_HEADER_TIMEOUT_SECONDS`)
/// of the connection opening, or of the first byte of a later request: a client that trickles a head (slowloris)
/// or connects and says nothing holds a socket for that long at most. A keep-alive connection between requests
/// has no deadline — Caddy pools them — until its next request's first byte.
///
/// Sits before the HTTP decoder, so it sees bytes as they arrive; the connection handler, after the decoder, says
/// when a head is complete and when its response is over (`RequestCycle`).
final class RequestHeadTimeout: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private enum State {
        /// No request under way: the next byte starts one.
        case idle
        /// A head is arriving; the connection closes when the deadline fires first.
        case awaitingHead(Scheduled<Void>)
        /// The head arrived; the request is being answered.
        case answering
    }

    private let timeout: TimeAmount
    private var state = State.idle

    init(timeout: TimeAmount) {
        self.timeout = timeout
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(context: context)
        context.fireChannelActive()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { arm(context: context) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .idle = state { arm(context: context) }
        context.fireChannelRead(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let cycle = event as? RequestCycle else { return context.fireUserInboundEventTriggered(event) }
        switch (cycle, state) {
        case (.headReceived, .awaitingHead(let deadline)):
            deadline.cancel()
            state = .answering
        case (.headReceived, _):
            state = .answering
        case (.responded, .answering):
            state = .idle
        case (.responded, _):
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        disarm()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        disarm()
    }

    private func arm(context: ChannelHandlerContext) {
        guard case .idle = state else { return }
        let channel = context.channel
        state = .awaitingHead(context.eventLoop.scheduleTask(in: timeout) { channel.close(promise: nil) })
    }

    private func disarm() {
        if case .awaitingHead(let deadline) = state { deadline.cancel() }
        state = .idle
    }
}
