// System instructions driven with hand-built DecodedInstruction values: control registers and
// the way into long mode, MSRs, SYSCALL/SYSRET, HLT/CLI/STI, port I/O with the TSS bitmap,
// segment loads, descriptor tables, far returns, CPUID.

import Testing
import VisorCore
@testable import VisorX86
import VisorX86Decode

private func cr(_ n: UInt8) -> Operand { Operand(.control, index: n, size: 8) }
private let rax = Operand.register(0, size: 8)

@Suite struct SystemInstructionTests {
    /// A 32-bit protected-mode CPU with paging off, as a multiboot loader leaves it.
    func protectedMode() -> SysMachine {
        let s = SysMachine.longMode()
        let c = s.cpu
        c.cr0 = X86SystemBits.cr0PE | X86SystemBits.cr0ET
        c.cr4 = 0
        c.efer = 0
        c.segments[X86CPU.cs] = .flatCode(selector: SysLayout.legacyCode32, longMode: false)
        return s
    }

    func wrmsr(_ s: SysMachine, _ index: UInt32, _ value: UInt64) throws {
        s.cpu.gpr[1] = UInt64(index); s.cpu.gpr[0] = value & 0xffff_ffff; s.cpu.gpr[2] = value >> 32
        try s.machine.execute(sysInsn(.wrmsr))
    }

    func rdmsr(_ s: SysMachine, _ index: UInt32) throws -> UInt64 {
        s.cpu.gpr[1] = UInt64(index)
        try s.machine.execute(sysInsn(.rdmsr))
        return s.cpu.gpr[2] << 32 | s.cpu.gpr[0]
    }

    func movToCR(_ s: SysMachine, _ n: UInt8, _ value: UInt64) throws {
        s.cpu.gpr[0] = value
        try s.machine.execute(sysInsn(.movControl, cr(n), rax, length: 3, operandSize: 4))
    }

    @Test func enteringLongMode() throws {
        let s = protectedMode()
        // PG without PE, and PG with LME but no PAE, are #GP(0).
        #expect(s.fault { try movToCR(s, 0, X86SystemBits.cr0PG) } == .gp(0))
        try wrmsr(s, X86SystemBits.msrEFER, X86SystemBits.eferLME)
        #expect(s.fault { try movToCR(s, 0, X86SystemBits.cr0PE | X86SystemBits.cr0PG) } == .gp(0))
        try movToCR(s, 4, X86SystemBits.cr4PAE)
        try movToCR(s, 3, SysLayout.pml4)
        #expect(s.cpu.efer & X86SystemBits.eferLMA == 0)
        try movToCR(s, 0, X86SystemBits.cr0PE | X86SystemBits.cr0PG)
        #expect(s.cpu.efer & X86SystemBits.eferLMA != 0, "LMA follows PG with LME and PAE")
        #expect(s.cpu.codeMode == .bits32, "compatibility mode until a 64-bit CS is loaded")
        // LMA is read-only; LME cannot change with paging on.
        #expect(try rdmsr(s, X86SystemBits.msrEFER) & X86SystemBits.eferLMA != 0)
        #expect(s.fault { try wrmsr(s, X86SystemBits.msrEFER, 0) } == .gp(0))
        // Clearing PAE in long mode is #GP.
        #expect(s.fault { try movToCR(s, 4, 0) } == .gp(0))
        // A far jump through memory into the 64-bit code segment.
        s.bus.w32(0x5000, 0x20_0000)
        s.bus.w16(0x5004, SysLayout.kernelCode)
        var jmp = sysInsn(.jmpFar, .none, .memory(size: 6), length: 6, operandSize: 4, memory: MemoryOperand(displacement: 0x5000))
        jmp.addressSize = 4
        try s.machine.execute(jmp)
        #expect(s.cpu.codeMode == .bits64)
        #expect(s.cpu.rip == 0x20_0000)
        // Leaving paging from 64-bit mode is #GP.
        #expect(s.fault { try movToCR(s, 0, X86SystemBits.cr0PE) } == .gp(0))
    }

    @Test func controlRegisterChecks() throws {
        let s = SysMachine.longMode()
        #expect(s.fault { try movToCR(s, 4, X86SystemBits.cr4PAE | 1 << 20) } == .gp(0), "SMEP is not offered")
        #expect(s.fault { try movToCR(s, 3, 1 << 45) } == .gp(0), "CR3 above MAXPHYADDR")
        #expect(s.fault { try movToCR(s, 0, 1 << 32 | s.cpu.cr0) } == .gp(0))
        #expect(s.fault { try movToCR(s, 8, 0x10) } == .gp(0))
        try movToCR(s, 8, 0xf)
        #expect(s.cpu.cr8 == 0xf)
        #expect(s.fault { try movToCR(s, 5, 0) } == .undefined)
        s.enterUser()
        #expect(s.fault { try movToCR(s, 3, SysLayout.pml4) } == .gp(0), "CPL 3")
        #expect(s.fault { try s.machine.execute(sysInsn(.hlt, length: 1)) } == .gp(0))
        #expect(s.fault { try s.machine.execute(sysInsn(.wbinvd)) } == .gp(0))
    }

    @Test func modelSpecificRegisters() throws {
        let s = SysMachine.longMode()
        try wrmsr(s, X86SystemBits.msrFSBase, 0x7fff_1234_5000)
        #expect(s.cpu.segments[X86CPU.fs].base == 0x7fff_1234_5000)
        #expect(s.fault { try wrmsr(s, X86SystemBits.msrLSTAR, 0x8000_0000_0000) } == .gp(0), "non-canonical")
        #expect(s.fault { _ = try rdmsr(s, 0x1234) } == .gp(0), "unknown MSR")
        s.bus.msrs[0x1b] = 0xfee0_0900
        #expect(try rdmsr(s, 0x1b) == 0xfee0_0900, "bus MSR")
        try wrmsr(s, X86SystemBits.msrTSC, 5000)
        s.bus.tsc += 10
        #expect(try rdmsr(s, X86SystemBits.msrTSC) == 5010)
        try s.machine.execute(sysInsn(.rdtsc))
        #expect(s.cpu.gpr[0] == 5010 && s.cpu.gpr[2] == 0)
        #expect(s.fault { try wrmsr(s, X86SystemBits.msrPAT, 0x02) } == .gp(0), "PAT type 2 is reserved")
        s.enterUser()
        #expect(s.fault { _ = try rdmsr(s, X86SystemBits.msrEFER) } == .gp(0))
        s.cpu.cr4 |= X86SystemBits.cr4TSD
        #expect(s.fault { try s.machine.execute(sysInsn(.rdtsc)) } == .gp(0), "CR4.TSD at CPL 3")
    }

    @Test func syscallAndSysret() throws {
        let s = SysMachine.longMode()
        try wrmsr(s, X86SystemBits.msrSTAR, UInt64(0x18) << 48 | UInt64(0x08) << 32)
        try wrmsr(s, X86SystemBits.msrLSTAR, 0xffff_ffff_8100_0000)
        try wrmsr(s, X86SystemBits.msrSFMASK, 0x4700)  // TF, IF, DF, NT
        s.enterUser()
        s.cpu.rflags = 0x246 | X86SystemBits.flagDF
        s.cpu.rip = SysLayout.code
        try s.machine.execute(sysInsn(.syscall))
        #expect(s.cpu.cpl == 0)
        #expect(s.cpu.rip == 0xffff_ffff_8100_0000)
        #expect(s.cpu.gpr[X86CPU.rcx] == SysLayout.code + 2)
        #expect(s.cpu.gpr[11] == 0x246 | X86SystemBits.flagDF)
        #expect(s.cpu.rflags & (X86SystemBits.flagIF | X86SystemBits.flagDF) == 0)
        #expect(s.cpu.segments[X86CPU.cs].selector == 0x08 && s.cpu.segments[X86CPU.cs].longMode)
        #expect(s.cpu.segments[X86CPU.ss].selector == 0x10)
        // SYSRET to 64-bit mode.
        try s.machine.execute(sysInsn(.sysret, operandSize: 8))
        #expect(s.cpu.cpl == 3)
        #expect(s.cpu.rip == SysLayout.code + 2)
        #expect(s.cpu.segments[X86CPU.cs].selector == 0x2b && s.cpu.segments[X86CPU.cs].longMode)
        #expect(s.cpu.segments[X86CPU.ss].selector == 0x23)
        #expect(s.cpu.rflags == 0x246 | X86SystemBits.flagDF)
        // SYSRET to compatibility mode; non-canonical RCX; SCE off.
        try s.machine.execute(sysInsn(.syscall))
        s.cpu.gpr[X86CPU.rcx] = 0x1_0000_1234
        try s.machine.execute(sysInsn(.sysret, operandSize: 4))
        #expect(s.cpu.rip == 0x1234 && s.cpu.codeMode == .bits32 && s.cpu.segments[X86CPU.cs].selector == 0x1b)
        s.cpu.segments[X86CPU.cs] = .flatCode(selector: 8, longMode: true)
        s.cpu.cpl = 0
        s.cpu.gpr[X86CPU.rcx] = 0x8000_0000_0000
        #expect(s.fault { try s.machine.execute(sysInsn(.sysret, operandSize: 8)) } == .gp(0))
        s.cpu.efer &= ~X86SystemBits.eferSCE
        #expect(s.fault { try s.machine.execute(sysInsn(.syscall)) } == .undefined)
    }

    @Test func haltCliSti() throws {
        let s = SysMachine.longMode()
        try s.machine.execute(sysInsn(.hlt, length: 1))
        #expect(s.cpu.halted && s.cpu.rip == SysLayout.code + 1)
        s.enterUser()
        s.cpu.rflags = 0x202
        #expect(s.fault { try s.machine.execute(sysInsn(.cli, length: 1)) } == .gp(0), "CPL 3 > IOPL 0")
        s.cpu.rflags = 0x3202
        try s.machine.execute(sysInsn(.cli, length: 1))
        #expect(s.cpu.rflags & X86SystemBits.flagIF == 0)
        try s.machine.execute(sysInsn(.sti, length: 1))
        #expect(s.cpu.rflags & X86SystemBits.flagIF != 0 && s.cpu.interruptShadow)
    }

    @Test func portIOUsesTheTSSBitmapAboveIOPL() throws {
        let s = SysMachine.longMode()
        s.cpu.tr.limit = 0x68 + 0x2000 / 8 + 1
        // Bitmap at 0x68: all ports denied except 0x80.
        for i in 0..<(0x2000 / 8 + 1) { s.bus.w8(SysLayout.tss + 0x68 + UInt64(i), 0xff) }
        s.bus.w8(SysLayout.tss + 0x68 + 0x10, 0xfe)
        s.enterUser()
        s.cpu.rflags = 0x202
        s.cpu.gpr[0] = 0x41
        let out80 = sysInsn(.out, .immediate(size: 1), .register(0, size: 1), immediate: 0x80)
        try s.machine.execute(out80)
        #expect(s.bus.portWrites.count == 1 && s.bus.portWrites[0].0 == 0x80 && s.bus.portWrites[0].2 == 0x41)
        let out81 = sysInsn(.out, .immediate(size: 1), .register(0, size: 1), immediate: 0x81)
        #expect(s.fault { try s.machine.execute(out81) } == .gp(0))
        // A read the bus cannot answer stops the instruction with RIP unchanged.
        let rip = s.cpu.rip
        s.cpu.rflags = 0x3202
        do {
            try s.machine.execute(sysInsn(.in, .register(0, size: 1), .immediate(size: 1), immediate: 0x60))
            Issue.record("expected a stop")
        } catch {
            #expect(error == .stop(.needsHypervisor(.portRead(port: 0x60, size: 1))))
        }
        #expect(s.cpu.rip == rip)
        s.bus.portAnswers[0x60] = 0x99
        try s.machine.execute(sysInsn(.in, .register(0, size: 1), .immediate(size: 1), immediate: 0x60))
        #expect(s.cpu.gpr[0] & 0xff == 0x99)
    }

    @Test func segmentLoads() throws {
        let s = protectedMode()
        let ax = Operand.register(0, size: 2)
        func movSS(_ selector: UInt16) throws {
            s.cpu.gpr[0] = UInt64(selector)
            try s.machine.execute(sysInsn(.movSegment, Operand(.segment, index: 2, size: 2), ax, operandSize: 2))
        }
        #expect(s.fault { try movSS(0) } == .gp(0), "null SS outside 64-bit mode")
        #expect(s.fault { try movSS(SysLayout.kernelCode) } == .gp(UInt32(SysLayout.kernelCode)), "code is not a stack")
        #expect(s.fault { try movSS(SysLayout.userData) } == .gp(UInt32(SysLayout.userData)), "DPL 3 at CPL 0")
        #expect(s.fault { try movSS(0x50) } == .gp(0x50), "beyond the GDT limit")
        s.bus.w64(SysLayout.gdt + 0x10, sysDescriptor(type: 0x3, present: false, d: true))
        #expect(s.fault { try movSS(SysLayout.kernelData) } == .ss(0x10))
        s.bus.w64(SysLayout.gdt + 0x10, sysDescriptor(base: 0x1234_0000, type: 0x2, d: true))
        try movSS(SysLayout.kernelData)
        #expect(s.cpu.segments[X86CPU.ss].base == 0x1234_0000 && s.cpu.interruptShadow)
        #expect(s.bus.r64(SysLayout.gdt + 0x10) & (1 << 40) != 0, "accessed bit set")
        // DS: null is fine, but using it faults.
        s.cpu.gpr[0] = 0
        try s.machine.execute(sysInsn(.movSegment, Operand(.segment, index: 3, size: 2), ax, operandSize: 2))
        #expect(s.fault { _ = try s.machine.readMemory(segment: 3, offset: 0, size: 4) } == .gp(0))
        s.bus.w64(SysLayout.gdt + 0x20, sysDescriptor(type: 0x3, dpl: 3, present: false, d: true))
        s.cpu.gpr[0] = UInt64(SysLayout.userData)
        #expect(s.fault {
            try s.machine.execute(sysInsn(.movSegment, Operand(.segment, index: 3, size: 2), ax, operandSize: 2))
        } == .np(UInt32(SysLayout.userData)))
        // Real mode: base = selector << 4.
        s.cpu.cr0 = X86SystemBits.cr0ET
        s.cpu.gpr[0] = 0x1234
        try s.machine.execute(sysInsn(.movSegment, Operand(.segment, index: 0, size: 2), ax, operandSize: 2))
        #expect(s.cpu.segments[X86CPU.es].base == 0x12340)
    }

    @Test func descriptorTablesAndTaskRegister() throws {
        let s = SysMachine.longMode()
        s.bus.w16(0x5000, 0x7f)
        s.bus.w64(0x5002, 0xffff_8000_0000_1000)
        try s.machine.execute(sysInsn(.lidt, .none, .memory(size: 10), length: 3, memory: MemoryOperand(displacement: 0x5000)))
        #expect(s.cpu.idtr == DescriptorTableRegister(base: 0xffff_8000_0000_1000, limit: 0x7f))
        try s.machine.execute(sysInsn(.sgdt, .memory(size: 10), length: 3, memory: MemoryOperand(displacement: 0x5100)))
        #expect(s.bus.r16(0x5100) == 0x47 && s.bus.r64(0x5102) == SysLayout.gdt)
        // LTR marks the TSS busy; loading a busy TSS again is #GP.
        s.cpu.gpr[0] = UInt64(SysLayout.tssSelector)
        let ltr = sysInsn(.ltr, .none, .register(0, size: 2), operandSize: 2)
        try s.machine.execute(ltr)
        #expect(s.cpu.tr.type == 0xb && s.cpu.tr.base == SysLayout.tss)
        #expect((s.bus.r64(SysLayout.gdt + 0x30) >> 40) & 0xf == 0xb)
        #expect(s.fault { try s.machine.execute(ltr) } == .gp(UInt32(SysLayout.tssSelector)))
        s.cpu.gpr[0] = UInt64(SysLayout.kernelData)
        #expect(s.fault { try s.machine.execute(sysInsn(.lldt, .none, .register(0, size: 2), operandSize: 2)) } == .gp(0x10))
        // SWAPGS.
        s.cpu.segments[X86CPU.gs].base = 1
        s.cpu.kernelGSBase = 2
        try s.machine.execute(sysInsn(.swapgs, length: 3))
        #expect(s.cpu.segments[X86CPU.gs].base == 2 && s.cpu.kernelGSBase == 1)
    }

    @Test func farReturnReloadsCS() throws {
        let s = SysMachine.longMode()
        s.cpu.gpr[X86CPU.rsp] = 0x7_0000
        s.bus.w64(0x7_0000, 0x10_2000)
        s.bus.w64(0x7_0008, UInt64(SysLayout.kernelCode))
        try s.machine.execute(sysInsn(.retFar, length: 2, operandSize: 8))
        #expect(s.cpu.rip == 0x10_2000 && s.cpu.gpr[X86CPU.rsp] == 0x7_0010)
        // To a user segment: outer return pops SS:RSP.
        s.bus.w64(0x7_0010, 0x40_0000)
        s.bus.w64(0x7_0018, UInt64(SysLayout.userCode | 3))
        s.bus.w64(0x7_0020, 0x9_0000)
        s.bus.w64(0x7_0028, UInt64(SysLayout.userData | 3))
        try s.machine.execute(sysInsn(.retFar, length: 2, operandSize: 8))
        #expect(s.cpu.cpl == 3 && s.cpu.gpr[X86CPU.rsp] == 0x9_0000 && s.cpu.rip == 0x40_0000)
        #expect(s.cpu.segments[X86CPU.ds].present == false, "kernel DS nulled on the way out")
    }

    @Test func cpuidShowsVisorsSignature() throws {
        let s = SysMachine.longMode()
        s.cpu.gpr[0] = 0x4000_0000
        try s.machine.execute(sysInsn(.cpuid))
        let table = CPUIDTable(hostSupported: InterpEngine.cpuidLeaves).lookup(function: 0x4000_0000)
        #expect(s.cpu.gpr[3] == UInt64(table.ebx) && s.cpu.gpr[1] == UInt64(table.ecx) && table.ebx != 0)
        s.cpu.gpr[0] = 1
        try s.machine.execute(sysInsn(.cpuid))
        #expect(s.cpu.gpr[1] & (1 << 31) != 0, "hypervisor bit")
        #expect(s.cpu.gpr[2] & (1 << 9) != 0, "local APIC (Visor's, in user space)")
        #expect(s.cpu.gpr[1] & (1 << 24) != 0, "TSC-deadline mode")
        #expect(s.cpu.gpr[1] & (1 << 21) == 0, "no x2APIC")
        #expect(s.cpu.gpr[2] & (1 << 6 | 1 << 8) == 1 << 6 | 1 << 8, "PAE, CX8")
        let fpu: UInt64 = 1 << 0 | 1 << 23 | 1 << 24 | 1 << 25 | 1 << 26
        #expect(s.cpu.gpr[2] & fpu == fpu, "FPU, MMX, FXSR, SSE, SSE2: executed in full")
        #expect(s.cpu.gpr[1] & 1 == 1, "SSE3")
        #expect(s.cpu.gpr[1] & (1 << 9 | 1 << 19 | 1 << 20 | 1 << 26) == 0, "no SSSE3, SSE4.1, SSE4.2, XSAVE")
        #expect(s.cpu.gpr[1] & (1 << 13) != 0, "CX16")
        s.cpu.gpr[0] = 0x8000_0001
        try s.machine.execute(sysInsn(.cpuid))
        #expect(s.cpu.gpr[2] == 1 << 11 | 1 << 20 | 1 << 27 | 1 << 29, "SYSCALL, NX, RDTSCP, LM")
        s.cpu.gpr[0] = 0
        try s.machine.execute(sysInsn(.cpuid))
        #expect(s.cpu.gpr[3] == 0x756e_6547, "Genu")
    }

    @Test func undefinedSystemInstructions() {
        let s = SysMachine.longMode()
        // (RDPMC is #GP(0), not #UD: ModelSpecificRegisterTests.)
        for op in [Operation.ud2, .monitor, .mwait, .rdrand] {
            #expect(s.fault { try s.machine.execute(sysInsn(op)) } == .undefined, "\(op)")
        }
    }
}
