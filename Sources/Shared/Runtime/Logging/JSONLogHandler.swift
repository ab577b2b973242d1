import Foundation
import HandoffWire
import Logging
import Synchronization

/// `HANDOFF_LOG_FORMAT=json`: one JSON object per line on standard error — `time`, `level`, `process` (the logger's
/// label), `message`, `source`, and the metadata as strings — for log pipelines that parse lines rather than read them.
package struct JSONLogHandler: LogHandler {
    package var logLevel: Logger.Level = .info
    package var metadata: Logger.Metadata = [:]
    package var metadataProvider: Logger.MetadataProvider?
    private let label: String
    /// Whole lines only: two threads logging at once must not interleave within a line.
    private static let output = Mutex(FileHandle.standardError)

    package init(label: String, metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        self.metadataProvider = metadataProvider
    }

    package subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    package func log(event: LogEvent) {
        let line = Self.line(
            time: Date(), level: event.level, label: label, message: event.message.description, source: event.source,
            metadata: metadata.merging(metadataProvider?.get() ?? [:]) { $1 }.merging(event.metadata ?? [:]) { $1 })
        Self.output.withLock { $0.write(Data((line + "\n").utf8)) }
    }

    /// One record as its JSON line: the fixed members first, then the metadata, sorted by key.
    package static func line(
        time: Date, level: Logger.Level, label: String, message: String, source: String, metadata: Logger.Metadata
    ) -> String {
        JSONValue.object(
            [
                ("time", .string(time.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)))),
                ("level", .string(level.rawValue)), ("process", .string(label)), ("message", .string(message)),
                ("source", .string(source)),
            ] + metadata.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value.description)) }
        ).text
    }
}
