import ArgumentParser
import Foundation
import HandoffStore
import HandoffWire

/// `handoff-api tasks list|show|cancel`: the task table as an operator sees it — status, owner, worker, usage,
/// error, how far its stream got — never the request's content, which is the user's.
struct TasksCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tasks", abstract: "List, show and cancel tasks.",
        subcommands: [List.self, Show.self, Cancel.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The newest tasks, newest first.")
        @Option(help: "Only tasks in this status: queued, running, succeeded, failed or cancelled.") var status: String?
        @Option(help: "How many.") var limit = 20
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let status = try status.map(TasksCommand.status)
            let limit = limit
            let tasks = try await AdminDatabase.with { client, timeout, logger in
                try await TaskQueue(client: client, timeout: timeout, logger: logger).tasks(
                    status: status, limit: limit)
            }
            if json { return print(JSONValue.array(tasks.map(TasksCommand.json)).text) }
            for task in tasks { print(TasksCommand.line(task)) }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "One task, by its id (a task id, chatcmpl-… or resp_…).")
        @Argument(help: "The task's id.") var id: String
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let task = try TasksCommand.task(id)
            let found = try await AdminDatabase.with { client, timeout, logger in
                try await TaskQueue(client: client, timeout: timeout, logger: logger).task(task)
            }
            guard let found else { throw ValidationError("no task has the id '\(id)'") }
            if json { return print(TasksCommand.json(found).text) }
            print(TasksCommand.line(found))
            if let usage = TasksCommand.usage(found) { print("usage: \(usage.json.text)") }
            if let error = TasksCommand.error(found) { print("error: \(error.message) (\(error.code ?? error.type))") }
        }
    }

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Cancel a queued or running task: its worker stops within a minibatch window and ends the stream as cancelled."
        )
        @Argument(help: "The task's id.") var id: String

        func run() async throws {
            let task = try TasksCommand.task(id)
            let status = try await AdminDatabase.with { client, timeout, logger in
                try await TaskQueue(client: client, timeout: timeout, logger: logger).requestCancel(task)
            }
            guard let status else { throw ValidationError("no task has the id '\(id)'") }
            print(
                status.isTerminal
                    ? "already \(status.rawValue): nothing to cancel" : "cancelling (was \(status.rawValue))")
        }
    }

    static func status(_ text: String) throws -> TaskStatus {
        guard let status = TaskStatus(rawValue: text) else {
            throw ValidationError(
                "'\(text)' is not a status: use \(TaskStatus.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return status
    }

    static func task(_ id: String) throws -> UUID {
        guard let task = ClaimedTask.taskID(fromCompletionID: id) ?? ResponseID.task(from: id) else {
            throw ValidationError("'\(id)' is not a task id")
        }
        return task
    }

    static func usage(_ task: TaskQueue.TaskSummary) -> Usage? {
        task.usage.flatMap { try? JSONDecoder().decode(Usage.self, from: Data($0.utf8)) }
    }

    static func error(_ task: TaskQueue.TaskSummary) -> OpenAIError? {
        task.error.flatMap { try? JSONDecoder().decode(OpenAIError.self, from: Data($0.utf8)) }
    }

    static func line(_ task: TaskQueue.TaskSummary) -> String {
        [
            task.id.uuidString.lowercased(),
            task.status.rawValue + (task.cancelRequested && !task.status.isTerminal ? " (cancelling)" : ""),
            task.api, task.model, "key \(task.keyName ?? "-")", "created \(AdminDatabase.iso(task.createdAt))",
            "worker \(task.workerID ?? "-")", "attempts \(task.attempts)", "events \(task.head)",
            "tokens \(usage(task).map { String($0.totalTokens) } ?? "-")",
        ].joined(separator: "  ")
    }

    static func json(_ task: TaskQueue.TaskSummary) -> JSONValue {
        .object([
            ("id", .string(task.id.uuidString.lowercased())), ("status", .string(task.status.rawValue)),
            ("api", .string(task.api)),
            ("model", .string(task.model)), ("key", .optional(task.keyName)),
            ("created_at", AdminDatabase.json(task.createdAt)),
            ("started_at", AdminDatabase.json(task.startedAt)), ("finished_at", AdminDatabase.json(task.finishedAt)),
            ("worker_id", .optional(task.workerID)), ("attempts", .int(Int64(task.attempts))),
            ("cancel_requested", .bool(task.cancelRequested)), ("events", .int(Int64(task.head))),
            ("usage", usage(task)?.json ?? .null), ("error", error(task).map { $0.json } ?? .null),
        ])
    }
}

/// `handoff-api queue stats`: how deep the queue is, how old its oldest task, who runs what, and how tasks ended lately.
struct QueueCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "queue", abstract: "The queue at a glance.", subcommands: [Stats.self])

    struct Stats: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Depth, age of the oldest queued task, running tasks by worker, expired leases, recent outcomes.")
        @Option(help: "How far back 'recent' outcomes go, in seconds.") var window = 300
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let window = Duration.seconds(window)
            let stats = try await AdminDatabase.with { client, timeout, logger in
                try await TaskQueue(client: client, timeout: timeout, logger: logger).stats(window: window)
            }
            let running = stats.runningByWorker.map { ($0.worker, JSONValue.int(Int64($0.tasks))) }
            let outcomes = stats.recentOutcomes.map { ($0.status, JSONValue.int(Int64($0.tasks))) }
            if json {
                return print(
                    JSONValue.object([
                        ("queued", .int(Int64(stats.queued))),
                        ("oldest_queued_seconds", .number(stats.oldestQueuedSeconds)),
                        ("running_by_worker", .object(running)), ("expired_leases", .int(Int64(stats.expiredLeases))),
                        ("recent_outcomes", .object(outcomes)), ("window_seconds", .int(window.components.seconds)),
                    ]).text)
            }
            print("queued \(stats.queued), oldest \(String(format: "%.1f", stats.oldestQueuedSeconds)) s")
            print(
                "running \(stats.runningByWorker.map { "\($0.worker): \($0.tasks)" }.joined(separator: ", ").nonEmpty ?? "none")"
                    + ", expired leases \(stats.expiredLeases)")
            print(
                "ended in the last \(window.components.seconds) s: "
                    + (stats.recentOutcomes.map { "\($0.status) \($0.tasks)" }.joined(separator: ", ").nonEmpty
                        ?? "none"))
        }
    }
}

extension String {
    fileprivate var nonEmpty: String? { isEmpty ? nil : self }
}
