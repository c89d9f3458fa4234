// The seam between the step loop and a translator (the `bt` engine): the step loop offers each
// instruction boundary to an `X86BlockExecutor`, which runs translated code for as many
// instructions as it has and returns how many retired; when it has none, the interpreter runs
// the instruction. Translated code reaches guest memory only through the accessors here, which
// do what the interpreter's accesses do (segment limits, paging rights, accessed and dirty bits,
// code-write tracking) and refuse anything they cannot finish at once — a fault, MMIO, an
// access crossing a page, a store to a page holding decoded code — so that the translated
// code can stop before the instruction and leave it to the interpreter, which then raises the
// fault or makes the exit exactly as `interp` would.

import VisorCore
import VisorX86Decode

/// Runs guest code ahead of the interpreter, a block at a time.
public protocol X86BlockExecutor: AnyObject {
    /// Runs translated code from CS:RIP and returns the number of instructions it retired (the
    /// CPU's state then reflects them all), or 0 when it has nothing for the instruction at
    /// CS:RIP, which the step loop then runs through the interpreter. Called only at a boundary
    /// where no interrupt is due, the CPU is not halted and no debug feature is armed.
    func executeBlock(on machine: X86Machine) -> Int
    /// The machine's decode cache dropped the code of physical page `physicalPage` (nil: of
    /// every page): a store reached it, or another vCPU's store was seen at a serializing point.
    func codeInvalidated(physicalPage: UInt64?)
    /// The machine's decode cache began holding code of physical page `physicalPage`: stores to
    /// it must from now on go through the machine (`accessForTranslation` refuses them), so
    /// they invalidate that code.
    func codePageAdded(physicalPage: UInt64)
}

extension X86BlockExecutor {
    /// Executors that keep no store shortcuts of their own need nothing.
    public func codePageAdded(physicalPage: UInt64) {}
}

/// Where a translated access goes: its linear and physical addresses and the host address of
/// its first byte.
public struct TranslatedAccess {
    public let linear: UInt64
    public let physical: UInt64
    public let host: UnsafeMutableRawPointer
    /// The page holds cached code elsewhere (this access does not touch it): a later store to
    /// the page must come back here to be checked, not go straight to `host`'s page.
    public let onCodePage: Bool
    /// The page's translation is global (`X86TLB.global`): it outlives a CR3 write.
    public let global: Bool
    /// A store to the page at the current CPL would need nothing more than a read did: the
    /// translation allows writes and its dirty bit is already set. So a read's fill may enter
    /// the page for writes too, and the first store after a load on a page is not a miss.
    public let writable: Bool
}

extension X86Machine {
    /// The instruction at guest-physical `physical` decoded in `mode`, for a translator: from the
    /// decode cache, or decoded now and cached, so that a later store to its page reaches the
    /// translator through `X86BlockExecutor.codeInvalidated`. Nil when the instruction is not a
    /// valid one, does not lie wholly in RAM, or crosses into the next page (the interpreter
    /// deals with those).
    public func decodeForTranslation(physical: UInt64, mode: CodeMode) -> DecodedInstruction? {
        if let cached = decodeCache.lookup(physical, mode: mode) { return cached }
        let room = 4096 - Int(physical & 0xfff)
        let count = min(15, room)
        // Marked before the bytes are read, as `fetchSlow` does, so another vCPU's store after
        // the read is logged.
        codeWatch?.markDecoded(page: physical >> 12)
        guard let bytes = try? memory.read(at: GuestPhysicalAddress(physical), count: count) else { return nil }
        let result = bytes.withUnsafeBytes { decode($0, mode) }
        guard case .instruction(let insn) = result, Int(insn.length) <= room else { return nil }
        decodeCache.insert(physical, mode: mode, insn)
        return insn
    }

    /// The 64-bit instruction at `linear` (guest-physical `physical`) that begins in the last 14
    /// bytes of its page and goes on into the next, decoded for a translator, with the
    /// guest-physical page the next linear page maps to now (execute rights at the current CPL).
    /// Its bytes on both pages are marked as code, so a store to either drops what was made of
    /// it (`X86BlockExecutor.codeInvalidated` for that page). Nil when it does not cross, the
    /// next page does not map, or either part is outside RAM: the interpreter deals with those.
    public func decodeCrossingForTranslation(linear: UInt64, physical: UInt64) -> (insn: DecodedInstruction, secondPage: UInt64)? {
        let firstCount = 4096 - Int(physical & 0xfff)
        guard firstCount < 15, linear & 0xfff == physical & 0xfff else { return nil }
        let nextPage = (linear | 0xfff) &+ 1
        guard Self.isCanonical(nextPage), let second = try? translate(nextPage, .execute) else { return nil }
        // Marked before the bytes are read, as `fetchSlow` does.
        codeWatch?.markDecoded(page: physical >> 12)
        codeWatch?.markDecoded(page: second >> 12)
        guard let head = try? memory.read(at: GuestPhysicalAddress(physical), count: firstCount),
              let tail = try? memory.read(at: GuestPhysicalAddress(second), count: 15 - firstCount) else { return nil }
        let result = (head + tail).withUnsafeBytes { decode($0, .bits64) }
        guard case .instruction(let insn) = result, Int(insn.length) > firstCount else { return nil }
        decodeCache.markCode(physical, length: firstCount)
        decodeCache.markCode(second, length: Int(insn.length) - firstCount)
        return (insn, second)
    }

    /// Where `size` bytes at `segment:offset` are for a translated access (a write when
    /// `write`), checked as the interpreter's access would be (limits, canonical form, paging
    /// rights at the current CPL; accessed and dirty bits set); nil when the interpreter must
    /// make it: a fault, MMIO, a page crossing, or a write to a 64-byte chunk holding decoded
    /// code. A caller that stores must call `noteTranslatedStore` after the store.
    public func accessForTranslation(segment: UInt8, offset: UInt64, size: Int, write: Bool) -> TranslatedAccess? {
        guard let linear = try? linearAddress(segment: segment, offset: offset, size: size),
              Int(linear & 0xfff) + size <= 4096,
              let physical = try? translate(linear, write ? .write : .read),
              !(write && decodeCache.overlapsCode(physical, size: size)),
              let p = shared.hostPointer(physical, length: UInt64(size)) else { return nil }
        let rights = pagingEnabled ? tlb.lookup(linear)?.rights : nil
        let writable = write || rights.map { tlbEntrySuffices($0, .write, user: cpu.cpl == 3) } ?? false
        return TranslatedAccess(linear: linear, physical: physical, host: p,
                                onCodePage: decodeCache.holdsCode(physicalPage: physical >> 12),
                                global: rights.map { $0 & X86TLB.global != 0 } ?? false, writable: writable)
    }

    /// True when paging is on and the TLB holds `linear`'s page as global (`X86TLB.global`); call
    /// right after a translation of it.
    @inline(__always)
    public func isGlobalPage(_ linear: UInt64) -> Bool {
        guard pagingEnabled, let hit = tlb.lookup(linear) else { return false }
        return hit.rights & X86TLB.global != 0
    }

    /// After a translated store to `physical`: other vCPUs that decoded its page learn of it at
    /// their next serializing point, as after the interpreter's stores.
    public func noteTranslatedStore(physical: UInt64, size: Int) {
        noteStore(physical, size: size)
    }

    /// True when this machine's vCPUs watch each other's stores to code (more than one vCPU):
    /// then every store must be noted (`noteTranslatedStore`).
    public var tracksCrossModifyingCode: Bool { codeWatch != nil }
}

/// What translated code's lookups stand for at an instruction boundary: the code mode, the
/// counters that change with the linear→physical mapping and CPL, and CS's base and limit; with
/// RIP. One call from another module (where each stored-property access would be checked for
/// exclusivity at run time: `@exclusivity(unchecked)` holds only inside this module).
public struct X86CodeView: Equatable {
    public var mode: CodeMode
    /// `X86CPU.pagingEpoch` and `addressSpaceEpoch`, and the TLB's generations: the
    /// linear→physical mapping.
    public var pagingEpoch: UInt64
    public var addressSpaceEpoch: UInt64
    public var tlbGeneration: UInt64
    public var globalTLBGeneration: UInt64
    public var csBase: UInt64
    public var csLimit: UInt32
    public var cpl: UInt8

    /// The fields' differences ORed together, with no branch: compared at every entry into
    /// translated code, where the derived comparison (and a chain of `&&`, which LLVM merges
    /// into one) was a call to memcmp, 3 % of a network transfer's time on `bt`.
    @inline(__always)
    public static func == (a: X86CodeView, b: X86CodeView) -> Bool {
        let counters = (a.pagingEpoch ^ b.pagingEpoch) | (a.addressSpaceEpoch ^ b.addressSpaceEpoch)
            | (a.tlbGeneration ^ b.tlbGeneration) | (a.globalTLBGeneration ^ b.globalTLBGeneration)
        let segment = (a.csBase ^ b.csBase) | UInt64(a.csLimit ^ b.csLimit) | UInt64(a.cpl ^ b.cpl)
        return counters | segment == 0 && a.mode == b.mode
    }

    /// True when only the CPL, the mode or CS differ: the mapping is the same.
    public func sameMapping(as other: X86CodeView) -> Bool {
        pagingEpoch == other.pagingEpoch && addressSpaceEpoch == other.addressSpaceEpoch
            && tlbGeneration == other.tlbGeneration
    }

    /// True when the global pages map as they did (`X86TLB.global`): at most CR3 was written
    /// (and the CPL, the mode or CS changed) since `other`.
    public func sameGlobalMapping(as other: X86CodeView) -> Bool {
        pagingEpoch == other.pagingEpoch && globalTLBGeneration == other.globalTLBGeneration
    }
}

extension X86Machine {
    /// The code view now, and RIP.
    public var codeView: (view: X86CodeView, rip: UInt64) {
        let cs = cpu.segments[X86CPU.cs]
        return (X86CodeView(mode: cpu.codeMode, pagingEpoch: cpu.pagingEpoch, addressSpaceEpoch: cpu.addressSpaceEpoch,
                            tlbGeneration: tlb.generation, globalTLBGeneration: tlb.globalGeneration,
                            csBase: cs.base, csLimit: cs.limit, cpl: cpu.cpl), cpu.rip)
    }

    /// Copies the 16 general registers to `registers` and returns RIP and RFLAGS (a
    /// translator's context).
    public func exportRegisters(to registers: UnsafeMutablePointer<UInt64>) -> (rip: UInt64, rflags: UInt64) {
        for i in 0..<16 { registers[i] = cpu.gpr[i] }
        return (cpu.rip, cpu.rflags)
    }

    /// Takes the 16 general registers from `registers`, RIP, and the status flags in
    /// `statusFlags`; of the other RFLAGS bits only IF and DF may change, to `systemFlags`'s (a
    /// translated CLI or STI changes IF, CLD or STD DF).
    public func importRegisters(from registers: UnsafePointer<UInt64>, rip: UInt64, statusFlags: UInt64,
                                systemFlags: UInt64) {
        for i in 0..<16 { cpu.gpr[i] = registers[i] }
        cpu.rip = rip
        let changeable = RFlag.interrupt | RFlag.direction
        let kept = cpu.rflags & ~(RFlag.status | changeable)
        cpu.rflags = kept | (statusFlags & RFlag.status) | (systemFlags & changeable)
    }

    /// The selectors of ES, CS, SS, DS, FS and GS into `selectors`, FS's and GS's bases and
    /// IA32_KERNEL_GS_BASE into `bases`, and the CPL: what a translated MOV from a segment
    /// register reads, what 64-bit code adds to an FS or GS offset, what a translated SWAPGS
    /// exchanges, and what a translated CLI or STI checks.
    public func exportSegmentState(to selectors: UnsafeMutablePointer<UInt64>,
                                   bases: UnsafeMutablePointer<UInt64>) -> UInt8 {
        for i in 0..<6 { selectors[i] = UInt64(cpu.segments[i].selector) }
        bases[0] = cpu.segments[X86CPU.fs].base
        bases[1] = cpu.segments[X86CPU.gs].base
        bases[2] = cpu.kernelGSBase
        return cpu.cpl
    }

    /// RDTSC's and RDTSCP's results for translated code: the time-stamp counter and IA32_TSC_AUX,
    /// or nil when CR4.TSD forbids them at this CPL (the interpreter then raises the #GP).
    public func timeStampForTranslation() -> (counter: UInt64, aux: UInt64)? {
        guard timeStampReadable else { return nil }
        return (timeStampCounter, cpu.tscAux)
    }

    /// SYSCALL from 64-bit code for translated code, whose registers and RFLAGS (`rflags`, the
    /// whole of it) are not in the CPU: CS, SS, the CPL and RFLAGS change here as the
    /// interpreter changes them, and the caller puts the returned RCX (`next`), R11 and RIP in
    /// its own registers (the CPU's are overwritten when it stops). Nil, with nothing changed,
    /// where the interpreter must run it (SYSCALL not enabled: #UD).
    public func systemCallForTranslation(rflags: UInt64, next: UInt64) -> (rip: UInt64, r11: UInt64, rflags: UInt64)? {
        guard cpu.codeMode == .bits64, cpu.efer & X86SystemBits.eferSCE != 0 else { return nil }
        cpu.rflags = rflags
        enterSyscall(selector: UInt16(truncatingIfNeeded: cpu.star >> 32) & 0xfffc, next: next, target: cpu.lstar)
        return (cpu.rip, cpu.gpr[11], cpu.rflags)
    }

    /// SYSRET to 64-bit code (REX.W) for translated code, with RCX and R11 as its registers hold
    /// them: CS, SS, the CPL and RFLAGS change here; the caller takes the returned RIP and
    /// RFLAGS. Nil, with nothing changed, where the interpreter must run it to raise its fault
    /// (SYSCALL not enabled, CPL above 0, RCX not canonical).
    public func systemReturnForTranslation(rcx: UInt64, r11: UInt64) -> (rip: UInt64, rflags: UInt64)? {
        guard cpu.codeMode == .bits64, cpu.efer & X86SystemBits.eferSCE != 0, cpu.cpl == 0, Self.isCanonical(rcx) else {
            return nil
        }
        returnFromSyscall(to: rcx, rflags: r11, into64: true)
        return (cpu.rip, cpu.rflags)
    }

    /// The selectors of CS and SS (what a translated MOV from them reads) and the CPL.
    public var codeAndStackSelectors: (cs: UInt16, ss: UInt16, cpl: UInt8) {
        (cpu.segments[X86CPU.cs].selector, cpu.segments[X86CPU.ss].selector, cpu.cpl)
    }

    /// GS's base and IA32_KERNEL_GS_BASE after translated code exchanged them (SWAPGS).
    public func importGSBases(gs: UInt64, kernelGS: UInt64) {
        cpu.segments[X86CPU.gs].base = gs
        cpu.kernelGSBase = kernelGS
    }

    /// True when an interrupt, an NMI or an interrupt window is waiting to be dealt with at the
    /// next instruction boundary where it can be.
    public var hasInterruptWork: Bool { needsInterruptCheck }

    /// Counts `times` executions of `kind` that translated code ran at the current CPL.
    public func countTranslatedSensitive(_ kind: SensitiveInstruction, times: UInt64) {
        sensitiveInstructions.record(kind, cpl: cpu.cr0 & X86.cr0ProtectionEnable == 0 ? 0 : cpu.cpl, times: times)
    }
}
