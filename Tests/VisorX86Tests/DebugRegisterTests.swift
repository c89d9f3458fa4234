// The software CPU's debug features (Debug.swift): MOV DR's fixed bits and general detect,
// instruction breakpoints and RF, data and I/O breakpoints, TF single-stepping, and RF in the
// frames of faults. Each test runs real instruction bytes on the long-mode fixture, one step at
// a time, and reads the exception frame the CPU pushed.

import Testing
import VisorCore
@testable import VisorX86
import VisorX86Decode

@Suite struct DebugRegisterTests {
    static let debugHandler: UInt64 = 0x10_1000, otherHandler: UInt64 = 0x10_2000
    static let data: UInt64 = 0x5000
    static let flagRF = X86SystemBits.flagRF, flagTF = X86SystemBits.flagTF
    // The SDM's values, written out rather than taken from the code under test.
    static let dr6Fixed: UInt64 = 0xffff_0ff0, dr7Fixed: UInt64 = 0x400
    static let dr6BD: UInt64 = 1 << 13, dr6BS: UInt64 = 1 << 14, dr7GD: UInt64 = 1 << 13

    /// The fixture with `code` at `SysLayout.code`, #DB to `debugHandler` and #UD, #BP and
    /// vector 0x30 to `otherHandler` (each handler a HLT).
    func machine(_ code: [UInt8]) -> SysMachine {
        let f = SysMachine.longMode()
        f.bus.bytes(SysLayout.code, code)
        f.gate(1, handler: Self.debugHandler)
        for vector in [3, 6, 0x30] { f.gate(vector, handler: Self.otherHandler, dpl: 3) }
        f.bus.bytes(Self.debugHandler, [0xf4])
        f.bus.bytes(Self.otherHandler, [0xf4])
        return f
    }

    /// The exception frame at RSP: (RIP, RFLAGS).
    func frame(_ f: SysMachine) -> (rip: UInt64, rflags: UInt64) {
        let rsp = f.cpu.gpr[X86CPU.rsp]
        return (f.bus.r64(rsp), f.bus.r64(rsp + 16))
    }

    func steps(_ f: SysMachine, _ n: Int) {
        for _ in 0..<n { _ = f.machine.step() }
    }

    /// DR7 bits enabling breakpoint `n` locally with R/W `rw` and LEN `len` (encodings).
    func enable(_ n: Int, rw: UInt64, len: UInt64) -> UInt64 {
        (1 << (2 * UInt64(n))) | (rw << (16 + 4 * UInt64(n))) | (len << (18 + 4 * UInt64(n)))
    }

    // MARK: MOV DR

    @Test func dr6AndDR7ReadBackWithTheirFixedBits() {
        // mov dr6, rax; mov rcx, dr6; mov dr7, rax; mov rdx, dr7
        let f = machine([0x0f, 0x23, 0xf0, 0x0f, 0x21, 0xf1, 0x0f, 0x23, 0xf8, 0x0f, 0x21, 0xfa])
        f.cpu.gpr[X86CPU.rax] = 0xffff_dfff  // all but GD, which would make the next MOV DR fault
        steps(f, 4)
        #expect(f.cpu.gpr[X86CPU.rcx] == 0xffff_cfff, "bit 12 of DR6 reads as 0, bits 4-11 and 16-31 as 1")
        #expect(f.cpu.gpr[X86CPU.rdx] == 0xffff_07ff, "bits 11, 12, 14, 15 of DR7 read as 0, bit 10 as 1")
        f.cpu.gpr[X86CPU.rax] = 0
        f.cpu.rip = SysLayout.code
        steps(f, 4)
        #expect(f.cpu.gpr[X86CPU.rcx] == 0xffff_0ff0)
        #expect(f.cpu.gpr[X86CPU.rdx] == 0x400)
    }

    @Test func dr7BitsAbove31AreAGeneralProtectionFault() {
        let f = machine([0x0f, 0x23, 0xf8])  // mov dr7, rax
        f.gate(13, handler: Self.otherHandler)
        f.cpu.gpr[X86CPU.rax] = 1 << 32
        steps(f, 1)
        #expect(f.cpu.rip == Self.otherHandler)
        #expect(f.cpu.dr[7] == 0x400)
    }

    @Test func generalDetectMakesAnyDebugRegisterAccessADebugFault() {
        let f = machine([0x0f, 0x21, 0xc0])  // mov rax, dr0
        f.cpu.dr[7] = Self.dr7Fixed | Self.dr7GD
        f.cpu.dr[0] = 0x1234
        steps(f, 1)
        #expect(f.cpu.rip == Self.debugHandler, "#DB, not the move")
        #expect(f.cpu.gpr[X86CPU.rax] == 0)
        #expect(f.cpu.dr[6] & Self.dr6BD != 0)
        #expect(f.cpu.dr[7] & Self.dr7GD == 0, "cleared for the handler")
        #expect(frame(f).rip == SysLayout.code, "a fault: RIP of the MOV")
        #expect(frame(f).rflags & Self.flagRF != 0, "a fault pushes RF = 1")
    }

    // MARK: Instruction breakpoints and RF

    @Test func instructionBreakpointFaultsOnceAndRFResumesOverIt() {
        // nop; inc rax; jmp -5 (to inc rax)
        let f = machine([0x90, 0x48, 0xff, 0xc0, 0xeb, 0xfb])
        // Handler: or qword [rsp+16], 0x10000 (RF in the image); iretq
        f.bus.bytes(Self.debugHandler, [0x48, 0x81, 0x4c, 0x24, 0x10, 0x00, 0x00, 0x01, 0x00, 0x48, 0xcf])
        f.cpu.dr[0] = SysLayout.code + 1
        f.cpu.dr[7] = Self.dr7Fixed | enable(0, rw: 0, len: 0)
        steps(f, 2)  // nop; then #DB before inc
        #expect(f.cpu.rip == Self.debugHandler)
        #expect(f.cpu.gpr[X86CPU.rax] == 0, "a fault: the instruction has not run")
        #expect(f.cpu.dr[6] & 0xf == 1, "B0")
        #expect(frame(f).rip == SysLayout.code + 1)
        #expect(frame(f).rflags & Self.flagRF == 0, "an instruction breakpoint pushes RF as it was")
        steps(f, 2)  // or; iretq
        #expect(f.cpu.rip == SysLayout.code + 1)
        #expect(f.cpu.rflags & Self.flagRF != 0)
        steps(f, 1)
        #expect(f.cpu.gpr[X86CPU.rax] == 1, "RF = 1: the breakpoint does not fire again")
        #expect(f.cpu.rflags & Self.flagRF == 0, "RF is cleared once the instruction completes")
        steps(f, 2)  // jmp; then the breakpoint again
        #expect(f.cpu.rip == Self.debugHandler)
        #expect(f.cpu.gpr[X86CPU.rax] == 1)
    }

    @Test func disabledBreakpointsDoNotFire() {
        let f = machine([0x90, 0x90])
        f.cpu.dr[0] = SysLayout.code
        f.cpu.dr[7] = Self.dr7Fixed | (3 << 16)  // R/W set, L0/G0 clear
        steps(f, 2)
        #expect(f.cpu.rip == SysLayout.code + 2)
    }

    @Test func faultFramesPushRFAndTrapFramesDoNot() {
        let f = machine([0x0f, 0x0b])  // ud2
        steps(f, 1)
        #expect(f.cpu.rip == Self.otherHandler)
        #expect(frame(f).rflags & Self.flagRF != 0, "#UD is a fault")
        #expect(f.cpu.rflags & Self.flagRF == 0, "the handler runs with RF clear")
        let g = machine([0xcc])  // int3
        steps(g, 1)
        #expect(g.cpu.rip == Self.otherHandler)
        #expect(frame(g).rflags & Self.flagRF == 0, "#BP is a trap")
    }

    // MARK: Data and I/O breakpoints

    @Test func writeBreakpointTrapsAfterTheWriteAndIgnoresReads() {
        // mov al, [rbx]; mov [rbx], al; nop
        let f = machine([0x8a, 0x03, 0x88, 0x03, 0x90])
        f.cpu.gpr[X86CPU.rbx] = Self.data + 3
        f.cpu.gpr[X86CPU.rax] = 0x5a
        f.cpu.dr[1] = Self.data
        f.cpu.dr[7] = Self.dr7Fixed | enable(1, rw: 1, len: 3)  // write, 4 bytes
        steps(f, 1)
        #expect(f.cpu.rip == SysLayout.code + 2, "a read does not match a write breakpoint")
        f.cpu.gpr[X86CPU.rax] = 0x5a
        steps(f, 1)
        #expect(f.cpu.rip == Self.debugHandler)
        #expect(frame(f).rip == SysLayout.code + 4, "a trap: RIP after the instruction")
        #expect(f.bus.r32(Self.data) >> 24 == 0x5a, "the write happened")
        #expect(f.cpu.dr[6] & 0xf == 2, "B1")
    }

    @Test func readWriteBreakpointCoversItsAlignedLength() {
        // mov al, [rbx]; mov al, [rbx+8]
        let f = machine([0x8a, 0x03, 0x8a, 0x43, 0x08])
        f.cpu.gpr[X86CPU.rbx] = Self.data
        f.cpu.dr[2] = Self.data + 7  // LEN 8: covers data ... data+7
        f.cpu.dr[7] = Self.dr7Fixed | enable(2, rw: 3, len: 2)
        steps(f, 1)
        #expect(f.cpu.rip == Self.debugHandler)
        #expect(f.cpu.dr[6] & 0xf == 4, "B2")
        f.cpu.rip = SysLayout.code + 2
        f.cpu.dr[6] = Self.dr6Fixed
        steps(f, 1)
        #expect(f.cpu.rip == SysLayout.code + 5, "data+8 is outside the breakpoint")
        #expect(f.cpu.dr[6] == Self.dr6Fixed)
    }

    @Test func repeatedStringStopsAfterTheIterationThatHit() {
        let f = machine([0xf3, 0xaa])  // rep stosb
        f.cpu.gpr[X86CPU.rdi] = Self.data
        f.cpu.gpr[X86CPU.rcx] = 8
        f.cpu.dr[0] = Self.data + 3
        f.cpu.dr[7] = Self.dr7Fixed | enable(0, rw: 1, len: 0)
        steps(f, 1)
        #expect(f.cpu.rip == Self.debugHandler)
        #expect(f.cpu.gpr[X86CPU.rcx] == 4, "four iterations done")
        #expect(frame(f).rip == SysLayout.code, "RIP stays on the unfinished instruction")
        #expect(frame(f).rflags & Self.flagRF != 0, "a trap between iterations pushes RF = 1")
    }

    @Test func ioBreakpointsMatchOnlyWithCR4DE() {
        let f = machine([0xe6, 0x80, 0xe6, 0x80])  // out 0x80, al; out 0x80, al
        f.cpu.dr[3] = 0x80
        f.cpu.dr[7] = Self.dr7Fixed | enable(3, rw: 2, len: 0)
        steps(f, 1)
        #expect(f.cpu.rip == SysLayout.code + 2, "without CR4.DE, R/W = 10 matches nothing")
        f.cpu.cr4 |= X86SystemBits.cr4DE
        steps(f, 1)
        #expect(f.cpu.rip == Self.debugHandler)
        #expect(f.cpu.dr[6] & 0xf == 8, "B3")
        #expect(frame(f).rip == SysLayout.code + 4)
    }

    // MARK: Single step

    @Test func singleStepTrapsAfterTheInstructionWithBS() {
        let f = machine([0x48, 0xff, 0xc0, 0x90])  // inc rax; nop
        f.cpu.rflags |= Self.flagTF
        steps(f, 1)
        #expect(f.cpu.gpr[X86CPU.rax] == 1)
        #expect(f.cpu.rip == Self.debugHandler)
        #expect(frame(f).rip == SysLayout.code + 3)
        #expect(frame(f).rflags & Self.flagTF != 0)
        #expect(f.cpu.dr[6] & Self.dr6BS != 0)
        #expect(f.cpu.rflags & Self.flagTF == 0, "the handler runs with TF clear")
    }

    @Test func popfSettingTFTrapsOnlyAfterTheNextInstruction() {
        // push 0x102; popfq; nop; nop
        let f = machine([0x68, 0x02, 0x01, 0x00, 0x00, 0x9d, 0x90, 0x90])
        steps(f, 2)
        #expect(f.cpu.rip == SysLayout.code + 6, "no trap after the POPF that set TF")
        #expect(f.cpu.rflags & Self.flagTF != 0)
        steps(f, 1)
        #expect(f.cpu.rip == Self.debugHandler)
        #expect(frame(f).rip == SysLayout.code + 7)
    }

    @Test func softwareInterruptClearsTFWithoutATrap() {
        let f = machine([0xcd, 0x30])  // int 0x30
        f.cpu.rflags |= Self.flagTF
        steps(f, 1)
        #expect(f.cpu.rip == Self.otherHandler, "the INT's handler, not #DB")
        #expect(f.cpu.rflags & Self.flagTF == 0)
        #expect(frame(f).rflags & Self.flagTF != 0, "IRET restores TF")
        #expect(f.cpu.dr[6] & Self.dr6BS == 0)
    }

    @Test func debugStatusBitsAreSticky() {
        let f = machine([0x90, 0x90])
        f.cpu.rflags |= Self.flagTF
        f.cpu.dr[6] |= 1  // B0 from an earlier exception, not cleared by software
        steps(f, 1)
        #expect(f.cpu.dr[6] & (Self.dr6BS | 1) == Self.dr6BS | 1)
    }

    @Test func movSSDefersTheSingleStepTrapPastTheNextInstruction() {
        // mov eax, ss (8C D0); mov ss, eax (8E D0); nop; nop
        let f = machine([0x8c, 0xd0, 0x8e, 0xd0, 0x90, 0x90])
        steps(f, 1)
        f.cpu.rflags |= Self.flagTF
        steps(f, 1)
        #expect(f.cpu.rip == SysLayout.code + 4, "no #DB right after MOV SS")
        steps(f, 1)
        #expect(f.cpu.rip == Self.debugHandler)
        #expect(frame(f).rip == SysLayout.code + 5)
    }
}

/// The debug registers are part of the engine-neutral state: what the guest armed and what DR6
/// recorded survive `state()` / `setState()` (snapshots, and the kvm engine's instruction
/// fallback, which runs one instruction on this CPU).
@Suite struct DebugRegisterStateTests {
    @Test func stateCarriesTheDebugRegistersBothWays() throws {
        let (vcpu, _) = try interpVCPU([0x0f, 0x21, 0xf8, 0xf4])  // mov rax, dr7; hlt
        var s = try vcpu.state()
        #expect(s.dr6 == 0xffff_0ff0 && s.dr7 == 0x400, "the values at RESET")
        s.dr0 = 0x1234; s.dr3 = 0x10_0000; s.dr6 = 0x4001; s.dr7 = 0x0003_0002  // G0, R/W0 = 11 at 0x1234: nothing touches it
        try vcpu.setState(s)
        let back = try vcpu.state()
        #expect(back.dr0 == 0x1234 && back.dr3 == 0x10_0000)
        #expect(back.dr6 == 0xffff_4ff1, "DR6 with its fixed bits")
        #expect(back.dr7 == 0x0003_0402, "DR7 with bit 10")
        #expect(try vcpu.run() == .halt)
        #expect(try vcpu.state().rax == 0x0003_0402, "the guest reads what was set")
    }
}
