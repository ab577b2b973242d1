import Foundation
import Logging
import Testing

@testable import HandoffHTTP
@testable import HandoffProcess
@testable import HandoffRuntime
@testable import HandoffWire

struct LoggingTests {
    @Test func aJSONLogLineIsOneObjectWithTheFixedMembersAndTheMetadata() throws {
        let line = JSONLogHandler.line(
            time: Date(timeIntervalSince1970: 1_800_000_000.25), level: .notice, label: "handoff.api",
            message: "queued \"x\"\nnext",
            source: "APIServer", metadata: ["task": "t-1", "request_id": .string("r-1")])
        #expect(!line.contains("\n"), "one record, one line")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
        #expect(
            object == [
                "time": "2027-01-15T08:00:00.250Z", "level": "notice", "process": "handoff.api",
                "message": "queued \"x\"\nnext",
                "source": "APIServer", "task": "t-1", "request_id": "r-1",
            ])
        #expect(line.hasPrefix(#"{"time":"#))
    }

    @Test func anUnknownLogFormatIsAnErrorAtStartUp() {
        #expect(throws: SettingsError.self) {
            _ = try ProcessRuntime.bootstrapLogging(
                label: "test", settings: Settings(environment: ["HANDOFF_LOG_FORMAT": "xml"]))
        }
    }

    @Test func onlyASaneRequestIDIsEchoed() {
        #expect(RequestID.isSane("abc-123"))
        #expect(!RequestID.isSane(""))
        #expect(!RequestID.isSane("has space"))
        #expect(!RequestID.isSane(String(repeating: "a", count: 129)))
    }
}
