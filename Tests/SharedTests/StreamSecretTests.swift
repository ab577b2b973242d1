import Foundation
import HandoffWire
import Testing

struct StreamSecretTests {
    func temporaryPath() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("handoff-secret-\(UUID())/secret").path
    }

    func sign(_ secret: StreamSecret) -> String {
        StreamToken(taskID: UUID(uuidString: "00000000-0000-0000-0000-000000000001")!, expiresAt: 1).encoded(
            secret: secret)
    }

    @Test func environmentSecretWins() throws {
        let secret = try StreamSecret.load(
            settings: Settings(environment: [
                "HANDOFF_SECRET": String(repeating: "s", count: 40), "HANDOFF_SECRET_FILE": "/nonexistent/dir/secret",
            ]))
        #expect(sign(secret) == sign(StreamSecret(bytes: Array(String(repeating: "s", count: 40).utf8))))
    }

    @Test func shortSecretIsRefused() {
        #expect(throws: StreamSecretError.self) {
            try StreamSecret.load(settings: Settings(environment: ["HANDOFF_SECRET": "short"]))
        }
    }

    @Test func missingFileIsCreatedOnceWithPrivateModeAndReused() throws {
        let path = temporaryPath()
        let settings = Settings(environment: ["HANDOFF_SECRET_FILE": path])
        let first = try StreamSecret.load(settings: settings)
        let second = try StreamSecret.load(settings: settings)
        #expect(sign(first) == sign(second))
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let other = try StreamSecret.load(settings: Settings(environment: ["HANDOFF_SECRET_FILE": temporaryPath()]))
        #expect(sign(first) != sign(other), "each fresh file holds a fresh random secret")
    }

    @Test func processesStartingTogetherAgreeOnOneSecret() async throws {
        let settings = Settings(environment: ["HANDOFF_SECRET_FILE": temporaryPath()])
        let signatures = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<16 { group.addTask { sign(try StreamSecret.load(settings: settings)) } }
            return try await group.reduce(into: Set<String>()) { $0.insert($1) }
        }
        #expect(signatures.count == 1)
    }
}
