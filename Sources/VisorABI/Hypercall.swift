// Visor's paravirtual ABI, version 1.1: hypercall numbers and sub-operations, argument
// structures, the shared-info page and the event-channel model. The spec with the reasoning is
// docs/pv-abi.md; this file is its machine-readable half.
//
// Compiled into the host and, under Embedded Swift, into every guest: plain integers only
// (offsets and sizes instead of Swift structs, since the two sides must agree byte for byte).
// Numbers follow Xen's public headers (xen/include/public/xen.h, sched.h, vcpu.h,
// event_channel.h, version.h) wherever Xen has one; Visor-specific things are marked so.

/// Discovery and installation, after Xen's HVM CPUID leaves.
public enum PVDiscovery {
    /// CPUID leaf `0x4000_0002`: EAX = hypercall pages (1), EBX = the MSR whose write installs
    /// the hypercall page, ECX = the MSR whose write places the shared-info page (Visor's).
    public static let hypercallLeaf: UInt32 = 0x4000_0002
    /// MSR: write the guest-physical address of a 4 KiB-aligned page; Visor fills it with one
    /// 32-byte stub per hypercall number (Xen uses the same index for the same purpose).
    public static let hypercallPageMSR: UInt32 = 0x4000_0000
    /// MSR (Visor's): write `gpa | vector`: the 4 KiB-aligned guest-physical address of the
    /// shared-info page (bits 63-12) and the upcall vector (bits 7-0, 32…255; bits 11-8 must be
    /// 0). Visor zeroes the page and from then on keeps it current. Writing 0 turns events off.
    /// A write of anything else (page not RAM, vector below 32, bits 11-8 set) is refused.
    public static let sharedInfoMSR: UInt32 = 0x4000_0001
    /// The bits of a `sharedInfoMSR` value that hold the upcall vector.
    public static let sharedInfoVectorMask: UInt64 = 0xff
    /// The lowest upcall vector (0-31 are exceptions).
    public static let minimumUpcallVector: UInt64 = 32
    /// Bytes per stub in the hypercall page; stub `n` is at `page + 32 * n`.
    public static let stubSize = 32
    /// The I/O port the stubs read (Visor's trap on every engine; guests never hard-code it,
    /// they call the stub).
    public static let trapPort: UInt16 = 0xf8
}

/// Hypercall numbers (`__HYPERVISOR_*`). Arguments in rdi, rsi, rdx, r10, r8; the result in rax
/// (sign-extended 32-bit): 0 or a positive value on success, a negative `PVError` on failure.
/// Pointer arguments are guest-physical addresses (a Visor simplification: Xen's PV ABI passes
/// guest-virtual ones); a structure must not cross out of RAM.
public enum Hypercall {
    public static let setTimerOp: UInt32 = 15
    public static let xenVersion: UInt32 = 17
    public static let consoleIO: UInt32 = 18
    public static let vcpuOp: UInt32 = 24
    public static let schedOp: UInt32 = 29
    public static let eventChannelOp: UInt32 = 32
    /// Numbers the page has stubs for: 0 ..< count.
    public static let count: UInt32 = 64
}

/// Negative errno values (Xen's `XEN_E*`, which are Linux's).
public enum PVError {
    public static let permission: Int32 = -1      // EPERM
    public static let noEntry: Int32 = -2         // ENOENT
    public static let again: Int32 = -11          // EAGAIN
    public static let fault: Int32 = -14          // EFAULT
    public static let busy: Int32 = -16           // EBUSY
    public static let exists: Int32 = -17         // EEXIST
    public static let invalid: Int32 = -22        // EINVAL
    public static let noSpace: Int32 = -28        // ENOSPC
    public static let noSystem: Int32 = -38       // ENOSYS
}

/// `console_io(cmd, count, buffer)`.
public enum ConsoleIO {
    /// Writes `count` bytes from `buffer` to the domain's console. Returns 0.
    public static let write: UInt32 = 0
    /// Reads up to `count` bytes of console input into `buffer`. Returns the number read.
    public static let read: UInt32 = 1
    /// Largest `count` one call may pass (longer writes: -EINVAL; longer reads read at most this).
    public static let maximumCount: UInt64 = 4096
}

/// `sched_op(cmd, arg)`.
public enum SchedOp {
    /// Gives up the rest of the time slice. arg unused.
    public static let yield: UInt32 = 0
    /// Blocks until an event is pending for this vCPU (returns at once if one already is).
    /// Clears the vCPU's upcall mask first, so `mask; check; block` has no lost wake-up.
    public static let block: UInt32 = 1
    /// arg → `ShutdownArgument`: ends the domain.
    public static let shutdown: UInt32 = 2
    /// arg → `PollArgument`: blocks until one of the ports is pending or the timeout passes.
    public static let poll: UInt32 = 3
    /// (Visor, ABI 1.1) arg → `ShutdownRequestArgument`: takes the host's pending shutdown
    /// request (`VIRQ.shutdownRequest` announces one) and writes its reason; -ENOENT when none
    /// is pending. Xen passes the request through xenstore's `control/shutdown`, which Visor does
    /// not have. Visor's own sub-operations start at 32, past Xen's (0-7, and room to grow), so a
    /// Xen guest's `SCHEDOP_*` never means something else here.
    public static let shutdownRequest: UInt32 = 32
}

/// `struct sched_shutdown { uint32_t reason; }`.
public enum ShutdownArgument {
    public static let size = 4
    public static let poweroff: UInt32 = 0
    public static let reboot: UInt32 = 1
    public static let suspend: UInt32 = 2
    public static let crash: UInt32 = 3
    public static let watchdog: UInt32 = 4
}

/// (Visor) `struct sched_shutdown_request { uint32_t reason /* out */; }` for
/// `SchedOp.shutdownRequest`: the reason is a `ShutdownArgument` code, `poweroff` or `reboot`,
/// so the guest can pass it straight to `SchedOp.shutdown`.
public enum ShutdownRequestArgument {
    public static let size = 4
    public static let reasonOffset = 0
}

/// `struct sched_poll { uint64_t ports_gpa; uint32_t nr_ports; uint32_t pad; uint64_t timeout; }`
/// (Xen's has a guest handle; here a guest-physical address of `nr_ports` uint32 ports).
/// `timeout` is absolute system time in ns, 0 for none.
public enum PollArgument {
    public static let size = 24
    public static let portsOffset = 0
    public static let countOffset = 8
    public static let timeoutOffset = 16
    public static let maximumPorts: UInt32 = 128
}

/// `set_timer_op(timeout)`: a single-shot timer at absolute system time `timeout` (ns); when
/// it passes, VIRQ_TIMER fires on the calling vCPU. 0 cancels. A time in the past fires at once.
public enum SetTimerOp {}

/// `vcpu_op(cmd, vcpuid, arg)`.
public enum VCPUOp {
    /// arg → `VCPUContext`: sets the start state of an offline vCPU.
    public static let initialise: UInt32 = 0
    /// Starts an initialised, offline vCPU. -EINVAL if not initialised, 0 if already up.
    public static let up: UInt32 = 1
    /// Only the calling vCPU may take itself down: it stops until `up` again.
    public static let down: UInt32 = 2
    /// Returns 1 if the vCPU is up, 0 if not.
    public static let isUp: UInt32 = 3
    /// arg → `uint64_t period_ns` (≥ 1 ms): a periodic VIRQ_TIMER on that vCPU.
    public static let setPeriodicTimer: UInt32 = 6
    public static let stopPeriodicTimer: UInt32 = 7
    /// arg → `{ uint64_t timeout_abs_ns; uint32_t flags; uint32_t pad; }` (16 bytes).
    public static let setSingleshotTimer: UInt32 = 8
    public static let stopSingleshotTimer: UInt32 = 9
    /// `set_singleshot_timer` flag `VCPU_SSHOTTMR_future`: Xen fails with -ETIME when the
    /// timeout has passed; Visor accepts the flag and fires the timer at once instead.
    public static let futureOnlyFlag: UInt32 = 1
    public static let minimumPeriodNanoseconds: UInt64 = 1_000_000
}

/// Visor's `vcpu_guest_context` for `VCPUOp.initialise`: the vCPU starts in 64-bit mode with
/// these registers (CS/SS/DS flat from the given GDT). 80 bytes, all little-endian uint64.
public enum VCPUContext {
    public static let size = 80
    public static let ripOffset = 0
    public static let rspOffset = 8
    public static let rdiOffset = 16           // its first argument
    public static let cr3Offset = 24
    public static let gdtBaseOffset = 32
    public static let gdtLimitOffset = 40      // low 16 bits used
    public static let codeSelectorOffset = 48  // a 64-bit code segment in that GDT
    public static let dataSelectorOffset = 56  // a flat data segment in that GDT
    public static let cr4Offset = 64
    public static let eferOffset = 72
}

/// `event_channel_op(cmd, arg)`; every arg is a pointer to the structure named.
public enum EventChannelOp {
    /// `{ uint32_t virq; uint32_t vcpu; uint32_t port /* out */; }` (12 bytes).
    public static let bindVIRQ: UInt32 = 1
    /// `{ uint32_t port; }`.
    public static let close: UInt32 = 3
    /// `{ uint32_t port; }`: makes the other end pending: an IPI port on its bound vCPU, an
    /// unbound (loopback) port on the sending vCPU.
    public static let send: UInt32 = 4
    /// `{ uint32_t port; uint32_t status /* out */; uint32_t vcpu /* out */; }` (12 bytes).
    public static let status: UInt32 = 5
    /// `{ uint16_t dom; uint16_t remote_dom; uint32_t port /* out */; }` (8 bytes). Visor has
    /// no inter-domain channels yet: `remote_dom` must be DOMID_SELF (0x7ff0) or the caller.
    public static let allocUnbound: UInt32 = 6
    /// `{ uint32_t vcpu; uint32_t port /* out */; }` (8 bytes).
    public static let bindIPI: UInt32 = 7
    /// `{ uint32_t port; }`: clears the mask bit and re-raises the upcall if the port is pending.
    public static let unmask: UInt32 = 9

    public static let domainSelf: UInt16 = 0x7ff0
}

/// `EVTCHNSTAT_*` for `EventChannelOp.status`.
public enum EventChannelStatus {
    public static let closed: UInt32 = 0
    public static let unbound: UInt32 = 1
    public static let interdomain: UInt32 = 2
    public static let pirq: UInt32 = 3
    public static let virq: UInt32 = 4
    public static let ipi: UInt32 = 5
}

/// Virtual interrupts (`VIRQ_*`).
public enum VIRQ {
    /// Per vCPU: its single-shot and periodic timers.
    public static let timer: UInt32 = 0
    /// Global (bound on vCPU 0): console input arrived.
    public static let console: UInt32 = 2
    /// (Visor, ABI 1.1) Global (bound on vCPU 0): the host asks the guest to power off or reboot;
    /// `SchedOp.shutdownRequest` says which. Xen's VIRQs are 0-23 (`NR_VIRQS`, with 16-23 kept for
    /// each architecture) and its gaps (5, 14, 15) may be filled by a later Xen; Visor's own VIRQs
    /// start at 32, above Xen's whole range, so a guest written for Xen never binds one by
    /// mistake (on Xen, binding it fails with -EINVAL) and no Xen VIRQ can collide with it.
    public static let shutdownRequest: UInt32 = 32
}

/// `xen_version(cmd, arg)`.
public enum XenVersion {
    /// Returns `major << 16 | minor` of Visor's PV ABI.
    public static let version: UInt32 = 0
    public static let major: UInt32 = 1
    /// 1.1 added `VIRQ.shutdownRequest` and `SchedOp.shutdownRequest`.
    public static let minor: UInt32 = 1
}

/// The shared-info page (Xen's `struct shared_info`, x86-64 layout): 32 `vcpu_info` of 64 bytes,
/// then the pending and mask bitmaps of 4096 event channels.
public enum SharedInfo {
    public static let vcpuInfoOffset = 0
    public static let vcpuInfoSize = 64
    public static let maximumVCPUs = 32
    /// `unsigned long evtchn_pending[64]`: bit p of the bitmap = port p pending.
    public static let pendingOffset = 2048
    /// `unsigned long evtchn_mask[64]`: bit p set = port p masked.
    public static let maskOffset = 2560
    public static let bitmapBytes = 512
    /// Ports Visor gives out: 1 ..< maximumPorts (port 0 is never valid, as in Xen).
    public static let maximumPorts: UInt32 = 1024
}

/// One vCPU's `struct vcpu_info` inside the shared-info page.
public enum VCPUInfo {
    /// uint8: set by Visor when an unmasked port of this vCPU becomes pending; the guest clears it.
    public static let upcallPendingOffset = 0
    /// uint8: while set, Visor does not inject the upcall vector (the guest's "interrupts off").
    public static let upcallMaskOffset = 1
    /// uint64: bit w set = word w of `evtchn_pending` may have pending ports for this vCPU.
    public static let pendingSelectorOffset = 8
    /// `struct vcpu_time_info` (32 bytes), Xen's pvclock record:
    /// version u32 (odd while Visor updates it), pad u32, tsc_timestamp u64, system_time u64
    /// (ns), tsc_to_system_mul u32, tsc_shift i8, flags u8, pad[2].
    /// system time now = system_time + ((tsc - tsc_timestamp) << tsc_shift (or >> -shift)) * mul >> 32.
    public static let timeOffset = 32
    public static let timeVersionOffset = 32
    public static let timeTSCTimestampOffset = 40
    public static let timeSystemTimeOffset = 48
    public static let timeMultiplierOffset = 56
    public static let timeShiftOffset = 60
    public static let timeFlagsOffset = 61
}

/// Reading the pvclock record (`VCPUInfo.time*`): how guests and Visor turn a TSC delta into
/// nanoseconds, exactly as Xen's and Linux's `pvclock_scale_delta`.
public enum PVClock {
    /// `flags` bit: the TSC is synchronised across vCPUs (`PVCLOCK_TSC_STABLE_BIT`).
    public static let tscStableFlag: UInt8 = 1

    /// `((delta << shift) or (delta >> -shift)) * multiplier >> 32`, the product taken at 128 bits.
    @inline(__always)
    public static func nanoseconds(tscDelta: UInt64, multiplier: UInt32, shift: Int8) -> UInt64 {
        var delta = tscDelta
        if shift < 0 {
            delta = -Int(shift) >= 64 ? 0 : delta >> UInt64(-Int(shift))
        } else {
            delta = Int(shift) >= 64 ? 0 : delta << UInt64(shift)
        }
        let product = delta.multipliedFullWidth(by: UInt64(multiplier))
        return product.high << 32 | product.low >> 32
    }
}
