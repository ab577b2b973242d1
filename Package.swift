// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "handoff",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "handoff-api", targets: ["APIServer"]),
        .executable(name: "handoff-sse", targets: ["SSEChat"]),
        .executable(name: "handoff-worker", targets: ["Worker"]),
        .executable(name: "handoff-bench", targets: ["Bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // Sources/Shared, in layers; each depends only on the ones below it (README, "The pieces").
        // Wire: the contracts every process shares, as values — OpenAI and Responses JSON, stream events and tokens,
        // keys, the model catalogue, configuration keys. No I/O.
        .target(
            name: "HandoffWire",
            dependencies: [.product(name: "Crypto", package: "swift-crypto")],
            path: "Sources/Shared/Wire"
        ),
        // Runtime: what every process runs on — concurrency, deadlines and timers, logging, metrics, readiness.
        .target(
            name: "HandoffRuntime",
            dependencies: [
                "HandoffWire",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Sources/Shared/Runtime"
        ),
        // Store: Postgres — the schema, the queue, the stream log, keys and their limits, LISTEN.
        .target(
            name: "HandoffStore",
            dependencies: [
                "HandoffWire", "HandoffRuntime",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Sources/Shared/Store"
        ),
        // Process: start-up of a Handoff command — logging, migrations, the service group.
        .target(
            name: "HandoffProcess",
            dependencies: [
                "HandoffWire", "HandoffRuntime", "HandoffStore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Sources/Shared/Process"
        ),
        // HTTP: the Hummingbird application of the API server and the worker's operations port.
        .target(
            name: "HandoffHTTP",
            dependencies: [
                "HandoffWire", "HandoffRuntime", "HandoffStore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            path: "Sources/Shared/HTTP"
        ),
        .executableTarget(
            name: "APIServer",
            dependencies: [
                "HandoffWire", "HandoffRuntime", "HandoffStore", "HandoffProcess", "HandoffHTTP",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        .executableTarget(
            name: "SSEChat",
            dependencies: [
                "HandoffWire", "HandoffRuntime", "HandoffStore", "HandoffProcess",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        .executableTarget(
            name: "Worker",
            dependencies: [
                "HandoffWire", "HandoffRuntime", "HandoffStore", "HandoffProcess", "HandoffHTTP",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        .executableTarget(
            name: "Bench",
            dependencies: [
                "HandoffWire", "HandoffRuntime", "HandoffStore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(
            name: "SharedTests",
            dependencies: ["HandoffWire", "HandoffRuntime", "HandoffStore", "HandoffProcess", "HandoffHTTP"]),
        // The state machines apart from their I/O (the writer's schedule and buffers, the notifier's watches, a
        // stream's delivery): no Postgres, no sockets, no real time.
        .testTarget(name: "StateMachineTests", dependencies: ["Worker", "SSEChat", "HandoffWire", "HandoffStore"]),
        .testTarget(
            name: "UpstreamTests",
            dependencies: ["Worker", "HandoffWire", .product(name: "NIOCore", package: "swift-nio")]),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "HandoffWire", "HandoffRuntime", "HandoffStore", "HandoffProcess", "HandoffHTTP", "APIServer",
                "SSEChat",
                "Worker", "Bench",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
    ]
)

// libFuzzer targets for the parsers of hostile input (`make fuzz`, scripts/fuzz.sh). Declared only when
// HANDOFF_FUZZ=1: each calls into libFuzzer and so links only with `-sanitize=fuzzer`, never in a normal build.
// FuzzDriver hands each target's process to libFuzzer (`Extern` lets it declare the C entry point, `@_extern(c)`).
if Context.environment["HANDOFF_FUZZ"] == "1" {
    let fuzzTargets = [
        "FuzzChatCompletionRequest", "FuzzResponsesRequest", "FuzzStreamRequest", "FuzzServerSentEventDecoder",
        "FuzzStreamToken",
    ]
    package.targets.append(
        .target(
            name: "FuzzDriver", path: "Tests/Fuzz/FuzzDriver", swiftSettings: [.enableExperimentalFeature("Extern")]))
    package.targets += fuzzTargets.map {
        Target.executableTarget(name: $0, dependencies: ["FuzzDriver", "HandoffWire"], path: "Tests/Fuzz/\($0)")
    }
    package.products += fuzzTargets.map { Product.executable(name: $0, targets: [$0]) }
}
