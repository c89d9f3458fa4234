// The protocols every CPU-virtualization engine implements: kvm, interp and bt.

import VisorABI
#if canImport(Glibc)
import Glibc
#endif

/// A way of running guest code: hardware-assisted (`kvm`), emulation (`interp`), translation (`bt`).
public protocol Engine: Sendable {
    /// The name users pick it by (`--engine NAME`).
    var name: String { get }
    /// Creates a machine whose RAM is `memory`.
    func makeMachine(memory: GuestMemory, options: MachineOptions) throws -> any VirtualMachine
    /// How fast the guest's time-stamp counter ticks, in Hz: the host's TSC for `kvm`, the
    /// virtual clock's rate for software engines. Benchmarks turn guest TSC deltas into time with it.
    func timeStampCounterFrequency() -> Double
}

/// Settings that shape a machine as the guest sees it.
public struct MachineOptions: Sendable {
    /// Number of vCPUs the machine will have.
    public var vcpuCount: Int
    /// The domain's virtual clock. Engines that make up their own time-stamp counter (the
    /// software ones) count it from this clock, so the TSC and the platform's timers agree.
    public var clock: any VirtualClock
    /// The local APIC timer's input clock in Hz, for the timing CPUID leaf.
    public var apicTimerFrequency: UInt64
    public init(vcpuCount: Int = 1, clock: any VirtualClock = MonotonicClock(),
                apicTimerFrequency: UInt64 = 1_000_000_000) {
        self.vcpuCount = vcpuCount
        self.clock = clock
        self.apicTimerFrequency = apicTimerFrequency
    }
}

/// One guest machine on an engine: its RAM and its vCPUs.
public protocol VirtualMachine: AnyObject, Sendable {
    var memory: GuestMemory { get }
    /// Creates vCPU number `index` (0 is the bootstrap processor).
    func makeVCPU(index: Int) throws -> any VirtualCPU
}

/// One virtual CPU. `run`, `completeRead`, `state` and `setState` must be called from the single
/// thread that drives this vCPU; `requestStop` may be called from any thread.
public protocol VirtualCPU: AnyObject, Sendable {
    var index: Int { get }
    /// Runs guest code until the guest needs the hypervisor, and says why.
    func run() throws -> Exit
    /// Supplies the value of the port or MMIO read reported by the last exit
    /// (its low `size` bytes are used).
    func completeRead(_ value: UInt64)
    /// The vCPU's architectural registers.
    func state() throws -> X86State
    /// Replaces the vCPU's architectural registers.
    func setState(_ state: X86State) throws
    /// Makes a current or the next `run()` return `.stopped` soon. Thread-safe.
    func requestStop()

    // Interrupts. Visor keeps the interrupt controllers itself (they are shared device models,
    // not part of any engine); an engine only offers the processor's INTR pin. Between runs the
    // driving thread asks whether the guest can take an interrupt, injects one when it can, and
    // otherwise asks to be told when it can.

    /// Whether the guest can take a maskable external interrupt before its next instruction:
    /// RFLAGS.IF is set, no STI or MOV SS interrupt shadow is in effect, and no injected
    /// interrupt is still waiting for delivery. Driving thread, between runs.
    var interruptWindowOpen: Bool { get }
    /// Delivers external interrupt `vector` through the guest's IDT before its next instruction
    /// (what the INTA cycle does on hardware); a halted vCPU wakes for it. Call only while
    /// `interruptWindowOpen`; otherwise the engine throws and nothing is queued.
    func injectInterrupt(vector: UInt8) throws
    /// While `wanted`, `run()` returns `.interruptWindow` as soon as the guest can take an
    /// interrupt, so one that arrived while it could not is not left waiting.
    func requestInterruptWindow(_ wanted: Bool)
    /// Queues a non-maskable interrupt (the processor's NMI pin; vector 2). The engine delivers
    /// it before the next instruction at which NMIs are not blocked, whatever RFLAGS.IF says,
    /// and a halted vCPU wakes for it. From an NMI's delivery until the next IRET NMIs are
    /// blocked: one more is held pending, and any further ones collapse into it (SDM Vol. 3A
    /// 6.7.1). Driving thread, between runs.
    func injectNMI() throws
    /// Whether the guest has its local APIC enabled in IA32_APIC_BASE (bit 11). With it clear
    /// the processor has no APIC: its register page does not answer and CPUID.1:EDX.APIC reads
    /// 0 (the engine's part). Driving thread, between runs.
    func localAPICEnabled() throws -> Bool
    /// The guest's time-stamp counter now (what RDTSC would return), for turning an
    /// IA32_TSC_DEADLINE value into a time on the domain's clock.
    func timeStampCounter() throws -> UInt64
}

/// Raised by `VirtualCPU.injectInterrupt` when the guest cannot take an interrupt now.
public struct InterruptWindowClosed: Error, CustomStringConvertible {
    public let vector: UInt8
    public init(vector: UInt8) { self.vector = vector }
    public var description: String { "interrupt vector \(vector) was injected while the guest could not take it" }
}

/// A domain's sense of time, in nanoseconds. Device timers, software TSCs and the scheduler all
/// read the same clock, so what the guest measures with one agrees with the others.
public protocol VirtualClock: AnyObject, Sendable {
    /// Nanoseconds since the clock started. Never decreases.
    var nanoseconds: UInt64 { get }
}

/// CLOCK_MONOTONIC, counted from when this object was made.
public final class MonotonicClock: VirtualClock {
    private let origin: UInt64
    public init() { origin = Self.hostNanoseconds() }
    public var nanoseconds: UInt64 { Self.hostNanoseconds() &- origin }

    /// The host's CLOCK_MONOTONIC in nanoseconds (a vDSO call, a few nanoseconds).
    @inline(__always)
    public static func hostNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}

/// Model-specific registers that are platform state, not processor state: engines hand guest
/// accesses to these to Visor as `.msrRead`/`.msrWrite` exits.
public enum PlatformMSR {
    /// IA32_TSC_DEADLINE: the local APIC timer's deadline in TSC-deadline mode.
    public static let tscDeadline: UInt32 = 0x6e0
    /// Visor's PV ABI: installs the hypercall page (`PVDiscovery.hypercallPageMSR`).
    public static let hypercallPage: UInt32 = PVDiscovery.hypercallPageMSR
    /// Visor's PV ABI: places the shared-info page and the upcall vector.
    public static let sharedInfo: UInt32 = PVDiscovery.sharedInfoMSR
    /// All of them.
    public static let all: [UInt32] = [tscDeadline, hypercallPage, sharedInfo]
}
