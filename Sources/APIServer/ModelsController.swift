import HandoffHTTP
import HandoffWire
import Hummingbird

/// `GET /api|/v1/models` and `/models/<id>`: the models this deployment serves (the model catalogue's names, in its
/// order), in OpenAI's list shape, so SDKs that list or look up models before use work unchanged.
struct ModelsController: Sendable {
    let models: [String]
    let authentication: Authentication

    func addRoutes(to router: Router<BasicRequestContext>) {
        for prefix in CompletionsRoute.prefixes {
            router.get("\(prefix)/models") { request, _ in
                let standing = try await authentication.authenticate(request)
                var response = JSONValue.object([("object", .string("list")), ("data", .array(models.map(model)))])
                    .response()
                response.addRateLimitHeaders(standing, admitted: false)
                return response
            }
            router.get("\(prefix)/models/:id") { request, context in
                let standing = try await authentication.authenticate(request)
                let id = context.parameters.get("id") ?? ""
                guard models.contains(id) else { throw OpenAIError.modelNotFound(id) }
                var response = model(id).response()
                response.addRateLimitHeaders(standing, admitted: false)
                return response
            }
        }
    }

    private func model(_ id: String) -> JSONValue {
        .object([
            ("id", .string(id)), ("object", .string("model")), ("created", .int(0)), ("owned_by", .string("handoff")),
        ])
    }
}
