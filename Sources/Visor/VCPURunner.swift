// One vCPU's thread-side state: what its thread in `Domain` is doing (`Activity`), what is
// pending for it (INIT, SIPI, a PV start state, a pause), its timer deadline and its statistics.

import VisorCore
import VisorSched

/// One vCPU's thread-side state. Fields other than `vcpu` and `statistics` are guarded by the
/// platform lock; `statistics` belongs to the vCPU's thread.
final class VCPURunner: @unchecked Sendable {
    enum Activity: Equatable {
        /// Runs guest code.
        case running
        /// HLT with interrupts enabled: sleeps until an interrupt is pending.
        case halted
        /// HLT with interrupts disabled: only INIT can change that.
        case haltedForever
        /// An application processor after reset or INIT, before its start-up IPI.
        case waitingForStartup
    }

    let vcpu: any VirtualCPU
    var activity = Activity.waitingForStartup
    var pendingInitialization = false
    var pendingStartup: UInt8?
    /// A 64-bit start state from `vcpu_op initialise` + `up`.
    var pendingStartState: X86State?
    /// `vcpu_op up` for a vCPU that took itself down: continue where it stopped.
    var pendingResume = false
    /// True from just before the guest is entered until its exit has been taken in.
    var inGuest = false
    /// Parked by `Domain.pause`.
    var parked = false
    /// The domain-clock time this running vCPU must be kicked at for its timers.
    var timerDeadline: UInt64?
    /// When its timers next need advancing, as of `timerGeneration`.
    var timerEvent: UInt64?
    /// `DevicePlatform.timerGeneration` when `timerEvent` was computed (`.max`: never).
    var timerGeneration: UInt64 = .max
    let wakeup = HostCondition()
    var statistics = ExitStatistics()
    /// The registers where it last parked for good (HLT with interrupts disabled, INIT, vcpu_op
    /// down), for the `halted` outcome; empty while it runs or before it first started.
    var lastRegisters = ""
    private var windowRequested = false
    /// Its place in the CPU pool, once the domain has started.
    var scheduled: ScheduledVCPU?

    init(vcpu: any VirtualCPU) { self.vcpu = vcpu }

    func setWindowRequest(_ wanted: Bool) {
        guard wanted != windowRequested else { return }
        windowRequested = wanted
        vcpu.requestInterruptWindow(wanted)
    }

    func registerDump() -> String {
        (try? vcpu.state().dump) ?? "(registers unavailable)"
    }
}
