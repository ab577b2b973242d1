/// A point on a clock the test moves by hand: the state machines are fed these, so their tests need no real time.
struct TestInstant: InstantProtocol {
    var offset: Duration

    static func at(_ milliseconds: Int) -> TestInstant {
        TestInstant(offset: .milliseconds(milliseconds))
    }

    func advanced(by duration: Duration) -> TestInstant {
        TestInstant(offset: offset + duration)
    }

    func duration(to other: TestInstant) -> Duration {
        other.offset - offset
    }

    static func < (lhs: TestInstant, rhs: TestInstant) -> Bool {
        lhs.offset < rhs.offset
    }
}
