import Foundation

/// The public model names of a deployment and the backend behind each: the built-in `demo` model, or one or more
/// OpenAI-compatible upstream servers. The API server validates requests and lists `/models` from it; the worker
/// builds its backends from it. Both read the same file, `HANDOFF_MODELS_FILE`:
///
/// ```json
/// {"models": [
///   {"name": "demo", "backend": "demo"},
///   {"name": "local", "backend": "openai", "upstreams": [
///     {"base_url": "http://127.0.0.1:8001/v1", "model": "smollm2", "api_key_env": "LOCAL_API_KEY"}]}
/// ]}
/// ```
///
/// Upstream API keys are never in the file: `api_key_env` names the environment variable the worker reads.
/// Without a file, every name in `HANDOFF_MODELS` is served by the demo backend.
package struct ModelCatalogue: Sendable, Equatable, Decodable {
    package var models: [Model]

    package init(models: [Model]) {
        self.models = models
    }

    package struct Model: Sendable, Equatable, Decodable {
        package var name: String
        package var backend: Backend
        /// The servers of an `openai` model, tried least busy first.
        package var upstreams: [Upstream]
        /// `max_tokens`: the most reply tokens a request to this model gets (below `HANDOFF_MAX_TOKENS_LIMIT`).
        package var maxTokens: Int?

        package init(name: String, backend: Backend, upstreams: [Upstream] = [], maxTokens: Int? = nil) {
            self.name = name
            self.backend = backend
            self.upstreams = upstreams
            self.maxTokens = maxTokens
        }

        enum CodingKeys: String, CodingKey {
            case name, backend, upstreams
            case maxTokens = "max_tokens"
        }

        package init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            name = try container.decode(String.self, forKey: .name)
            backend = try container.decode(Backend.self, forKey: .backend)
            upstreams = try container.decodeIfPresent([Upstream].self, forKey: .upstreams) ?? []
            maxTokens = try container.decodeIfPresent(Int.self, forKey: .maxTokens)
            if let maxTokens, maxTokens <= 0 {
                throw DecodingError.dataCorruptedError(
                    forKey: .maxTokens, in: container, debugDescription: "must be a positive integer")
            }
        }
    }

    package enum Backend: String, Sendable, Equatable, Decodable {
        /// The built-in story teller: no network, the same reply on every machine.
        case demo
        /// Any server of OpenAI's `POST /chat/completions` with streaming: llama.cpp, vLLM, Ollama, OpenAI.
        case openai
    }

    /// One OpenAI-compatible server of a model. Every duration is in milliseconds.
    package struct Upstream: Sendable, Equatable, Decodable {
        /// Up to and including the version segment: `http://127.0.0.1:8001/v1` (`/chat/completions` is appended).
        package var baseURL: String
        /// The model name the upstream knows: the public name is rewritten to it.
        package var model: String
        /// The environment variable holding the upstream's API key; no `Authorization` is sent when unset.
        package var apiKeyEnv: String?
        package var connectTimeoutMs: Int
        /// From sending the request to the first chunk of the reply (prompt processing included).
        package var firstTokenTimeoutMs: Int
        /// The longest silence between two chunks once the reply has started.
        package var betweenTokensTimeoutMs: Int
        /// Requests this worker sends to the server at once; more wait for a free one.
        package var maxConcurrentRequests: Int
        /// How long a server that failed (or answered 429 without `Retry-After`) is passed over.
        package var backoffMs: Int
        /// The longest line (or event) of the server's stream Handoff reads; a longer one ends the reply with
        /// `upstream_error`.
        package var maxLineBytes: Int
        /// The most bytes of one reply's stream Handoff reads; past it the reply ends with `upstream_error`.
        package var maxReplyBytes: Int
        /// How the server continues an answer from its text so far, when a server fails mid-answer.
        package var continuation: UpstreamContinuation

        package static let defaults = (
            connectMs: 5_000, firstTokenMs: 60_000, betweenTokensMs: 30_000, maxConcurrent: 16, backoffMs: 5_000,
            maxLineBytes: 1 << 20, maxReplyBytes: 64 << 20
        )

        package init(
            baseURL: String, model: String, apiKeyEnv: String? = nil, connectTimeoutMs: Int = defaults.connectMs,
            firstTokenTimeoutMs: Int = defaults.firstTokenMs, betweenTokensTimeoutMs: Int = defaults.betweenTokensMs,
            maxConcurrentRequests: Int = defaults.maxConcurrent, backoffMs: Int = defaults.backoffMs,
            maxLineBytes: Int = defaults.maxLineBytes, maxReplyBytes: Int = defaults.maxReplyBytes,
            continuation: UpstreamContinuation = .none
        ) {
            self.continuation = continuation
            self.maxLineBytes = maxLineBytes
            self.maxReplyBytes = maxReplyBytes
            self.baseURL = baseURL
            self.model = model
            self.apiKeyEnv = apiKeyEnv
            self.connectTimeoutMs = connectTimeoutMs
            self.firstTokenTimeoutMs = firstTokenTimeoutMs
            self.betweenTokensTimeoutMs = betweenTokensTimeoutMs
            self.maxConcurrentRequests = maxConcurrentRequests
            self.backoffMs = backoffMs
        }

        enum CodingKeys: String, CodingKey {
            case model, continuation
            case baseURL = "base_url"
            case apiKeyEnv = "api_key_env"
            case connectTimeoutMs = "connect_timeout_ms"
            case firstTokenTimeoutMs = "first_token_timeout_ms"
            case betweenTokensTimeoutMs = "between_tokens_timeout_ms"
            case maxConcurrentRequests = "max_concurrent_requests"
            case backoffMs = "backoff_ms"
            case maxLineBytes = "max_line_bytes"
            case maxReplyBytes = "max_reply_bytes"
        }

        package init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            let positive = { (key: CodingKeys, fallback: Int) throws -> Int in
                let value = try container.decodeIfPresent(Int.self, forKey: key) ?? fallback
                guard value > 0 else {
                    throw DecodingError.dataCorruptedError(
                        forKey: key, in: container, debugDescription: "must be a positive integer")
                }
                return value
            }
            self.init(
                baseURL: try container.decode(String.self, forKey: .baseURL),
                model: try container.decode(String.self, forKey: .model),
                apiKeyEnv: try container.decodeIfPresent(String.self, forKey: .apiKeyEnv),
                connectTimeoutMs: try positive(.connectTimeoutMs, Self.defaults.connectMs),
                firstTokenTimeoutMs: try positive(.firstTokenTimeoutMs, Self.defaults.firstTokenMs),
                betweenTokensTimeoutMs: try positive(.betweenTokensTimeoutMs, Self.defaults.betweenTokensMs),
                maxConcurrentRequests: try positive(.maxConcurrentRequests, Self.defaults.maxConcurrent),
                backoffMs: try positive(.backoffMs, Self.defaults.backoffMs),
                maxLineBytes: try positive(.maxLineBytes, Self.defaults.maxLineBytes),
                maxReplyBytes: try positive(.maxReplyBytes, Self.defaults.maxReplyBytes),
                continuation: try container.decodeIfPresent(UpstreamContinuation.self, forKey: .continuation) ?? .none)
        }

        /// The endpoint every request goes to.
        package var chatCompletionsURL: String {
            (baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL) + "/chat/completions"
        }
    }

    /// The public names, in the file's order (the order of `GET /v1/models`).
    package var names: [String] { models.map(\.name) }

    package func model(named name: String) -> Model? {
        models.first { $0.name == name }
    }
}

extension ModelCatalogue {
    /// The deployment's catalogue: `HANDOFF_MODELS_FILE` when set, else `HANDOFF_MODELS` as demo models.
    package init(settings: Settings) throws(CatalogueError) {
        guard let path = settings.string(.modelsFile) else {
            self.init(models: settings.list(.models).map { Model(name: $0, backend: .demo) })
            return
        }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw .unreadable(path: path, reason: error.localizedDescription)
        }
        try self.init(json: data, path: path)
    }

    /// Decodes and checks a catalogue: names unique and non-empty, an `openai` model with at least one upstream
    /// whose URL is `http(s)://host…`, a `demo` model with none.
    package init(json: Data, path: String = "the model catalogue") throws(CatalogueError) {
        do {
            self = try JSONDecoder().decode(ModelCatalogue.self, from: json)
        } catch let error as DecodingError {
            throw .invalid(path: path, reason: Self.describe(error))
        } catch {
            throw .invalid(path: path, reason: "not valid JSON")
        }
        var seen: Set<String> = []
        for model in models {
            guard !model.name.isEmpty, seen.insert(model.name).inserted else {
                throw .invalid(path: path, reason: "model names must be unique and non-empty ('\(model.name)')")
            }
            switch model.backend {
            case .demo where !model.upstreams.isEmpty:
                throw .invalid(path: path, reason: "model '\(model.name)': the demo backend takes no upstreams")
            case .openai where model.upstreams.isEmpty:
                throw .invalid(
                    path: path, reason: "model '\(model.name)': an openai backend needs at least one upstream")
            default: break
            }
            for upstream in model.upstreams {
                guard let url = URL(string: upstream.baseURL), ["http", "https"].contains(url.scheme ?? ""),
                    url.host != nil
                else {
                    throw .invalid(path: path, reason: "model '\(model.name)': base_url must be an http(s) URL")
                }
            }
        }
        guard !models.isEmpty else { throw .invalid(path: path, reason: "it lists no models") }
    }

    private static func describe(_ error: DecodingError) -> String {
        let path = { (keys: [any CodingKey]) in
            keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
        }
        switch error {
        case .keyNotFound(let key, let context): return "missing '\(path(context.codingPath + [key]))'"
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            return "wrong type at '\(path(context.codingPath))'"
        case .dataCorrupted(let context) where !context.codingPath.isEmpty:
            return "invalid value at '\(path(context.codingPath))': \(context.debugDescription)"
        default: return "not valid JSON"
        }
    }
}

/// A catalogue the process cannot start with. Says which file and what is wrong, never a secret.
package enum CatalogueError: Error, CustomStringConvertible {
    case unreadable(path: String, reason: String)
    case invalid(path: String, reason: String)

    package var description: String {
        switch self {
        case .unreadable(let path, let reason): "\(ConfigKey.modelsFile.rawValue): cannot read \(path): \(reason)"
        case .invalid(let path, let reason):
            "\(ConfigKey.modelsFile.rawValue): \(path) is not a valid model catalogue: \(reason)"
        }
    }
}
