// Exception and interrupt delivery: gates, frames, privilege changes, IST, #NP, #DF, triple
// fault, external interrupts and the interrupt shadow, 32-bit and real-mode delivery, IRET.

import Testing
import VisorCore
@testable import VisorX86
import VisorX86Decode

@Suite struct ExceptionTests {
    @Test func interruptGateFrameAndIF() {
        let s = SysMachine.longMode()
        s.gate(13, handler: 0x10_4000)
        s.cpu.rflags = 0x202 | X86SystemBits.flagTF
        s.cpu.gpr[X86CPU.rsp] = 0x8_0008  // not 16-byte aligned: the frame is aligned
        #expect(s.machine.raise(.gp(0x18)))
        #expect(s.cpu.rip == 0x10_4000)
        #expect(s.cpu.rflags & X86SystemBits.flagIF == 0, "interrupt gate clears IF")
        #expect(s.cpu.rflags & X86SystemBits.flagTF == 0)
        let top: UInt64 = 0x8_0000
        #expect(s.bus.r64(top - 8) == UInt64(SysLayout.kernelData), "SS")
        #expect(s.bus.r64(top - 16) == 0x8_0008, "RSP")
        #expect(s.bus.r64(top - 24) == 0x202 | X86SystemBits.flagTF | X86SystemBits.flagRF, "RFLAGS, RF = 1 for a fault")
        #expect(s.bus.r64(top - 32) == UInt64(SysLayout.kernelCode), "CS")
        #expect(s.bus.r64(top - 40) == SysLayout.code, "RIP")
        #expect(s.bus.r64(top - 48) == 0x18, "error code")
        #expect(s.cpu.gpr[X86CPU.rsp] == top - 48)
    }

    @Test func trapGateKeepsIF() {
        let s = SysMachine.longMode()
        s.gate(3, handler: 0x10_4000, type: 0xf, dpl: 3)
        s.cpu.rflags = 0x202
        #expect(s.machine.raise(X86Fault(vector: 3)))
        #expect(s.cpu.rflags & X86SystemBits.flagIF != 0)
        #expect(s.cpu.gpr[X86CPU.rsp] == 0x8_0000 - 40, "no error code for #BP")
    }

    @Test func privilegeChangeLoadsRSP0AndNullSS() {
        let s = SysMachine.longMode()
        s.gate(14, handler: 0x10_4000)
        s.enterUser()
        s.cpu.gpr[X86CPU.rsp] = 0x9_1234
        #expect(s.machine.raise(.pf(4, address: 0x1234)))
        #expect(s.cpu.cpl == 0)
        #expect(s.cpu.segments[X86CPU.cs].selector == SysLayout.kernelCode)
        #expect(s.cpu.segments[X86CPU.ss].selector == 0, "SS = null selector with RPL 0")
        #expect(s.cpu.gpr[X86CPU.rsp] == 0x7_0000 - 48)
        #expect(s.bus.r64(0x7_0000 - 8) == UInt64(SysLayout.userData | 3), "old SS")
        #expect(s.bus.r64(0x7_0000 - 16) == 0x9_1234, "old RSP")
        #expect(s.bus.r64(0x7_0000 - 32) == UInt64(SysLayout.userCode | 3), "old CS")
        #expect(s.cpu.cr2 == 0x1234)
    }

    @Test func interruptStackTable() {
        let s = SysMachine.longMode()
        s.gate(8, handler: 0x10_4000, ist: 1)
        #expect(s.machine.raise(X86Fault(vector: 8, errorCode: 0)))
        #expect(s.cpu.gpr[X86CPU.rsp] == 0x6_0000 - 48, "IST1 even without a privilege change")
    }

    @Test func notPresentGateRaisesNPWithTheIDTSelector() {
        let s = SysMachine.longMode()
        s.gate(6, handler: 0x10_4000, present: false)
        s.gate(11, handler: 0x10_5000)
        #expect(s.machine.raise(.undefined))
        #expect(s.cpu.rip == 0x10_5000)
        #expect(s.bus.r64(0x8_0000 - 48) == 6 * 8 + 2 + 1, "IDT bit and EXT")
    }

    @Test func softwareInterruptChecksGateDPL() throws {
        let s = SysMachine.longMode()
        s.gate(0x80, handler: 0x10_4000)  // DPL 0
        s.gate(13, handler: 0x10_5000)
        s.enterUser()
        let int80 = sysInsn(.int, length: 2, immediate: 0x80)
        #expect(s.fault { try s.machine.execute(int80) } == .gp(0x80 * 8 + 2))
        s.gate(0x80, handler: 0x10_4000, dpl: 3)
        try s.machine.execute(int80)
        #expect(s.cpu.rip == 0x10_4000)
        #expect(s.bus.r64(0x7_0000 - 40) == SysLayout.code + 2, "INT pushes the next RIP")
    }

    @Test func contributoryDuringContributoryIsDoubleFault() {
        let s = SysMachine.longMode()
        s.gate(13, handler: 0x10_4000, present: false)  // #GP → #NP → #DF
        s.gate(8, handler: 0x10_6000)
        #expect(s.machine.raise(.gp(0)))
        #expect(s.cpu.rip == 0x10_6000)
        #expect(s.bus.r64(0x8_0000 - 48) == 0, "#DF error code is 0")
    }

    @Test func pageFaultDuringPageFaultDeliveryIsDoubleFault() {
        let s = SysMachine.longMode()
        s.gate(14, handler: 0x10_4000)
        s.gate(8, handler: 0x10_6000, ist: 1)
        s.cpu.gpr[X86CPU.rsp] = 0x80_0000_1000  // unmapped stack: pushing the #PF frame faults
        #expect(s.machine.raise(.pf(0, address: 0x5000_0000)))
        #expect(s.cpu.rip == 0x10_6000)
    }

    @Test func benignThenFaultIsDeliveredSerially() {
        let s = SysMachine.longMode()
        s.gate(6, handler: 0x10_4000, selector: 0x38)  // an all-zero descriptor: #GP(0x38 + EXT)
        s.gate(13, handler: 0x10_5000)
        #expect(s.machine.raise(.undefined))
        #expect(s.cpu.rip == 0x10_5000)
        #expect(s.bus.r64(0x8_0000 - 48) == 0x39, "#GP(selector | EXT)")
    }

    @Test func tripleFaultShutsDown() {
        let s = SysMachine.longMode()
        s.cpu.idtr.limit = 0
        #expect(!s.machine.raise(.gp(0)))
        #expect(s.machine.isShutdown)
        #expect(s.machine.run(budget: 10) == .shutdown)
    }

    @Test func externalInterruptWaitsForIFAndTheShadow() {
        let s = SysMachine.longMode(decode: sysTinyDecoder)
        s.gate(0x20, handler: 0x10_4000)
        s.bus.bytes(SysLayout.code, [0x90, 0xfb, 0x90, 0x90])  // nop; sti; nop; nop
        s.bus.bytes(0x10_4000, [0x90, 0x90])
        s.cpu.rflags = 2
        #expect(s.machine.injectInterrupt(vector: 0x20))
        #expect(!s.machine.injectInterrupt(vector: 0x21), "one pending at a time")
        #expect(s.machine.step() == nil)  // nop: IF = 0, not delivered
        #expect(s.cpu.rip == SysLayout.code + 1)
        #expect(s.machine.step() == nil)  // sti
        #expect(s.machine.step() == nil)  // shadow: the nop after STI runs first
        #expect(s.cpu.rip == SysLayout.code + 3)
        #expect(s.machine.pendingInterrupt == 0x20)
        #expect(s.machine.step() == nil)  // delivered, then the handler's first nop
        #expect(s.machine.pendingInterrupt == nil)
        #expect(s.cpu.rip == 0x10_4001)
        #expect(s.bus.r64(0x8_0000 - 40) == SysLayout.code + 3, "interrupted RIP")
    }

    @Test func interruptWakesHalt() {
        let s = SysMachine.longMode(decode: sysTinyDecoder)
        s.gate(0x21, handler: 0x10_4000)
        s.bus.bytes(SysLayout.code, [0xf4])
        s.bus.bytes(0x10_4000, [0xf4])
        s.cpu.rflags = 0x202
        #expect(s.machine.run(budget: 10) == .halted)
        #expect(s.machine.run(budget: 10) == .halted, "stays halted without an interrupt")
        s.machine.injectInterrupt(vector: 0x21)
        #expect(s.machine.run(budget: 10) == .halted)
        #expect(s.cpu.rip == 0x10_4001, "woke, ran the handler's HLT")
    }

    @Test func protectedModeDeliveryWithStackSwitch() {
        let p = SysBus()
        let m = X86Machine(bus: p)
        let c = m.cpu
        p.w64(0x1000 + 0x08, sysDescriptor(type: 0xb, d: true))
        p.w64(0x1000 + 0x10, sysDescriptor(type: 0x3, d: true))
        p.w64(0x1000 + 0x18, sysDescriptor(type: 0xb, dpl: 3, d: true))
        p.w64(0x1000 + 0x20, sysDescriptor(type: 0x3, dpl: 3, d: true))
        // 32-bit TSS: ESP0 = 0x7000, SS0 = 0x10.
        p.w32(0x3000 + 4, 0x7000)
        p.w16(0x3000 + 8, 0x10)
        // 32-bit interrupt gate for vector 13 at 0x4000.
        p.w64(0x2000 + 13 * 8, 0x4000 | (0x08 << 16) | (UInt64(0x8e) << 40))
        c.cr0 = X86SystemBits.cr0PE | X86SystemBits.cr0ET
        c.gdtr = DescriptorTableRegister(base: 0x1000, limit: 0x27)
        c.idtr = DescriptorTableRegister(base: 0x2000, limit: 0x7ff)
        c.tr = SegmentRegister(selector: 0x28, base: 0x3000, limit: 0x67, type: 0xb, isCodeOrData: false)
        c.segments[X86CPU.cs] = SegmentRegister(selector: 0x1b, limit: 0xffff_ffff, type: 0xb, dpl: 3, defaultSize32: true)
        c.segments[X86CPU.ss] = SegmentRegister(selector: 0x23, limit: 0xffff_ffff, type: 0x3, dpl: 3, defaultSize32: true)
        c.cpl = 3
        c.rip = 0x5000
        c.rflags = 0x202
        c.gpr[X86CPU.rsp] = 0x9000
        #expect(m.raise(.gp(0)))
        #expect(c.cpl == 0)
        #expect(c.rip == 0x4000)
        #expect(c.segments[X86CPU.ss].selector == 0x10)
        #expect(c.gpr[X86CPU.rsp] == 0x7000 - 24)
        #expect(p.r32(0x7000 - 4) == 0x23, "old SS")
        #expect(p.r32(0x7000 - 8) == 0x9000, "old ESP")
        #expect(p.r32(0x7000 - 16) == 0x1b, "old CS")
        #expect(p.r32(0x7000 - 20) == 0x5000, "old EIP")
        #expect(c.rflags & X86SystemBits.flagIF == 0)
    }

    @Test func realModeDeliveryThroughTheIVT() throws {
        let p = SysBus()
        let m = X86Machine(bus: p)
        let c = m.cpu
        c.cr0 = X86SystemBits.cr0ET
        c.segments[X86CPU.cs] = SegmentRegister(selector: 0x1000, base: 0x10000, type: 0xb)
        c.segments[X86CPU.ss] = SegmentRegister(selector: 0, base: 0)
        c.idtr = DescriptorTableRegister(base: 0, limit: 0x3ff)
        c.rip = 0x100
        c.gpr[X86CPU.rsp] = 0x8000
        c.rflags = 0x202
        p.w16(0x21 * 4, 0x0050)
        p.w16(0x21 * 4 + 2, 0x2000)
        try m.execute(sysInsn(.int, length: 2, operandSize: 2, immediate: 0x21))
        #expect(c.segments[X86CPU.cs].base == 0x20000)
        #expect(c.rip == 0x50)
        #expect(p.r16(0x8000 - 2) == 0x202)
        #expect(p.r16(0x8000 - 4) == 0x1000)
        #expect(p.r16(0x8000 - 6) == 0x102)
        try m.execute(sysInsn(.iret, length: 1, operandSize: 2))
        #expect(c.rip == 0x102 && c.segments[X86CPU.cs].base == 0x10000 && c.gpr[X86CPU.rsp] == 0x8000)
    }

    @Test func iretqReturnsToUserMode() throws {
        let s = SysMachine.longMode()
        s.gate(0x80, handler: 0x10_4000, dpl: 3)
        s.enterUser()
        s.cpu.gpr[X86CPU.rsp] = 0x9_0000
        s.cpu.rflags = 0x202
        try s.machine.execute(sysInsn(.int, length: 2, immediate: 0x80))
        #expect(s.cpu.cpl == 0)
        try s.machine.execute(sysInsn(.iret, length: 2, operandSize: 8))
        #expect(s.cpu.cpl == 3)
        #expect(s.cpu.rip == SysLayout.code + 2)
        #expect(s.cpu.gpr[X86CPU.rsp] == 0x9_0000)
        #expect(s.cpu.segments[X86CPU.ss].selector == SysLayout.userData | 3)
        #expect(s.cpu.rflags & X86SystemBits.flagIF != 0)
        // A user IRET cannot raise IOPL.
        s.cpu.gpr[X86CPU.rsp] = 0x9_0000 - 40
        for (i, v) in [SysLayout.code, UInt64(SysLayout.userCode | 3), 0x3202, 0x9_0000, UInt64(SysLayout.userData | 3)].enumerated() {
            s.bus.w64(0x9_0000 - 40 + UInt64(i) * 8, v)
        }
        try s.machine.execute(sysInsn(.iret, length: 2, operandSize: 8))
        #expect(s.cpu.rflags & X86SystemBits.flagIOPL == 0)
    }
}
