// The `interp` engine: guest code runs on the software x86-64 CPU (`X86Machine`), and leaves it
// with the same `Exit` values the `kvm` engine produces, so the rest of Visor cannot tell them
// apart.
//
// Exits. A port or MMIO read stops the instruction (`X86Stop.needsHypervisor`) and `run()` returns
// `.portRead`/`.mmioRead`; `completeRead` stores the answer and the next `run()` executes the
// instruction again, which now finds the value (answers are replayed in order, so an instruction
// with several reads, or a split MMIO access, gets each). Writes complete at once and are
// returned as exits one at a time after the instruction (or the REP iteration) retires. HLT
// returns `.halt` with RIP after the HLT; the next `run()` continues from there, as on `kvm`
// without an in-kernel irqchip. A triple fault returns `.shutdown`, then and on every later run.
// RDMSR and WRMSR of `PlatformMSR.all` (IA32_TSC_DEADLINE) are `.msrRead` (answered through
// `completeRead`, replayed like a port read) and `.msrWrite` (reported after the WRMSR retires).
//
// Interrupts. Visor's interrupt controllers inject through `injectInterrupt`: the vector is
// delivered through the IVT or IDT before the next instruction (waking a CPU halted by HLT, so it
// returns past the HLT). With `requestInterruptWindow(true)`, `run()` returns `.interruptWindow`
// before the first instruction at which IF = 1, no STI / MOV SS shadow is in effect and nothing is
// pending — at once if that is already so — and keeps doing so until the request is withdrawn.
//
// CPUID is `CPUIDTable(hostSupported: InterpEngine.cpuidLeaves, timeStampCounterFrequency: 1 GHz,
// apicTimerFrequency: options.apicTimerFrequency)`: a minimal GenuineIntel CPU (family 6, model
// 0x2a) with what the software CPU implements — leaf 1 EDX: FPU, PSE, TSC, MSR, PAE, MCE, CX8,
// MTRR, PGE, MCA (no banks), CMOV, PAT, CLFSH, MMX, FXSR, SSE, SSE2, and APIC (added by the
// table: Visor's local APIC lives in user space at 0xfee0_0000); leaf 1 ECX: SSE3, CX16, POPCNT, TSC-deadline and the
// hypervisor bit (the last two added by the table), no x2APIC; leaf 1 EBX[31:24] the vCPU index
// as initial APIC ID; leaf 7 EBX: TSC_ADJUST, CLFLUSHOPT; leaf 7 EDX: ARCH_CAPABILITIES, whose MSR
// (0x10a, read-only) says the CPU is not vulnerable to the speculative-execution attacks it names
// (Meltdown's rogue data cache load, MDS, TAA, SSB and the rest): true of a software CPU, which does
// not speculate, and it spares a Linux guest page-table isolation (two CR3 writes, each flushing
// every translation, per system call and interrupt); 0x8000_0001 ECX: LAHF/SAHF, LZCNT, PREFETCHW;
// 0x8000_0001 EDX: SYSCALL, NX, RDTSCP, LM; 0x8000_0008: 40 physical and 48 linear address bits — plus
// Visor's 0x4000_0000 leaves with the timing leaf, exactly as on `kvm`. IA32_APIC_BASE (0x1b)
// is answered here: 0xfee0_0000, enabled, BSP on vCPU 0; a guest that clears its enable bit
// sees CPUID.1:EDX.APIC clear until it sets it again (`localAPICEnabled()` tells the runtime,
// which stops answering at the APIC's page).
//
// The highest basic leaf is 0x16 so that the TSC's rate is in Intel's own leaves, where an OS
// that knows nothing of Visor looks: leaf 0x15 says the TSC runs at the core crystal's rate
// (ratio 1/1) of 1 GHz, leaf 0x16 that the processor's base and maximum frequencies are 1000 MHz.
// Linux takes its TSC frequency from leaf 0x15 as known (no calibration against the PIT, which
// a software CPU on a busy host often fails: the TSC is then marked unstable). Leaves 2-6 and
// 8-0x14 read as zeros: no cache descriptors, no topology leaf, no performance counters (leaf
// 0xA version 0, so RDPMC raises #GP(0) for every counter).
//
// The time-stamp counter is the domain's virtual clock (`MachineOptions.clock`) in nanoseconds,
// so it runs at 1 GHz, plus the guest's offset (WRMSR to IA32_TIME_STAMP_COUNTER or
// IA32_TSC_ADJUST moves it, each keeping the other in step as the SDM says), and
// agrees with the platform's timers; `timeStampCounter()` is exactly what RDTSC reads.
//
// SMP. The vCPUs of one machine run on their own threads over the same RAM and share an
// `X86SharedState`: LOCK-prefixed instructions and XCHG are atomic across them, and code one
// vCPU writes is seen by the others by their next serializing instruction (`SMP.swift`).

import VisorCore
import VisorX86Decode

/// The software-emulation engine.
public struct InterpEngine: Engine {
    public var name: String { "interp" }
    /// The guest TSC rate: one tick per nanosecond.
    public static let timeStampCounterHz: Double = 1_000_000_000
    let decode: X86DecodeFunction

    /// An engine using `Decoder.decode`.
    public init() { decode = { Decoder.decode($0, mode: $1) } }
    /// An engine using another decoder (tests, tools).
    public init(decode: @escaping X86DecodeFunction) { self.decode = decode }

    public func makeMachine(memory: GuestMemory, options: MachineOptions) throws -> any VirtualMachine {
        InterpVirtualMachine(memory: memory, options: options, decode: decode, makeExecutor: nil)
    }

    public func timeStampCounterFrequency() -> Double { Self.timeStampCounterHz }

    /// The "host supported" CPUID leaves of the software CPU (before Visor's leaves are added).
    public static let cpuidLeaves: [CPUIDEntry] = {
        func fourCC(_ s: String) -> UInt32 {
            var v: UInt32 = 0
            for (i, b) in s.utf8.prefix(4).enumerated() { v |= UInt32(b) << (8 * UInt32(i)) }
            return v
        }
        // Only what the interpreter executes in full: a guest that sees a bit may use any
        // instruction it covers. Tests/VisorIntegrationTests/CPUIDFeatureTests runs an instruction
        // for every bit set here. FPU, PSE, TSC, MSR, PAE, MCE, CX8, MTRR, PGE, MCA, CMOV, PAT,
        // CLFSH, MMX, FXSR, SSE, SSE2: the x87, MMX, SSE and SSE2 are complete and
        // differential-tested (FPDifferentialTests), the MTRRs and PAT are held with their #GP
        // checks (memory types mean nothing to a software CPU), and the machine-check
        // architecture has no banks (a software CPU has no hardware errors to report; kernels
        // read IA32_MCG_CAP and IA32_MCG_STATUS when MCA is offered).
        let leaf1EDX: UInt32 = 1 << 0 | 1 << 3 | 1 << 4 | 1 << 5 | 1 << 6 | 1 << 7 | 1 << 8 | 1 << 12 | 1 << 13
            | 1 << 14 | 1 << 15 | 1 << 16 | 1 << 19 | 1 << 23 | 1 << 24 | 1 << 25 | 1 << 26
        // SSE3 (complete, differential-tested; MONITOR/MWAIT are not offered), CX16, POPCNT.
        let leaf1ECX: UInt32 = 1 << 0 | 1 << 13 | 1 << 23
        let leaf7EBX: UInt32 = 1 << 1 | 1 << 23  // IA32_TSC_ADJUST; CLFLUSHOPT (the same effect as CLFLUSH)
        // IA32_ARCH_CAPABILITIES, which says what the CPU is not vulnerable to (`readMSR`).
        let leaf7EDX: UInt32 = 1 << 29
        let extendedECX: UInt32 = 1 << 0 | 1 << 5 | 1 << 8  // LAHF/SAHF in 64-bit mode, LZCNT, PREFETCHW
        let extendedEDX: UInt32 = 1 << 11 | 1 << 20 | 1 << 27 | 1 << 29  // SYSCALL, NX, RDTSCP, LM
        var leaves = [
            CPUIDEntry(function: 0, eax: 0x16, ebx: fourCC("Genu"), ecx: fourCC("ntel"), edx: fourCC("ineI")),
            CPUIDEntry(function: 1, eax: 0x0002_06a7, ebx: 8 << 8 | 1 << 16, ecx: leaf1ECX, edx: leaf1EDX),
            CPUIDEntry(function: 7, index: 0, indexSignificant: true, ebx: leaf7EBX, edx: leaf7EDX),
            // TSC / crystal = EBX / EAX, crystal in Hz in ECX; base, maximum and bus MHz.
            CPUIDEntry(function: 0x15, eax: 1, ebx: 1, ecx: UInt32(timeStampCounterHz)),
            CPUIDEntry(function: 0x16, eax: UInt32(timeStampCounterHz / 1e6), ebx: UInt32(timeStampCounterHz / 1e6)),
            CPUIDEntry(function: 0x8000_0000, eax: 0x8000_0008),
            CPUIDEntry(function: 0x8000_0001, ecx: extendedECX, edx: extendedEDX),
            CPUIDEntry(function: 0x8000_0008, eax: 48 << 8 | 40),
        ]
        var brand = Array("Visor software x86-64 CPU".utf8)
        brand += [UInt8](repeating: 0, count: 48 - brand.count)
        for leaf in 0..<3 {
            var r = [UInt32](repeating: 0, count: 4)
            for i in 0..<16 { r[i / 4] |= UInt32(brand[leaf * 16 + i]) << (8 * UInt32(i % 4)) }
            leaves.append(CPUIDEntry(function: 0x8000_0002 + UInt32(leaf), eax: r[0], ebx: r[1], ecx: r[2], edx: r[3]))
        }
        return leaves
    }()
}

/// A machine on the `interp` engine: RAM, the CPUID table and clock its vCPUs share, and the
/// state they share as processors (`X86SharedState`).
public final class InterpVirtualMachine: VirtualMachine {
    public let memory: GuestMemory
    public let cpuid: CPUIDTable
    /// The domain's clock: the guest TSC counts its nanoseconds.
    public let clock: any VirtualClock
    let decode: X86DecodeFunction
    let shared: X86SharedState
    /// Makes each vCPU's block executor: the `bt` engine's translator; nil for `interp`.
    let makeExecutor: (@Sendable () -> any X86BlockExecutor)?

    /// A machine whose vCPUs run translated code from `makeExecutor`'s executors ahead of the
    /// interpreter (the `bt` engine), or the interpreter alone when it is nil.
    public init(memory: GuestMemory, options: MachineOptions, decode: @escaping X86DecodeFunction,
                makeExecutor: (@Sendable () -> any X86BlockExecutor)?) {
        self.makeExecutor = makeExecutor
        self.memory = memory
        self.cpuid = CPUIDTable(hostSupported: InterpEngine.cpuidLeaves,
                                timeStampCounterFrequency: UInt64(InterpEngine.timeStampCounterHz),
                                apicTimerFrequency: options.apicTimerFrequency)
        self.clock = options.clock
        self.decode = decode
        self.shared = X86SharedState(memory: memory, vcpuCount: options.vcpuCount)
    }

    public func makeVCPU(index: Int) throws -> any VirtualCPU {
        InterpVirtualCPU(machine: self, index: index)
    }
}

/// The `X86Bus` of one `interp` vCPU: RAM, and port/MMIO accesses turned into exits.
final class InterpBus: X86Bus {
    let memory: GuestMemory
    let cpuidTable: CPUIDTable
    let clock: any VirtualClock
    let apicID: UInt32
    /// IA32_APIC_BASE as the guest last wrote it (base, enable bit, BSP bit).
    private(set) var apicBase: UInt64

    /// Write exits not yet returned by `run()`, oldest first.
    @exclusivity(unchecked) private(set) var pendingExits: [Exit] = []
    @exclusivity(unchecked) private var pendingHead = 0
    /// Read answers for the current instruction, in the order it makes its reads.
    @exclusivity(unchecked) private var answers: [(exit: Exit, value: UInt64)] = []
    @exclusivity(unchecked) private var replayed = 0
    /// The read reported by the last exit, waiting for `completeRead`.
    @exclusivity(unchecked) private(set) var awaiting: Exit?
    /// `pendingExits.count` when the current attempt began: writes after it are dropped if the
    /// attempt is abandoned for a read, since the retry makes them again.
    @exclusivity(unchecked) private var attemptStart = 0

    init(memory: GuestMemory, cpuid: CPUIDTable, clock: any VirtualClock, apicID: UInt32) {
        self.memory = memory; self.cpuidTable = cpuid; self.clock = clock; self.apicID = apicID
        apicBase = Self.apicDefaultBase | Self.apicEnable | (apicID == 0 ? Self.apicBootstrap : 0)
    }

    /// IA32_APIC_BASE and its fields (SDM Vol. 3A 11.4.4).
    static let apicBaseMSR: UInt32 = 0x1b
    static let apicDefaultBase: UInt64 = 0xfee0_0000
    static let apicBootstrap: UInt64 = 1 << 8
    static let apicEnable: UInt64 = 1 << 11
    /// CPUID.1:EDX bit 9: an APIC is present and enabled.
    static let cpuidAPIC: UInt32 = 1 << 9
    /// IA32_ARCH_CAPABILITIES: RDCL_NO (0), SSB_NO (4), MDS_NO (5), IF_PSCHANGE_MC_NO (6), TAA_NO
    /// (8), SBDR_SSDP_NO (13), FBSDP_NO (14), PSDP_NO (15), BHI_NO (20), PBRSB_NO (24), GDS_NO
    /// (26), RFDS_NO (27), ITS_NO (62): a software CPU has no speculation, caches or buffers to
    /// leak from. (Without ITS_NO, Linux assumes a guest of a hypervisor may be exposed to
    /// Indirect Target Selection and sends every return through one shared thunk.) Read-only:
    /// a write is #GP(0), as for every MSR this bus does not take.
    static let archCapabilitiesMSR: UInt32 = 0x10a
    static let archCapabilities: UInt64 = 1 << 0 | 1 << 4 | 1 << 5 | 1 << 6 | 1 << 8 | 1 << 13 | 1 << 14 | 1 << 15
        | 1 << 20 | 1 << 24 | 1 << 26 | 1 << 27 | 1 << 62
    /// Bits 39:12 (MAXPHYADDR 40): the base.
    static let apicBaseMask: UInt64 = 0xff_ffff_f000

    private func answer(_ exit: Exit) -> UInt64? {
        if replayed < answers.count {
            if answers[replayed].exit == exit {
                replayed += 1
                return answers[replayed - 1].value
            }
            answers.removeSubrange(replayed...)  // the instruction took another path: start over
        }
        if pendingExits.count > attemptStart { pendingExits.removeSubrange(attemptStart...) }
        awaiting = exit
        return nil
    }

    func portRead(port: UInt16, size: UInt8) throws(X86Stop) -> UInt32 {
        let exit = Exit.portRead(port: port, size: size)
        guard let v = answer(exit) else { throw .needsHypervisor(exit) }
        return UInt32(truncatingIfNeeded: v)
    }

    func portWrite(port: UInt16, size: UInt8, value: UInt32) {
        pendingExits.append(.portWrite(port: port, size: size, value: value))
    }

    func mmioRead(address: UInt64, size: UInt8) throws(X86Stop) -> UInt64 {
        let exit = Exit.mmioRead(address: GuestPhysicalAddress(address), size: size)
        guard let v = answer(exit) else { throw .needsHypervisor(exit) }
        return size >= 8 ? v : v & ((1 << (UInt64(size) * 8)) - 1)
    }

    func mmioWrite(address: UInt64, size: UInt8, value: UInt64) {
        pendingExits.append(.mmioWrite(address: GuestPhysicalAddress(address), size: size, value: value))
    }

    var hasPendingExit: Bool {
        @inline(__always) get { pendingExits.count > pendingHead }
    }

    @inline(__always)
    func beginInstruction() {
        replayed = 0
        attemptStart = pendingExits.count
    }

    @inline(__always)
    func commitAccesses() {
        if replayed > 0 { dropReplayedAnswers() }
        attemptStart = pendingExits.count
    }

    @inline(never)
    private func dropReplayedAnswers() {
        answers.removeFirst(replayed)
        replayed = 0
    }

    /// The oldest write exit not yet returned.
    func takePendingExit() -> Exit? {
        guard pendingHead < pendingExits.count else { return nil }
        let exit = pendingExits[pendingHead]
        pendingHead += 1
        if pendingHead == pendingExits.count {
            pendingExits.removeAll(keepingCapacity: true)
            pendingHead = 0
            attemptStart = 0
        }
        return exit
    }

    /// `completeRead`: the answer to the awaited read.
    func complete(_ value: UInt64) {
        guard let exit = awaiting else { return }
        awaiting = nil
        answers.append((exit, value))
    }

    func forgetAwaitedRead() { awaiting = nil }

    func reset() {
        pendingExits.removeAll(); pendingHead = 0; attemptStart = 0
        answers.removeAll(); replayed = 0; awaiting = nil
    }

    func cpuid(function: UInt32, index: UInt32) -> CPUIDEntry {
        var e = cpuidTable.lookup(function: function, index: index)
        if function == 1 {
            e.ebx = (e.ebx & 0x00ff_ffff) | (apicID << 24)
            // A processor whose APIC is disabled in IA32_APIC_BASE reports no APIC (SDM 10.4.3).
            if apicBase & Self.apicEnable == 0 { e.edx &= ~Self.cpuidAPIC }
        }
        return e
    }

    /// The domain clock's nanoseconds: a 1 GHz TSC (the CPU adds the guest's offset).
    func readTimeStampCounter() -> UInt64 { clock.nanoseconds }

    /// IA32_UCODE_REV (0x8b) reads 0 (kernels write 0 then read it back); IA32_APIC_BASE is this vCPU's;
    /// `PlatformMSR.all` are Visor's (an `.msrRead` exit, answered and replayed like a port
    /// read). Others are #GP(0).
    func readMSR(_ index: UInt32) throws(X86Stop) -> UInt64? {
        switch index {
        case 0x8b: return 0
        case Self.apicBaseMSR: return apicBase
        case Self.archCapabilitiesMSR:
            guard cpuidTable.lookup(function: 7).edx & 1 << 29 != 0 else { return nil }
            return Self.archCapabilities
        default:
            guard PlatformMSR.all.contains(index) else { return nil }
            let exit = Exit.msrRead(index: index)
            guard let v = answer(exit) else { throw .needsHypervisor(exit) }
            return v
        }
    }

    /// The writable counterparts of `readMSR`; `PlatformMSR.all` writes become `.msrWrite` exits.
    func writeMSR(_ index: UInt32, value: UInt64) -> Bool {
        switch index {
        case 0x8b:
            return true
        case Self.apicBaseMSR:
            // Reserved: bits 7:0, 9, 10 (x2APIC enable; CPUID offers no x2APIC) and 63:40.
            guard value & ~(Self.apicBaseMask | Self.apicEnable | Self.apicBootstrap) == 0 else { return false }
            // Visor's APIC model is decoded at 0xfee0_0000 only: it does not relocate the APIC
            // (nor does any guest it runs), so moving the base is refused with #GP(0) rather
            // than silently leaving the APIC where it is.
            guard value & Self.apicBaseMask == Self.apicDefaultBase else { return false }
            // The enable bit is stored (a guest may turn its APIC off); BSP is the processor's.
            apicBase = (value & (Self.apicBaseMask | Self.apicEnable)) | (apicBase & Self.apicBootstrap)
            return true
        default:
            guard PlatformMSR.all.contains(index) else { return false }
            pendingExits.append(.msrWrite(index: index, value: value))
            return true
        }
    }
}

/// One vCPU of the `interp` engine. `run`, `completeRead`, `state` and `setState` come from the one
/// thread that drives it (the software CPU is not thread-safe); `requestStop` from any thread.
public final class InterpVirtualCPU: VirtualCPU, @unchecked Sendable {
    public let index: Int
    /// The software CPU (interrupt injection goes through `machine.injectInterrupt`). Driving thread only.
    public let machine: X86Machine
    let bus: InterpBus
    private let stop: X86StopRequest
    /// Instructions the step loop runs between returns to this loop.
    static let chunk = 1 << 16

    init(machine vm: InterpVirtualMachine, index: Int) {
        self.index = index
        let bus = InterpBus(memory: vm.memory, cpuid: vm.cpuid, clock: vm.clock,
                                      apicID: UInt32(truncatingIfNeeded: index))
        self.bus = bus
        self.machine = X86Machine(bus: bus, decode: vm.decode, shared: vm.shared, vcpuIndex: index)
        self.stop = machine.stopRequest
        machine.blockExecutor = vm.makeExecutor?()
    }

    public func run() throws -> Exit { run(budget: .max) }

    /// Runs at most `budget` instructions; `.stopped` when the budget ran out first.
    public func run(budget: Int) -> Exit {
        if let exit = bus.takePendingExit() { return exit }
        if stop.take() { return .stopped }
        if machine.isShutdown { return .shutdown }
        machine.cpu.halted = false  // resume after HLT, as kvm does
        // Entering the guest is a serializing point: pick up code other vCPUs wrote.
        machine.serialize()
        var remaining = budget
        while remaining > 0 {
            let slice = min(remaining, Self.chunk)
            let outcome = machine.run(budget: slice)
            switch outcome {
            case .budgetExhausted:
                remaining -= slice
            case .halted:
                return .halt
            case .interruptWindow:
                return .interruptWindow
            case .pendingExit:
                return bus.takePendingExit() ?? .internalError("interp: a pending exit vanished")
            case .needsHypervisor(let exit):
                if let write = bus.takePendingExit() {
                    // Earlier writes go first; the read is made again when the instruction is retried.
                    bus.forgetAwaitedRead()
                    return write
                }
                return exit
            case .shutdown:
                return .shutdown
            case .stopped:
                return .stopped
            }
        }
        return .stopped
    }

    public func completeRead(_ value: UInt64) { bus.complete(value) }

    public func state() throws -> X86State { machine.cpu.state }

    public func setState(_ state: X86State) throws {
        machine.cpu.load(state)
        machine.resetCaches()
        machine.isShutdown = false
        bus.reset()
    }

    public func requestStop() { stop.request() }

    // MARK: Interrupts

    public var interruptWindowOpen: Bool {
        machine.pendingInterrupt == nil && machine.interruptWindowOpen
    }

    public func injectInterrupt(vector: UInt8) throws {
        guard interruptWindowOpen, machine.injectInterrupt(vector: vector) else {
            throw InterruptWindowClosed(vector: vector)
        }
    }

    public func injectNMI() throws { machine.injectNMI() }

    public func localAPICEnabled() throws -> Bool { bus.apicBase & InterpBus.apicEnable != 0 }

    public func timeStampCounter() throws -> UInt64 { machine.timeStampCounter }

    public func requestInterruptWindow(_ wanted: Bool) { machine.interruptWindowRequested = wanted }
}

extension X86Machine {
    /// Forgets every cached translation and decoded instruction (new state or new memory contents).
    public func resetCaches() {
        tlb.flush()
        decodeCache.invalidateAll()
    }
}
