import Synchronization

/// Holds each of `parties` tasks at `arrive()` until all of them have arrived, round after round: a race that must
/// be a race (both parties inside the same round) without a sleep or a spin.
final class RoundBarrier: Sendable {
    private struct State {
        var arrived = 0
        var waiting: [CheckedContinuation<Void, Never>] = []
    }

    private let parties: Int
    private let state = Mutex(State())

    init(parties: Int) {
        self.parties = parties
    }

    func arrive() async {
        await withCheckedContinuation { continuation in
            let release = state.withLock { state -> [CheckedContinuation<Void, Never>] in
                state.arrived += 1
                state.waiting.append(continuation)
                guard state.arrived == parties else { return [] }
                defer { state = State() }
                return state.waiting
            }
            for waiter in release { waiter.resume() }
        }
    }
}
