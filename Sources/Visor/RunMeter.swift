// What a vCPU is charged for holding a pCPU: the CPU time its host thread got, not the wall time.
//
// A pCPU here is a right to run, and the vCPU thread holding it still waits for a host CPU like
// any other thread: on a host that runs other work (another process, a build, a benchmark) a
// vCPU can hold its pCPU for 30 ms and run for 10. Xen charges a vCPU only for time it ran on a
// real CPU; so does the pool: at every point where the policy may burn credit or budget it
// reads the thread's CPU clock, adds what the thread ran to the vCPU's account and refunds the
// rest (`Scheduler.refund`), as steal time.

import Foundation

/// The CPU-time clock of one host thread (`pthread_getcpuclockid`), readable from any thread of
/// the process while that thread lives.
struct ThreadCPUClock {
    private let id: clockid_t

    /// The calling thread's clock, or nil when the host has none for it.
    static func current() -> ThreadCPUClock? {
        var id = clockid_t()
        guard pthread_getcpuclockid(pthread_self(), &id) == 0 else { return nil }
        return ThreadCPUClock(id: id)
    }

    /// CPU time the thread has run (user and system, guest time included: KVM_RUN counts),
    /// nanoseconds; nil when it cannot be read (the thread has ended: EINVAL). A system call
    /// when read from another thread (the vDSO serves only the caller's own clocks).
    func nanoseconds() -> UInt64? {
        var ts = timespec()
        guard clock_gettime(id, &ts) == 0, ts.tv_sec >= 0, ts.tv_nsec >= 0 else { return nil }
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}

/// Splits the wall time since the last reading into the CPU time a vCPU's thread ran and the
/// time it was kept off the host's CPUs. Pure arithmetic over the readings it is given, so the
/// rule is tested without threads (`RunMeterTests`).
struct RunMeter: Equatable {
    /// The last reading: the pool's clock and the thread's CPU clock (nil: not readable then).
    private(set) var wall: UInt64 = 0
    private(set) var cpu: UInt64?

    /// What one step measured.
    struct Step: Equatable {
        /// CPU time the thread ran: charged to the vCPU.
        var ran: UInt64
        /// Wall time it was not running: refunded to the policy.
        var stolen: UInt64
    }

    /// Starts measuring from these readings (a grant, or the decision that led to it).
    mutating func start(wall: UInt64, cpu: UInt64?) {
        self.wall = wall
        self.cpu = cpu
    }

    /// The step from the last reading to these. `running`: the thread held the pCPU all along
    /// (false: the policy still counts the vCPU as running while its thread has let go, so
    /// nothing it did in that time is its own). A clock not readable at either end falls back
    /// to wall time: all of it ran. CPU time is never counted beyond the wall time it fits in
    /// (the rest waits for the next step), nor does a clock that went backwards count as negative.
    mutating func step(wall now: UInt64, cpu cpuNow: UInt64?, running: Bool = true) -> Step {
        let elapsed = now >= wall ? now - wall : 0
        guard running, let before = cpu, let after = cpuNow else {
            start(wall: max(now, wall), cpu: cpuNow)
            return running ? Step(ran: elapsed, stolen: 0) : Step(ran: 0, stolen: elapsed)
        }
        // The two clocks are read one after the other, so a step can see a little more CPU
        // time than wall time: the excess is left on the CPU clock for the next step.
        let ran = min(after >= before ? after - before : 0, elapsed)
        start(wall: max(now, wall), cpu: after >= before ? before + ran : after)
        return Step(ran: ran, stolen: elapsed - ran)
    }
}
