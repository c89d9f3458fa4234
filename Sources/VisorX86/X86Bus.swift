// The one door between the software CPU and the rest of the machine. The interpreter, the MMU
// and exception delivery reach RAM, ports, MMIO, CPUID, the TSC and platform MSRs only through
// this protocol, so the same code runs in the `interp` engine, in unit tests and under a fuzzer.

import VisorCore

/// What the software CPU needs from the machine around it: its bus. Named for the CPU's side of
/// things, as a processor reaches memory and I/O over its bus; the few questions a real
/// processor answers itself but Visor's must ask outside (CPUID, the TSC, MSRs it does not
/// implement) travel the same way. Not a "platform": in Visor that is the domain's devices
/// (`Visor.DevicePlatform`), which the `interp` engine's bus reaches through exits.
public protocol X86Bus: AnyObject {
    /// Guest-physical RAM. Addresses outside it are MMIO (`mmioRead` / `mmioWrite`).
    var memory: GuestMemory { get }

    /// A port read. Throws `X86Stop.needsHypervisor(.portRead(...))` when the value must come
    /// from Visor: the instruction is abandoned and executed again once the value is known.
    func portRead(port: UInt16, size: UInt8) throws(X86Stop) -> UInt32
    /// A port write. Completes at once; the bus may record it as an exit to report after
    /// the instruction retires (`pendingExit`).
    func portWrite(port: UInt16, size: UInt8, value: UInt32)
    /// An MMIO read at a physical address that is not RAM; same retry rule as `portRead`.
    func mmioRead(address: UInt64, size: UInt8) throws(X86Stop) -> UInt64
    /// An MMIO write; same recording rule as `portWrite`.
    func mmioWrite(address: UInt64, size: UInt8, value: UInt64)

    /// True when an exit was recorded and the CPU should stop after the current instruction
    /// (or, for REP string instructions, after the current iteration).
    var hasPendingExit: Bool { get }

    /// CPUID for `function`/`index` (the same table the kvm engine installs).
    func cpuid(function: UInt32, index: UInt32) -> CPUIDEntry
    /// The time-stamp counter now.
    func readTimeStampCounter() -> UInt64
    /// An MSR the CPU does not implement itself (APIC base, MISC_ENABLE...); nil raises #GP(0).
    /// Throws `X86Stop.needsHypervisor(.msrRead(...))` when Visor must answer (retried as for ports).
    func readMSR(_ index: UInt32) throws(X86Stop) -> UInt64?
    /// Writes such an MSR; false raises #GP(0).
    func writeMSR(_ index: UInt32, value: UInt64) -> Bool

    /// An instruction is about to be attempted (again). Default: nothing.
    func beginInstruction()
    /// The port/MMIO reads made since `beginInstruction` took effect. Default: nothing.
    func commitAccesses()
}

/// Instruction-boundary notifications for buses that answer reads by retrying the
/// instruction (the `interp` engine): the step loop calls `beginInstruction()` before each
/// attempt, and `commitAccesses()` when the reads made so far have taken effect (the instruction
/// retired, or one iteration of a REP string instruction completed). Reads answered before the
/// commit are replayed, in order, to a retried attempt. The defaults do nothing.
extension X86Bus {
    public func beginInstruction() {}
    public func commitAccesses() {}
}
