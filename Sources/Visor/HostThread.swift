// A dedicated host thread, as vCPUs need: KVM wants one thread per vCPU, and a vCPU blocks in
// KVM_RUN for as long as the guest runs, which would starve an async executor.

import CVisorHost
#if canImport(Glibc)
import Glibc
#endif

/// A joinable pthread running one closure.
final class HostThread {
    private var thread: pthread_t

    /// Starts `body` on a new thread.
    init(_ body: @escaping @Sendable () -> Void) {
        final class Box { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
        let context = Unmanaged.passRetained(Box(body)).toOpaque()
        var t = pthread_t()
        // SAFETY: `context` is a retained Box released exactly once, by the new thread.
        let rc = pthread_create(&t, nil, { raw in
            let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
            // vCPU and timer threads sleep until guest timer deadlines: no slack on those waits.
            _ = cvisorhost_set_timer_slack(1)
            // Not the creator's name and host CPUs (a pinned vCPU thread starts the console writer).
            _ = cvisorhost_set_thread_name("visor")
            _ = cvisorhost_take_process_affinity()
            box.body()
            return nil
        }, context)
        precondition(rc == 0, "pthread_create failed: \(rc)")
        thread = t
    }

    /// Lets the thread run on by itself: its resources go back when it ends. (Never joined then.)
    func detach() {
        pthread_detach(thread)
    }

    /// Waits for the thread to finish.
    func join() {
        pthread_join(thread, nil)
    }
}
