// libFuzzer target: the worker's parser of an upstream's `text/event-stream`, which any configured upstream (or
// whoever sits between) writes. Besides never trapping, it must keep its documented promise that where the reads
// split the stream changes nothing: the input fed whole and fed in pieces gives the same events, or both throw.
import Foundation
import FuzzDriver
import HandoffWire

/// Bounds small enough that inputs of `-max_len` bytes break each of them.
func makeDecoder() -> ServerSentEventDecoder {
    ServerSentEventDecoder(maxLineBytes: 512, maxStreamBytes: 3072)
}

/// Where the pieces end: inside a leading BOM (1, 2), between a CR and what follows it (the one line end that can
/// straddle two reads), and three points that move with every mutation (an FNV-1a hash of the input).
func cuts(_ bytes: [UInt8]) -> [Int] {
    let hash = bytes.reduce(UInt64(0xcbf2_9ce4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
    let hashed = [hash, hash >> 21, hash >> 42].map { Int($0 % UInt64(bytes.count + 1)) }
    let afterCR = bytes.indices.filter { bytes[$0] == UInt8(ascii: "\r") }.map { $0 + 1 }
    return Set([1, 2].filter { $0 < bytes.count } + afterCR + hashed).sorted()
}

/// Named as libFuzzer names it, because libFuzzer's own `main`, linked in though never run, refers to it.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let bytes = Array(UnsafeRawBufferPointer(start: start, count: count))
    var whole = makeDecoder()
    let wholeEvents = try? whole.feed(bytes)

    var pieces = makeDecoder()
    var piecesEvents: [ServerSentEventDecoder.Event]? = []
    var from = 0
    for end in cuts(bytes) + [bytes.count] {
        guard let events = try? pieces.feed(bytes[from..<end]) else {
            piecesEvents = nil
            break
        }
        piecesEvents? += events
        from = end
    }
    precondition(
        wholeEvents == piecesEvents,
        "split at \(cuts(bytes)): \(String(describing: piecesEvents)), whole: \(String(describing: wholeEvents))")
    return 0
}

runFuzzer(fuzz)
