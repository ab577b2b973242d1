import Foundation
import HandoffWire
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
        #expect(throws: StreamTokenError.expired) {
            try StreamToken.verify(text, taskID: task, secret: secret, now: now)
        }
    }

    @Test func tokenOfAnotherTaskIsForged() {
        let text = StreamToken(taskID: UUID(), expiresAt: now + 60).encoded(secret: secret)
        #expect(throws: StreamTokenError.forged) {
            try StreamToken.verify(text, taskID: task, secret: secret, now: now)
        }
    }

    @Test func tokenSignedWithAnotherSecretIsForged() {
        let other = StreamSecret(bytes: Array("fedcba9876543210fedcba9876543210".utf8))
        let text = StreamToken(taskID: task, expiresAt: now + 60).encoded(secret: other)
        #expect(throws: StreamTokenError.forged) {
            try StreamToken.verify(text, taskID: task, secret: secret, now: now)
        }
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
            #expect(throws: StreamTokenError.forged) {
                try StreamToken.verify(flipped, taskID: task, secret: secret, now: now)
            }
        }
    }

    @Test(arguments: [nil, ""])
    func absentTokenIsMissing(text: String?) {
        #expect(throws: StreamTokenError.missing) {
            try StreamToken.verify(text, taskID: task, secret: secret, now: now)
        }
    }

    @Test(arguments: ["abc", "123", "123.", "x.abc", "1.2.3", "123.@@@"])
    func garbageIsMalformed(text: String) {
        #expect(throws: StreamTokenError.malformed) {
            try StreamToken.verify(text, taskID: task, secret: secret, now: now)
        }
    }

    @Test func tokenIsURLSafe() {
        let text = StreamToken(taskID: task, expiresAt: now + 60).encoded(secret: secret)
        #expect(text.allSatisfy { $0.isLetter || $0.isNumber || "-_.".contains($0) })
    }

    /// A keyed task's token names its owner: a request naming another key (or anything that is not the owner's key)
    /// is refused even with a valid token; one naming no key (a browser's EventSource) is let in.
    @Test func anOwnedTokenAdmitsItsOwnerAndNoOtherKey() throws {
        let owner = APIKey.generate()
        let text = StreamToken(
            taskID: task, expiresAt: now + 60, owner: StreamToken.ownerTag(keyDigest: owner.digest, secret: secret)
        )
        .encoded(secret: secret)
        #expect(text.split(separator: ".").count == 3 && !text.contains(owner.digest) && !text.contains(owner.text))
        #expect(try StreamToken.verify(text, taskID: task, secret: secret, now: now).owner != nil)
        try StreamToken.authorize(text, taskID: task, authorization: "Bearer \(owner.text)", secret: secret)
        try StreamToken.authorize(text, taskID: task, authorization: nil, secret: secret)
        for other in ["Bearer \(APIKey.generate().text)", "Bearer not-a-key", "Basic \(owner.text)"] {
            #expect(throws: OpenAIError.forbidden("This completion belongs to another API key.")) {
                try StreamToken.authorize(text, taskID: task, authorization: other, secret: secret)
            }
        }
        // The owner is under the MAC: another key's tag in the same token is a forgery.
        let parts = text.split(separator: ".")
        let swapped =
            "\(parts[0]).\(StreamToken.ownerTag(keyDigest: APIKey.generate().digest, secret: secret)).\(parts[2])"
        #expect(throws: StreamTokenError.forged) {
            try StreamToken.verify(swapped, taskID: task, secret: secret, now: now)
        }
        // A keyless task's token ignores the header: the task has no owner to check it against.
        let keyless = StreamToken(taskID: task, expiresAt: now + 60).encoded(secret: secret)
        try StreamToken.authorize(keyless, taskID: task, authorization: "Bearer \(owner.text)", secret: secret)
    }
}

/// A token opens the routes of its kind only: a chat completion's stream token is no Responses token, and back.
struct StreamTokenKindTests {
    let secret = StreamSecret(bytes: Array("0123456789abcdef0123456789abcdef".utf8))
    let task = UUID()
    let now: Int64 = 1_800_000_000

    @Test(arguments: [nil, "owner-tag"])
    func aTokenOpensOnlyItsOwnKind(owner: String?) throws {
        let chat = StreamToken(taskID: task, expiresAt: now + 60, owner: owner, kind: .chat).encoded(secret: secret)
        let responses = StreamToken(taskID: task, expiresAt: now + 60, owner: owner, kind: .responses).encoded(
            secret: secret)
        #expect(try StreamToken.verify(chat, taskID: task, kind: .chat, secret: secret, now: now).kind == .chat)
        #expect(
            try StreamToken.verify(responses, taskID: task, kind: .responses, secret: secret, now: now).kind
                == .responses)
        #expect(throws: StreamTokenError.forged) {
            try StreamToken.verify(chat, taskID: task, kind: .responses, secret: secret, now: now)
        }
        #expect(throws: StreamTokenError.forged) {
            try StreamToken.verify(responses, taskID: task, kind: .chat, secret: secret, now: now)
        }
    }
}
