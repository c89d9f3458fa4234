// Finding kvm vCPUs the host kernel keeps inside KVM_RUN without ever exiting.
//
// On this project's host (KVM's PVM backend) some guest instructions never complete and never
// exit: VMCALL and VMMCALL at CPL0 (hardware without VMX/SVM operation raises #UD; the host
// spins instead), RDPMC of a counter that does not exist. The vCPU thread then sits in KVM_RUN
// for ever and the guest hangs with nothing said. Two pieces find it:
//
// - this watchdog, one thread for the process, kicks (with the same signal as a preemption) any
//   vCPU that has been inside one KVM_RUN call for longer than `kickAfter`, so its thread gets
//   to look at where the guest is;
// - `KVMVirtualCPU.checkForStall`, on every return from KVM_RUN by a signal, counts the time
//   spent in KVM_RUN since the guest last exited on its own. Once that is over `stallAfter` and
//   two such returns in a row find RIP at the same instruction, the vCPU is stalled: an
//   instruction the host is known to spin on is carried out by Visor's software CPU
//   (`KVMInstructionFallback`, which raises the #UD or #GP hardware would), anything else is
//   reported once as `Exit.stalled` with RIP and the instruction's bytes.
//
// A guest that really loops on one instruction with interrupts off (`jmp .`) is reported too,
// which is true: it makes no progress. It runs on; the report is only words.

import Foundation
import Synchronization

/// The process's one watchdog thread over all kvm vCPUs.
final class KVMStallWatchdog: Sendable {
    /// A vCPU inside one KVM_RUN for longer than this is kicked so its thread can look.
    static let kickAfter: UInt64 = 250_000_000
    /// Time in KVM_RUN without a guest exit after which an unchanged RIP means stalled.
    static let stallAfter: UInt64 = 1_000_000_000

    static let shared = KVMStallWatchdog()

    private struct Watched {
        weak var vcpu: KVMVirtualCPU?
    }
    private let watched = Mutex<[Watched]>([])
    private let started = Atomic<Bool>(false)

    /// Starts watching `vcpu` (until it is freed), starting the thread on first use.
    func watch(_ vcpu: KVMVirtualCPU) {
        watched.withLock { list in
            list.removeAll { $0.vcpu == nil }
            list.append(Watched(vcpu: vcpu))
        }
        if !started.exchange(true, ordering: .acquiringAndReleasing) {
            let thread = Thread { [self] in loop() }
            thread.name = "visor-kvm-watchdog"
            thread.start()
        }
    }

    private func loop() {
        while true {
            Thread.sleep(forTimeInterval: Double(Self.kickAfter) / 2e9)
            let now = KVMStallWatchdog.monotonicNanoseconds()
            let vcpus = watched.withLock { list in list.compactMap(\.vcpu) }
            for vcpu in vcpus {
                let entered = vcpu.runEnteredAt.load(ordering: .acquiring)
                if entered != 0, now &- entered > Self.kickAfter { vcpu.kickForWatchdog() }
            }
        }
    }

    static func monotonicNanoseconds() -> UInt64 {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return UInt64(t.tv_sec) &* 1_000_000_000 &+ UInt64(t.tv_nsec)
    }
}
