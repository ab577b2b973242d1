import Foundation
import Shared
import Testing

struct StreamTokenTests {
    let secret = StreamSecret(bytes: Array("0123456789abcdef0123456789abcdef".utf8))
    let task = UUID()
    let now: Int64 = 1_800_000_000

    @Test func signedTokenVerifiesForItsTask() throws {
        let text = StreamToken(taskID: task, expiresAt: now + 60).encoded(secret: secret)
        let token = try StreamToken.verify(text, taskID: task, secret: secret, now: now)
        #expect(token == StreamToken(taskID: task, expiresAt: now + 60))
    }

    @Test func expiredTokenIsRejected() {
        let text = StreamToken(taskID: task, expiresAt: now).encoded(secret: secret)
        #expect(throws: StreamTokenError.expired) { try StreamToken.verify(text, taskID: task, secret: secret, now: now) }
    }

    @Test func tokenOfAnotherTaskIsForged() {
        let text = StreamToken(taskID: UUID(), expiresAt: now + 60).encoded(secret: secret)
        #expect(throws: StreamTokenError.forged) { try StreamToken.verify(text, taskID: task, secret: secret, now: now) }
    }

    @Test func tokenSignedWithAnotherSecretIsForged() {
        let other = StreamSecret(bytes: Array("fedcba9876543210fedcba9876543210".utf8))
        let text = StreamToken(taskID: task, expiresAt: now + 60).encoded(secret: other)
        #expect(throws: StreamTokenError.forged) { try StreamToken.verify(text, taskID: task, secret: secret, now: now) }
    }

    @Test func extendingTheExpiryBreaksTheSignature() {
        let text = StreamToken(taskID: task, expiresAt: now - 1).encoded(secret: secret)
        let signature = text.split(separator: ".")[1]
        #expect(throws: StreamTokenError.forged) {
            try StreamToken.verify("\(now + 3600).\(signature)", taskID: task, secret: secret, now: now)
        }
    }

    /// Every character of the signature matters, including the last, whose low bits are base64 padding.
    @Test func anyFlippedSignatureCharacterIsForged() {
        let text = StreamToken(taskID: task, expiresAt: now + 60).encoded(secret: secret)
        let signatureStart = text.firstIndex(of: ".")!
        for index in text.indices where index > signatureStart {
            var flipped = text
            flipped.replaceSubrange(index...index, with: text[index] == "A" ? "B" : "A")
            #expect(throws: StreamTokenError.forged) { try StreamToken.verify(flipped, taskID: task, secret: secret, now: now) }
        }
    }

    @Test(arguments: [nil, ""])
    func absentTokenIsMissing(text: String?) {
        #expect(throws: StreamTokenError.missing) { try StreamToken.verify(text, taskID: task, secret: secret, now: now) }
    }

    @Test(arguments: ["abc", "123", "123.", "x.abc", "1.2.3", "123.@@@"])
    func garbageIsMalformed(text: String) {
        #expect(throws: StreamTokenError.malformed) { try StreamToken.verify(text, taskID: task, secret: secret, now: now) }
    }

    @Test func tokenIsURLSafe() {
        let text = StreamToken(taskID: task, expiresAt: now + 60).encoded(secret: secret)
        #expect(text.allSatisfy { $0.isLetter || $0.isNumber || "-_.".contains($0) })
    }
}
