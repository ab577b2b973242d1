import HandoffRuntime
import Logging
import PostgresNIO
import ServiceLifecycle

/// Checks every second that Postgres answers `SELECT 1` within `deadline`, for `Readiness`. Put last in the
/// process's services, so a graceful shutdown reaches it first and the process reports draining while the others
/// finish their work.
package struct ReadinessProbe: Service {
    let client: PostgresClient
    let readiness: Readiness
    let deadline: Duration
    let logger: Logger

    package init(client: PostgresClient, readiness: Readiness, deadline: Duration, logger: Logger) {
        self.client = client
        self.readiness = readiness
        self.deadline = deadline
        self.logger = logger
    }

    package func run() async throws {
        await check()
        await repeatEvery(.seconds(1)) { await check() }
        readiness.drain()
    }

    private func check() async {
        let before = readiness.problem
        do {
            try await client.perform("SELECT 1", timeout: deadline, logger: logger)
            readiness.databaseChecked(answered: true)
        } catch {
            readiness.databaseChecked(answered: false)
            if before != .database {
                logger.warning(
                    "not ready: Postgres did not answer", metadata: ["error": "\(String(reflecting: error))"])
            }
        }
        if before == .database, readiness.problem != .database {
            logger.notice("ready again: Postgres answers")
        }
    }
}
