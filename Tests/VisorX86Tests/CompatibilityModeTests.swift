// System instructions in compatibility mode (32-bit code under long mode) and the vendor rules
// that differ there: SYSCALL (Intel: #UD outside 64-bit mode; AMD: to IA32_CSTAR, or STAR[31:0]
// in legacy mode), SYSRET and SYSEXIT with a 32-bit operand back to compatibility mode, and
// SYSENTER/SYSEXIT in IA-32e mode (Intel: allowed; AMD: #UD). The vendor is CPUID leaf 0's.

import Testing
import VisorCore
@testable import VisorX86
import VisorX86Decode

/// The software CPU's own CPUID leaves with leaf 0 saying "AuthenticAMD".
private func amdCPUID() -> CPUIDTable {
    let leaves = InterpEngine.cpuidLeaves.map { leaf -> CPUIDEntry in
        guard leaf.function == 0 else { return leaf }
        return CPUIDEntry(function: 0, eax: leaf.eax, ebx: 0x6874_7541, ecx: 0x444d_4163, edx: 0x6974_6e65)
    }
    return CPUIDTable(hostSupported: leaves)
}

@Suite struct CompatibilityModeTests {
    static let star: UInt64 = (0x10 << 48) | (0x08 << 32) | 0x0004_0000
    static let cstar: UInt64 = 0x10_2000, lstar: UInt64 = 0x10_3000

    /// A long-mode machine running 32-bit code at CPL3 (CS 0x1b, SS 0x23) with SYSCALL set up.
    func compatibilityMode(amd: Bool) -> SysMachine {
        let s = SysMachine.longMode()
        if amd { s.bus.cpuidTable = amdCPUID() }
        let c = s.cpu
        c.segments[X86CPU.cs] = SegmentRegister(selector: SysLayout.user32Code | 3, base: 0, limit: 0xffff_ffff, type: 0xb,
                                                dpl: 3, defaultSize32: true, granularity4K: true)
        c.segments[X86CPU.ss] = SegmentRegister(selector: SysLayout.userData | 3, base: 0, limit: 0xffff_ffff, type: 0x3,
                                                dpl: 3, defaultSize32: true, granularity4K: true)
        c.cpl = 3
        c.star = Self.star
        c.cstar = Self.cstar
        c.lstar = Self.lstar
        c.sfmask = X86SystemBits.flagIF
        c.sysenterCS = 0x08
        c.sysenterEIP = 0xffff_8000_0000_1000
        c.sysenterESP = 0xffff_8000_0000_8000
        c.rflags = 0x3202
        return s
    }

    func run(_ s: SysMachine, _ bytes: [UInt8]) throws {
        guard case .instruction(let insn) = Decoder.decode(bytes, mode: s.cpu.codeMode) else {
            Issue.record("test bytes do not decode"); return
        }
        try s.machine.execute(insn)
    }

    static let syscall: [UInt8] = [0x0f, 0x05], sysenter: [UInt8] = [0x0f, 0x34]
    static let sysexit32: [UInt8] = [0x0f, 0x35], sysret32: [UInt8] = [0x0f, 0x07]

    @Test func intelSyscallOutside64BitModeIsUD() {
        let s = compatibilityMode(amd: false)
        #expect(s.cpu.codeMode == .bits32)
        #expect(sysFault { try run(s, Self.syscall) } == .undefined)
        #expect(s.cpu.cpl == 3 && s.cpu.rip == SysLayout.code)
    }

    @Test func amdSyscallFromCompatibilityModeEntersAtCSTAR() throws {
        let s = compatibilityMode(amd: true)
        s.cpu.gpr[X86CPU.rcx] = 0xffff_ffff_ffff_ffff
        try run(s, Self.syscall)
        #expect(s.cpu.rip == Self.cstar, "IA32_CSTAR, not IA32_LSTAR")
        #expect(s.cpu.codeMode == .bits64 && s.cpu.cpl == 0)
        #expect(s.cpu.segments[X86CPU.cs].selector == 0x08 && s.cpu.segments[X86CPU.ss].selector == 0x10)
        #expect(s.cpu.gpr[X86CPU.rcx] == SysLayout.code + 2, "the next EIP, zero-extended")
        #expect(s.cpu.gpr[11] == 0x3202, "R11 = RFLAGS")
        #expect(s.cpu.rflags & X86SystemBits.flagIF == 0, "masked by SFMASK")
    }

    @Test func amdSyscallInLegacyProtectedModeGoesToSTAR() throws {
        let s = compatibilityMode(amd: true)
        s.cpu.efer = X86SystemBits.eferSCE
        s.cpu.cr0 = X86SystemBits.cr0PE | X86SystemBits.cr0ET
        try run(s, Self.syscall)
        #expect(s.cpu.rip == 0x0004_0000 && s.cpu.codeMode == .bits32 && s.cpu.cpl == 0)
        #expect(s.cpu.segments[X86CPU.cs].selector == 0x08 && s.cpu.gpr[X86CPU.rcx] == SysLayout.code + 2)
        #expect(s.cpu.rflags & X86SystemBits.flagIF == 0)
    }

    @Test func syscallWithoutEFERSCEIsUDForEitherVendor() {
        for amd in [false, true] {
            let s = compatibilityMode(amd: amd)
            s.cpu.efer &= ~X86SystemBits.eferSCE
            #expect(sysFault { try run(s, Self.syscall) } == .undefined)
        }
    }

    @Test func sysretWithA32BitOperandReturnsToCompatibilityMode() throws {
        let s = SysMachine.longMode()
        s.cpu.star = Self.star
        s.cpu.gpr[X86CPU.rcx] = 0xdead_0000_1234_5678
        s.cpu.gpr[11] = 0x3202
        try run(s, Self.sysret32)
        #expect(s.cpu.codeMode == .bits32 && s.cpu.cpl == 3)
        #expect(s.cpu.rip == 0x1234_5678, "EIP = ECX")
        #expect(s.cpu.segments[X86CPU.cs].selector == 0x13 && s.cpu.segments[X86CPU.ss].selector == 0x1b)
        #expect(s.cpu.rflags == 0x3202)
    }

    @Test func intelSysenterFromCompatibilityModeEnters64BitCodeAndSysexitReturns() throws {
        let s = compatibilityMode(amd: false)
        try run(s, Self.sysenter)
        #expect(s.cpu.codeMode == .bits64 && s.cpu.cpl == 0)
        #expect(s.cpu.rip == 0xffff_8000_0000_1000 && s.cpu.gpr[X86CPU.rsp] == 0xffff_8000_0000_8000)
        s.cpu.gpr[X86CPU.rdx] = 0x4000
        s.cpu.gpr[X86CPU.rcx] = 0x9000
        try run(s, Self.sysexit32)
        #expect(s.cpu.codeMode == .bits32 && s.cpu.cpl == 3)
        #expect(s.cpu.segments[X86CPU.cs].selector == 0x1b && s.cpu.segments[X86CPU.ss].selector == 0x23)
        #expect(s.cpu.rip == 0x4000 && s.cpu.gpr[X86CPU.rsp] == 0x9000)
    }

    @Test func amdSysenterAndSysexitInIA32eModeAreUD() {
        let s = compatibilityMode(amd: true)
        #expect(sysFault { try run(s, Self.sysenter) } == .undefined)
        s.cpu.segments[X86CPU.cs] = .flatCode(selector: SysLayout.kernelCode, longMode: true)
        s.cpu.cpl = 0
        #expect(sysFault { try run(s, Self.sysexit32) } == .undefined)
    }

    // MARK: 64-bit call gates

    /// A 16-byte call gate at GDT 0x48 to `target`:`offset`, DPL `dpl` (upper type `highType`).
    func callGate(_ s: SysMachine, target: UInt16 = SysLayout.kernelCode, offset: UInt64 = 0x10_5000, dpl: UInt8 = 3,
                  highType: UInt64 = 0) {
        let low = (offset & 0xffff) | UInt64(target) << 16 | UInt64(0x8c | dpl << 5) << 40 | (offset & 0xffff_0000) << 32
        s.bus.w64(SysLayout.gdt + 0x48, low)
        s.bus.w64(SysLayout.gdt + 0x50, offset >> 32 | highType << 40)
        s.cpu.gdtr = DescriptorTableRegister(base: SysLayout.gdt, limit: 0x57)
        // call far [0x100800] / jmp far [0x100800] read m16:32 = 0x4b:0.
        s.bus.w32(0x10_0800, 0)
        s.bus.w16(0x10_0804, 0x4b)
    }
    static let callFarIndirect: [UInt8] = [0xff, 0x1d, 0x00, 0x08, 0x10, 0x00]
    static let jmpFarIndirect: [UInt8] = [0xff, 0x2d, 0x00, 0x08, 0x10, 0x00]

    @Test func callThroughA64BitCallGateFromCompatibilityModeSwitchesToCPL0AndRETQComesBack() throws {
        let s = compatibilityMode(amd: false)
        callGate(s)
        let userRSP = s.cpu.gpr[X86CPU.rsp]
        try run(s, Self.callFarIndirect)
        #expect(s.cpu.cpl == 0 && s.cpu.codeMode == .bits64 && s.cpu.rip == 0x10_5000)
        #expect(s.cpu.segments[X86CPU.cs].selector == SysLayout.kernelCode)
        #expect(s.cpu.segments[X86CPU.ss].selector == 0, "a null SS with RPL = the new CPL")
        let rsp = s.cpu.gpr[X86CPU.rsp]
        #expect(rsp == 0x7_0000 - 32, "RSP0 from the TSS, four 8-byte pushes")
        #expect(s.bus.r64(rsp) == SysLayout.code + 6 && s.bus.r64(rsp + 8) == UInt64(SysLayout.user32Code | 3))
        #expect(s.bus.r64(rsp + 16) == userRSP && s.bus.r64(rsp + 24) == UInt64(SysLayout.userData | 3))
        try run(s, [0x48, 0xcb])  // lretq
        #expect(s.cpu.cpl == 3 && s.cpu.codeMode == .bits32 && s.cpu.rip == SysLayout.code + 6)
        #expect(s.cpu.segments[X86CPU.ss].selector == SysLayout.userData | 3 && s.cpu.gpr[X86CPU.rsp] == userRSP)
    }

    @Test func callGateChecks() {
        let s = compatibilityMode(amd: false)
        callGate(s, dpl: 0)
        #expect(sysFault { try run(s, Self.callFarIndirect) } == .gp(0x48), "gate DPL 0 < CPL 3")
        callGate(s)
        #expect(sysFault { try run(s, Self.jmpFarIndirect) } == .gp(UInt32(SysLayout.kernelCode)),
                "JMP through a gate cannot raise privilege")
        callGate(s, highType: 0xc)
        #expect(sysFault { try run(s, Self.callFarIndirect) } == .gp(0x48), "the upper half's type must be 0")
        callGate(s, target: SysLayout.legacyCode32)
        #expect(sysFault { try run(s, Self.callFarIndirect) } == .gp(UInt32(SysLayout.legacyCode32)),
                "the target must be 64-bit code")
        callGate(s, offset: 0x8000_0000_0000_0000)
        #expect(sysFault { try run(s, Self.callFarIndirect) } == .gp(0), "non-canonical target")
        #expect(s.cpu.cpl == 3 && s.cpu.rip == SysLayout.code, "nothing changed")
    }
}
