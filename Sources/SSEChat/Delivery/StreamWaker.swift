import NIOCore

/// The notifier's handle on a stream: it hops every wake-up onto the stream's event loop.
final class StreamWaker: StreamSubscriber {
    let delivery: NIOLoopBound<StreamDelivery>

    init(delivery: NIOLoopBound<StreamDelivery>) {
        self.delivery = delivery
    }

    func wake() {
        delivery.eventLoop.execute { self.delivery.value.wake() }
    }

    func ownerLapsed() {
        delivery.eventLoop.execute { self.delivery.value.ownerLapsed() }
    }
}
