import NIOCore
import NIOPosix

/// Where a Handoff process runs its Swift tasks.
package enum ConcurrencyPool {
    /// Runs every Swift task on NIO's event loops rather than Swift's default pool, so a task that waits on a
    /// socket (Postgres, a client, an upstream) resumes on the thread its I/O completed on, without a hop between
    /// pools. Perf on a worker streaming 1,000 demo answers at 5 tokens/s found most of its CPU in those hops
    /// (thread wake-ups and context switches). Call first thing in `main`, on the main thread, once: nothing
    /// in Handoff blocks a thread, so the event loops are never held up by a task.
    package static func useEventLoops() {
        NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
    }
}
