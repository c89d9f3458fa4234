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
}
