import Foundation
import HandoffWire
import Testing

@testable import SSEChat

/// A stream's phases and decisions, fed reads and instants by hand.
struct StreamDeliveryStateTests {
    typealias State = StreamDeliveryState<TestInstant>
    let task = UUID()

    func fresh() -> State {
        State(openedAt: .at(0), pingAfter: .milliseconds(500))
    }

    func catchUp(exists: Bool = true, streaming: Bool = true, head: Int = 0, ownerLapsed: Bool = false)
        -> StreamCatchUp
    {
        StreamCatchUp(exists: exists, streaming: streaming, head: head, batches: [], ownerLapsed: ownerLapsed)
    }

    func opened(_ catchUp: StreamCatchUp, cursor: Int = 0, chat: Bool = true) -> (State, State.ReadAction) {
        var state = fresh()
        let action = state.readCompleted(.success(catchUp), cursor: StreamCursor(sequence: cursor), chat: chat)
        return (state, action)
    }

    @Test func nothingHappensBeforeTheFirstRead() {
        let state = fresh()
        #expect(state.wake(at: .at(10_000), writable: true, hasNews: true) == .nothing)
        #expect(!state.pingDue(at: .at(10_000)))
    }

    @Test func anOpeningReadRefusesWhatCannotBeServed() {
        #expect(opened(catchUp(exists: false)).1 == .refuse(.notFound("No such completion stream.")))
        #expect(opened(catchUp(ownerLapsed: true)).1 == .refuse(.ownerLapsed))
        guard case .refuse(let error) = opened(catchUp(head: 3), cursor: 4).1 else {
            Issue.record("a cursor past the end is refused")
            return
        }
        #expect(error.code == "invalid_event_id")
        var failing = fresh()
        let failed = failing.readCompleted(.failure(CancellationError()), cursor: .start, chat: true)
        guard case .refuse = failed else { return #expect(Bool(false), "a failed opening is refused") }
    }

    @Test func aResponsesStreamIsNotCheckedAgainstChatEventIds() {
        let (state, action) = opened(catchUp(head: 3), cursor: 40, chat: false)
        #expect(action == .openResponses(catchUp(head: 3)))
        #expect(state.phase == .streaming)
    }

    @Test func anOpenedChatStreamStreamsOrCollects() {
        let (streaming, action) = opened(catchUp(head: 3), cursor: 3)
        #expect(action == .openChat(catchUp(head: 3)))
        #expect(streaming.phase == .streaming && !streaming.collecting)
        let (collecting, _) = opened(catchUp(streaming: false))
        #expect(collecting.collecting)
        #expect(!collecting.pingDue(at: .at(60_000)), "one answer at the end is never pinged")
    }

    @Test func wakeUpsCatchUpOnlyAWritableStreamWithNews() {
        let (state, _) = opened(catchUp())
        #expect(state.wake(at: .at(1), writable: true, hasNews: true) == .catchUp)
        #expect(state.wake(at: .at(1), writable: false, hasNews: true) == .nothing, "a slow client is passed over")
        #expect(state.wake(at: .at(1), writable: true, hasNews: false) == .nothing)
    }

    @Test func aSilentStreamPingsHalfWayThroughTheKeepalive() {
        var (state, _) = opened(catchUp())
        #expect(state.wake(at: .at(499), writable: true, hasNews: false) == .nothing)
        #expect(state.wake(at: .at(500), writable: true, hasNews: false) == .ping)
        state.wrote(at: .at(500))
        #expect(state.wake(at: .at(900), writable: true, hasNews: false) == .nothing)
    }

    @Test func aStuckReadStillPings() {
        var (state, _) = opened(catchUp())
        state.readStarted()
        #expect(state.phase == .reading)
        #expect(state.wake(at: .at(100), writable: true, hasNews: true) == .nothing, "one read at a time")
        #expect(state.wake(at: .at(600), writable: true, hasNews: true) == .ping)
    }

    @Test func aReadReturnsTheStreamToStreaming() {
        var (state, _) = opened(catchUp())
        state.readStarted()
        let failed = state.readCompleted(.failure(CancellationError()), cursor: .start, chat: true)
        #expect(failed == .nothing)
        #expect(state.phase == .streaming)
        state.readStarted()
        let read = state.readCompleted(.success(catchUp(head: 2)), cursor: .start, chat: true)
        #expect(read == .deliver(catchUp(head: 2)))
        #expect(state.phase == .streaming)
    }

    @Test func aReadThatOutlivesItsStreamIsIgnored() {
        var (state, _) = opened(catchUp())
        state.readStarted()
        let first = state.finish()
        let second = state.finish()
        #expect(first && !second, "a stream ends once")
        let late = state.readCompleted(.success(catchUp(head: 2)), cursor: .start, chat: true)
        #expect(late == .nothing)
        #expect(!state.isOpen)
        #expect(state.wake(at: .at(60_000), writable: true, hasNews: true) == .nothing)
    }
}
