// The software CPU's architectural state: everything an x86-64 core holds that the
// interpreter, the MMU and exception delivery read and write.

import VisorCore
import VisorX86Decode

/// One software vCPU's registers. A final class so the interpreter mutates it in place.
/// Not thread-safe: one thread drives a CPU.
public final class X86CPU {
    /// General-purpose registers, rAX (0) ... r15 (15), in encoding order: rAX, rCX, rDX, rBX,
    /// rSP, rBP, rSI, rDI, r8 ... r15.
    @exclusivity(unchecked) public var gpr = [UInt64](repeating: 0, count: 16)
    @exclusivity(unchecked) public var rip: UInt64 = 0xfff0
    /// The architectural RFLAGS value (bit 1 always set). Stored eagerly; a lazy-flags scheme may
    /// replace the storage later behind the same property.
    @exclusivity(unchecked) public var rflags: UInt64 = X86.rflagsReserved1

    /// ES, CS, SS, DS, FS, GS in encoding order (0-5), as descriptor caches.
    @exclusivity(unchecked) public var segments: [SegmentRegister] = [
        SegmentRegister(), SegmentRegister(selector: 0xf000, base: 0xffff_0000, type: 0xb),
        SegmentRegister(), SegmentRegister(), SegmentRegister(), SegmentRegister(),
    ] { didSet { updateCodeMode() } }
    @exclusivity(unchecked) public var ldtr = SegmentRegister(type: 2, isCodeOrData: false)
    @exclusivity(unchecked) public var tr = SegmentRegister(type: 0xb, isCodeOrData: false)
    @exclusivity(unchecked) public var gdtr = DescriptorTableRegister()
    @exclusivity(unchecked) public var idtr = DescriptorTableRegister()

    @exclusivity(unchecked) public var cr0: UInt64 = 0x6000_0010 { didSet { if cr0 != oldValue { translationChanged() } } }
    @exclusivity(unchecked) public var cr2: UInt64 = 0
    @exclusivity(unchecked) public var cr3: UInt64 = 0 { didSet { if cr3 != oldValue { addressSpaceChanged() } } }
    @exclusivity(unchecked) public var cr4: UInt64 = 0 { didSet { if cr4 != oldValue { pagingChanged() } } }
    @exclusivity(unchecked) public var cr8: UInt64 = 0
    @exclusivity(unchecked) public var efer: UInt64 = 0 { didSet { if efer != oldValue { translationChanged() } } }

    /// Bumped whenever CR0, CR3, CR4, EFER or the CPL changes, even without a TLB flush: the
    /// step loop's fetch shortcut and `bt`'s jump cache are valid only while it is unchanged.
    /// (A write of the same value leaves it: Linux rewrites the CPL on every interrupt and
    /// IRET at CPL0, and each bump cost `bt` its jump cache. A CR3 reload's TLB flush is
    /// seen in the TLB's generation instead.)
    @exclusivity(unchecked) public private(set) var translationEpoch: UInt64 = 0
    /// The part of `translationEpoch` that is neither the CPL nor CR3: bumped when CR0, CR4 or
    /// EFER changes. A translator keeps what it knows per CPL while this and
    /// `addressSpaceEpoch` stay, and what it knows of global pages while this stays.
    @exclusivity(unchecked) public private(set) var pagingEpoch: UInt64 = 0
    /// Bumped when CR3 changes: another address space, whose global pages (PTE.G with CR4.PGE)
    /// map as they did (the TLB keeps them across MOV CR3, SDM Vol. 3A 4.10.4.1).
    @exclusivity(unchecked) public private(set) var addressSpaceEpoch: UInt64 = 0
    /// DR0-DR7 as MOV from DRn reads them (DR6 and DR7 with their fixed bits; DR4 and DR5 are
    /// never used: MOV aliases them to DR6 and DR7). Writing any of them re-derives the armed
    /// breakpoints (`Debug.swift`).
    @exclusivity(unchecked) public var dr: [UInt64] = [0, 0, 0, 0, 0, 0, X86DebugBits.dr6Fixed, X86DebugBits.dr7Fixed] {
        didSet { updateBreakpoints() }
    }
    /// Bit n set: DRn is an enabled instruction breakpoint (DR7 L/Gn set, R/W = 00).
    @exclusivity(unchecked) public private(set) var instructionBreakpoints: UInt8 = 0
    /// Bit n set: DRn is an enabled data breakpoint (R/W = 01 write or 11 read/write).
    @exclusivity(unchecked) public private(set) var dataBreakpoints: UInt8 = 0
    /// Bit n set: DRn is an enabled I/O breakpoint (R/W = 10; matches only while CR4.DE = 1).
    @exclusivity(unchecked) public private(set) var ioBreakpoints: UInt8 = 0
    /// #DB trap conditions (DR6 bits) held back by MOV SS / POP SS for one instruction.
    @exclusivity(unchecked) public var deferredDebugTraps: UInt64 = 0 { didSet { updateBreakpoints() } }
    /// True when any breakpoint is enabled or a #DB trap is deferred: with TF and RF clear in
    /// RFLAGS, the step loop's one test for taking its debug path.
    @exclusivity(unchecked) public private(set) var debugArmed = false

    // Model-specific registers the CPU itself implements (others go to the platform).
    @exclusivity(unchecked) public var star: UInt64 = 0, lstar: UInt64 = 0, cstar: UInt64 = 0, sfmask: UInt64 = 0
    @exclusivity(unchecked) public var kernelGSBase: UInt64 = 0
    @exclusivity(unchecked) public var sysenterCS: UInt64 = 0, sysenterESP: UInt64 = 0, sysenterEIP: UInt64 = 0
    @exclusivity(unchecked) public var tscAux: UInt64 = 0
    @exclusivity(unchecked) public var pat: UInt64 = 0x0007_0406_0007_0406
    /// Added to the platform's time-stamp counter: what WRMSR to IA32_TIME_STAMP_COUNTER and
    /// IA32_TSC_ADJUST move.
    @exclusivity(unchecked) public var tscOffset: UInt64 = 0
    /// IA32_TSC_ADJUST: the sum of every change software made to the TSC (SDM Vol. 3B, "Time-Stamp Counter").
    @exclusivity(unchecked) public var tscAdjust: UInt64 = 0
    /// IA32_MISC_ENABLE (`X86SystemBits.miscEnable*`).
    @exclusivity(unchecked) public var miscEnable: UInt64 = X86SystemBits.miscEnableReset
    /// IA32_MCG_STATUS: RIPV, EIPV, MCIP (no machine check is ever signalled; software may write it).
    @exclusivity(unchecked) public var machineCheckStatus: UInt64 = 0
    /// The MTRRs (`MemoryTypeRanges.swift`).
    @exclusivity(unchecked) public var mtrr = MemoryTypeRangeRegisters()

    /// XMM0-XMM15 as (low, high) 64-bit halves.
    @exclusivity(unchecked) public var xmm = [(low: UInt64, high: UInt64)](repeating: (0, 0), count: 16)
    @exclusivity(unchecked) public var mxcsr: UInt32 = 0x1f80
    /// x87 data registers R0-R7 by physical number: ST(i) is R[(TOP + i) mod 8]. MMX register i is
    /// the significand of R_i.
    @exclusivity(unchecked) public var fpr = [Float80Bits](repeating: Float80Bits(), count: 8)
    /// x87 control word, status word (TOP in bits 13:11), and tag word in FXSAVE's abridged form
    /// (bit i set: R_i holds a value). The state FNINIT leaves.
    @exclusivity(unchecked) public var fcw: UInt16 = 0x037f, fsw: UInt16 = 0, ftw: UInt8 = 0
    /// The last non-control x87 instruction: its opcode (11 bits), CS:RIP, and the segment
    /// selector and offset of its memory operand (kept from the last one that had one).
    @exclusivity(unchecked) public var fop: UInt16 = 0, fip: UInt64 = 0, fcs: UInt16 = 0
    @exclusivity(unchecked) public var fdp: UInt64 = 0, fds: UInt16 = 0

    /// Current privilege level (CS.RPL outside real mode).
    @exclusivity(unchecked) public var cpl: UInt8 = 0 { didSet { if cpl != oldValue { translationEpoch &+= 1 } } }
    /// Interrupts are inhibited for one instruction after STI or MOV SS / POP SS.
    @exclusivity(unchecked) public var interruptShadow = false
    /// Set by HLT; cleared when an interrupt is delivered.
    @exclusivity(unchecked) public var halted = false

    public init() {}

    // MARK: Named registers
    public static let rax = 0, rcx = 1, rdx = 2, rbx = 3, rsp = 4, rbp = 5, rsi = 6, rdi = 7
    public static let es = 0, cs = 1, ss = 2, ds = 3, fs = 4, gs = 5

    /// How code bytes are interpreted now: from EFER.LMA, CR0.PE and CS, kept up to date when
    /// any of them is written.
    @exclusivity(unchecked) public private(set) var codeMode: CodeMode = .bits16

    private func updateCodeMode() {
        if efer & X86.eferLMA != 0 && segments[Self.cs].longMode {
            codeMode = .bits64
        } else if cr0 & X86.cr0ProtectionEnable != 0 && segments[Self.cs].defaultSize32 {
            codeMode = .bits32
        } else {
            codeMode = .bits16
        }
    }

    private func updateBreakpoints() {
        var instruction: UInt8 = 0, data: UInt8 = 0, io: UInt8 = 0
        let dr7 = dr.count > 7 ? dr[7] : 0
        for n in 0..<4 where (dr7 >> (2 * UInt64(n))) & 3 != 0 {
            switch (dr7 >> (16 + 4 * UInt64(n))) & 3 {
            case 0: instruction |= 1 << n
            case 2: io |= 1 << n
            default: data |= 1 << n
            }
        }
        instructionBreakpoints = instruction
        dataBreakpoints = data
        ioBreakpoints = io
        debugArmed = instruction | data | io != 0 || deferredDebugTraps != 0
    }

    private func translationChanged() {
        pagingChanged()
        updateCodeMode()
    }

    private func pagingChanged() {
        translationEpoch &+= 1
        pagingEpoch &+= 1
    }

    private func addressSpaceChanged() {
        translationEpoch &+= 1
        addressSpaceEpoch &+= 1
    }

    /// True in IA-32e mode (long mode active), 64-bit or compatibility.
    public var longModeActive: Bool { efer & X86.eferLMA != 0 }
}

extension X86CPU {
    /// Loads the engine-neutral state (a boot protocol's initial registers, a snapshot).
    public func load(_ s: X86State) {
        gpr = [s.rax, s.rcx, s.rdx, s.rbx, s.rsp, s.rbp, s.rsi, s.rdi,
               s.r8, s.r9, s.r10, s.r11, s.r12, s.r13, s.r14, s.r15]
        rip = s.rip
        rflags = s.rflags | X86.rflagsReserved1
        segments = [s.es, s.cs, s.ss, s.ds, s.fs, s.gs]
        ldtr = s.ldtr; tr = s.tr; gdtr = s.gdtr; idtr = s.idtr
        cr0 = s.cr0; cr2 = s.cr2; cr3 = s.cr3; cr4 = s.cr4; cr8 = s.cr8; efer = s.efer
        cpl = cr0 & X86.cr0ProtectionEnable == 0 ? 0 : UInt8(s.cs.selector & 3)
        let dr6 = (s.dr6 & X86DebugBits.dr6Writable) | X86DebugBits.dr6Fixed
        let dr7 = (s.dr7 & X86DebugBits.dr7Writable) | X86DebugBits.dr7Fixed
        dr = [s.dr0, s.dr1, s.dr2, s.dr3, 0, 0, dr6, dr7]
        halted = false
        interruptShadow = false
    }

    /// The engine-neutral view of the registers.
    public var state: X86State {
        var s = X86State()
        s.rax = gpr[0]; s.rcx = gpr[1]; s.rdx = gpr[2]; s.rbx = gpr[3]
        s.rsp = gpr[4]; s.rbp = gpr[5]; s.rsi = gpr[6]; s.rdi = gpr[7]
        s.r8 = gpr[8]; s.r9 = gpr[9]; s.r10 = gpr[10]; s.r11 = gpr[11]
        s.r12 = gpr[12]; s.r13 = gpr[13]; s.r14 = gpr[14]; s.r15 = gpr[15]
        s.rip = rip; s.rflags = rflags
        s.es = segments[0]; s.cs = segments[1]; s.ss = segments[2]
        s.ds = segments[3]; s.fs = segments[4]; s.gs = segments[5]
        s.ldtr = ldtr; s.tr = tr; s.gdtr = gdtr; s.idtr = idtr
        s.cr0 = cr0; s.cr2 = cr2; s.cr3 = cr3; s.cr4 = cr4; s.cr8 = cr8; s.efer = efer
        if dr.count == 8 {
            s.dr0 = dr[0]; s.dr1 = dr[1]; s.dr2 = dr[2]; s.dr3 = dr[3]; s.dr6 = dr[6]; s.dr7 = dr[7]
        }
        return s
    }
}
