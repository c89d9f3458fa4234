// The `interp` engine's side of Visor's interrupt contract (`VirtualCPU` in VisorCore): window
// exits and the STI / MOV SS shadows, injection into running and halted CPUs through the IDT and
// the IVT, the platform MSRs handed to Visor as exits, IA32_APIC_BASE per vCPU, the TSC counting
// the domain clock, and the CPUID leaves that describe the APIC and the timers.

import Synchronization
import Testing
import VisorCore
@testable import VisorX86
import VisorX86Decode

/// A domain clock the test sets by hand.
final class ManualClock: VirtualClock {
    private let now = Atomic<UInt64>(0)
    var nanoseconds: UInt64 { now.load(ordering: .relaxed) }
    func set(_ value: UInt64) { now.store(value, ordering: .relaxed) }
}

/// A vCPU of a fresh interp machine over the long-mode fixture, with `code` at 0x10_0000.
func interpVCPU(_ code: [UInt8], index: Int = 0, options: MachineOptions = MachineOptions(vcpuCount: 1),
                prepare: (SysMachine) -> Void = { _ in }) throws -> (InterpVirtualCPU, SysMachine) {
    let f = SysMachine.longMode()
    f.bus.bytes(SysLayout.code, code)
    prepare(f)
    let vm = try InterpEngine().makeMachine(memory: f.bus.memory, options: options)
    let cpu = try #require(try vm.makeVCPU(index: index) as? InterpVirtualCPU)
    try cpu.setState(f.cpu.state)
    return (cpu, f)
}

@Suite struct InterruptWindowTests {
    static let flagIF = X86SystemBits.flagIF

    func withIF(_ cpu: InterpVirtualCPU, _ on: Bool) throws {
        var s = try cpu.state()
        s.rflags = on ? s.rflags | Self.flagIF : s.rflags & ~Self.flagIF
        try cpu.setState(s)
    }

    @Test func windowExitAtEntryWhenAlreadyOpen() throws {
        let (cpu, _) = try interpVCPU([0x90, 0xf4])  // nop; hlt
        try withIF(cpu, true)
        #expect(cpu.interruptWindowOpen)
        cpu.requestInterruptWindow(true)
        #expect(try cpu.run() == .interruptWindow)
        #expect(try cpu.state().rip == SysLayout.code, "nothing ran")
        #expect(try cpu.run() == .interruptWindow, "the request stays until withdrawn, as on kvm")
        cpu.requestInterruptWindow(false)
        #expect(try cpu.run() == .halt)
    }

    @Test func noWindowExitWhileIFIsClear() throws {
        let (cpu, _) = try interpVCPU([0x90, 0x90, 0xf4])  // nop; nop; hlt
        try withIF(cpu, false)
        #expect(!cpu.interruptWindowOpen)
        cpu.requestInterruptWindow(true)
        #expect(try cpu.run() == .halt)
        #expect(throws: InterruptWindowClosed.self) { try cpu.injectInterrupt(vector: 0x20) }
    }

    @Test func windowOpensOnlyAfterTheInstructionInTheSTIShadow() throws {
        let (cpu, _) = try interpVCPU([0xfb, 0x90, 0xf4])  // sti; nop; hlt
        try withIF(cpu, false)
        #expect(cpu.run(budget: 1) == .stopped)
        #expect(try cpu.state().rflags & Self.flagIF != 0)
        #expect(!cpu.interruptWindowOpen, "IF is set but the next instruction is in the STI shadow")
        #expect(throws: InterruptWindowClosed.self) { try cpu.injectInterrupt(vector: 0x20) }
        cpu.requestInterruptWindow(true)
        #expect(try cpu.run() == .interruptWindow)
        #expect(try cpu.state().rip == SysLayout.code + 2, "the NOP in the shadow ran; the window is before HLT")
        #expect(cpu.interruptWindowOpen)
    }

    @Test func windowOpensOnlyAfterTheInstructionInTheMovSSShadow() throws {
        let (cpu, _) = try interpVCPU([0x8e, 0xd0, 0x90, 0xf4])  // mov ss, ax; nop; hlt
        var s = try cpu.state()
        s.rax = UInt64(SysLayout.kernelData)
        s.rflags |= Self.flagIF
        try cpu.setState(s)
        #expect(cpu.run(budget: 1) == .stopped)
        #expect(!cpu.interruptWindowOpen, "IF = 1, but MOV SS inhibits interrupts for one instruction")
        cpu.requestInterruptWindow(true)
        #expect(try cpu.run() == .interruptWindow)
        #expect(try cpu.state().rip == SysLayout.code + 3)
    }

    @Test func noWindowExitWhileAnInjectedInterruptWaits() throws {
        let (cpu, f) = try interpVCPU([0x90, 0xf4])
        f.gate(0x20, handler: SysLayout.code + 0x100)
        f.bus.bytes(SysLayout.code + 0x100, [0xf4])  // the handler halts
        try withIF(cpu, true)
        try cpu.injectInterrupt(vector: 0x20)
        #expect(!cpu.interruptWindowOpen, "one interrupt at a time")
        #expect(throws: InterruptWindowClosed.self) { try cpu.injectInterrupt(vector: 0x21) }
        cpu.requestInterruptWindow(true)
        #expect(try cpu.run() == .halt, "delivered, not a window exit; the handler runs with IF = 0")
        #expect(try cpu.state().rip == SysLayout.code + 0x101)
    }

    @Test func injectionWakesAHaltedCPUInLongModeAndIRETReturnsPastTheHLT() throws {
        // main: sti; hlt; out 0x81, al; hlt     handler: out 0x80, al; iretq
        let (cpu, f) = try interpVCPU([0xfb, 0xf4, 0xe6, 0x81, 0xf4])
        f.gate(0x30, handler: SysLayout.code + 0x100)
        f.bus.bytes(SysLayout.code + 0x100, [0xe6, 0x80, 0x48, 0xcf])
        try withIF(cpu, false)
        #expect(try cpu.run() == .halt)
        #expect(try cpu.state().rip == SysLayout.code + 2, "RIP past the HLT")
        #expect(cpu.interruptWindowOpen, "the HLT after STI ran in the shadow; it is over now")
        try cpu.injectInterrupt(vector: 0x30)
        #expect(try cpu.run() == .portWrite(port: 0x80, size: 1, value: 0), "the handler runs first")
        #expect(try cpu.state().rflags & Self.flagIF == 0, "an interrupt gate clears IF")
        #expect(try cpu.run() == .portWrite(port: 0x81, size: 1, value: 0), "IRETQ returned past the HLT")
        #expect(try cpu.run() == .halt)
        #expect(try cpu.state().rsp == SysLayout.stack, "the frame was popped")
    }

    /// Bounds each run in real mode: there a fault goes through the IVT at 0 and, should the
    /// decoder break, would loop forever; with a budget the test fails instead of hanging.
    static let budget = 100_000

    @Test func injectionInRealModeGoesThroughTheIVT() throws {
        let f = SysMachine.longMode()
        // IVT entry 8 → 0000:7100; main at 0000:7000: sti; hlt; out 0x81, al; hlt.
        f.bus.w16(8 * 4, 0x7100)
        f.bus.w16(8 * 4 + 2, 0)
        f.bus.bytes(0x7000, [0xfb, 0xf4, 0xe6, 0x81, 0xf4])
        f.bus.bytes(0x7100, [0xe6, 0x80, 0xcf])  // out 0x80, al; iret
        let vm = try InterpEngine().makeMachine(memory: f.bus.memory, options: MachineOptions())
        let cpu = try #require(try vm.makeVCPU(index: 0) as? InterpVirtualCPU)
        var s = X86State()
        s.cr0 = 0x10
        s.cs = SegmentRegister(selector: 0, base: 0, limit: 0xffff, type: 0xb)
        for r in [\X86State.ds, \.es, \.ss, \.fs, \.gs] { s[keyPath: r] = SegmentRegister() }
        s.idtr = DescriptorTableRegister(base: 0, limit: 0x3ff)
        s.rip = 0x7000
        s.rsp = 0x6000
        s.rflags = 2
        try cpu.setState(s)
        #expect(cpu.run(budget: Self.budget) == .halt)
        try cpu.injectInterrupt(vector: 8)
        #expect(cpu.run(budget: Self.budget) == .portWrite(port: 0x80, size: 1, value: 0))
        let inHandler = try cpu.state()
        #expect(inHandler.rsp == 0x6000 - 6, "FLAGS, CS, IP pushed")
        #expect(f.bus.r16(0x6000 - 6) == 0x7002, "the pushed IP is past the HLT")
        #expect(cpu.run(budget: Self.budget) == .portWrite(port: 0x81, size: 1, value: 0), "IRET returned past the HLT")
        #expect(try cpu.state().rflags & Self.flagIF != 0, "IRET restored IF")
    }
}

@Suite struct PlatformMSRTests {
    @Test func tscDeadlineReadIsAnExitAnsweredLikeAPortRead() throws {
        // mov ecx, 0x6e0; rdmsr; wrmsr; hlt
        let (cpu, _) = try interpVCPU([0xb9, 0xe0, 0x06, 0x00, 0x00, 0x0f, 0x32, 0x0f, 0x30, 0xf4])
        #expect(try cpu.run() == .msrRead(index: PlatformMSR.tscDeadline))
        #expect(try cpu.state().rip == SysLayout.code + 5, "the RDMSR waits for its answer")
        cpu.completeRead(0x1122_3344_5566_7788)
        #expect(try cpu.run() == .msrWrite(index: PlatformMSR.tscDeadline, value: 0x1122_3344_5566_7788),
                "RDMSR took EDX:EAX from the answer and WRMSR wrote it back")
        let s = try cpu.state()
        #expect(s.rax == 0x5566_7788 && s.rdx == 0x1122_3344)
        #expect(s.rip == SysLayout.code + 9, "the write is reported after the WRMSR retired")
        #expect(try cpu.run() == .halt)
    }

    @Test func apicBaseReadsTheDefaultBaseEnabledWithBSPOnlyOnVCPU0() throws {
        // mov ecx, 0x1b; rdmsr; hlt
        let code: [UInt8] = [0xb9, 0x1b, 0x00, 0x00, 0x00, 0x0f, 0x32, 0xf4]
        for (index, expected) in [(0, 0xfee0_0900 as UInt64), (1, 0xfee0_0800), (3, 0xfee0_0800)] {
            let (cpu, _) = try interpVCPU(code, index: index, options: MachineOptions(vcpuCount: 4))
            #expect(try cpu.run() == .halt)
            let s = try cpu.state()
            #expect(s.rdx << 32 | s.rax == expected, "vCPU \(index)")
        }
    }

    @Test func apicBaseKeepsTheBaseAndRefusesToMoveIt() throws {
        let (cpu, _) = try interpVCPU([0xf4], index: 0)
        let m = cpu.machine
        try m.writeModelSpecificRegister(0x1b, 0xfee0_0000)  // software-disable the APIC
        #expect(try m.readModelSpecificRegister(0x1b) == 0xfee0_0100, "enable clear stored; BSP is the CPU's")
        try m.writeModelSpecificRegister(0x1b, 0xfee0_0800)
        #expect(try m.readModelSpecificRegister(0x1b) == 0xfee0_0900)
        for bad: UInt64 in [0xfed0_0800, 0x1_fee0_0800, 0xfee0_0c00, 0xfee0_0801, 0x100_fee0_0800] {
            #expect(sysFault { try m.writeModelSpecificRegister(0x1b, bad) } == .gp(0), "0x\(String(bad, radix: 16))")
        }
        #expect(try m.readModelSpecificRegister(0x1b) == 0xfee0_0900, "refused writes change nothing")
    }

    @Test func otherUnknownMSRsStillRaiseGP() throws {
        let (cpu, _) = try interpVCPU([0xf4])
        #expect(sysFault { _ = try cpu.machine.readModelSpecificRegister(0x6e1) } == .gp(0))
        #expect(sysFault { try cpu.machine.writeModelSpecificRegister(0x6e1, 0) } == .gp(0))
    }
}

@Suite struct TimeStampCounterTests {
    @Test func tscCountsTheDomainClockPlusTheGuestOffset() throws {
        let clock = ManualClock()
        clock.set(5000)
        // rdtsc; hlt; rdtsc; hlt
        let (cpu, _) = try interpVCPU([0x0f, 0x31, 0xf4, 0x0f, 0x31, 0xf4], options: MachineOptions(clock: clock))
        #expect(try cpu.run() == .halt)
        var s = try cpu.state()
        #expect(s.rdx << 32 | s.rax == 5000)
        #expect(try cpu.timeStampCounter() == 5000)
        clock.set(7000)
        #expect(try cpu.timeStampCounter() == 7000, "one tick per nanosecond of the domain clock")
        // WRMSR IA32_TIME_STAMP_COUNTER sets the offset; the clock keeps counting under it.
        try cpu.machine.writeModelSpecificRegister(0x10, 100_000)
        #expect(try cpu.timeStampCounter() == 100_000)
        clock.set(8000)
        #expect(try cpu.timeStampCounter() == 101_000)
        #expect(try cpu.run() == .halt)
        s = try cpu.state()
        #expect(s.rdx << 32 | s.rax == 101_000, "timeStampCounter() is exactly what RDTSC reads")
    }

    @Test func cpuidDescribesTheAPICAndTheTimers() throws {
        // mov eax, 0x40000010; cpuid; hlt; mov eax, 1; cpuid; hlt
        let code: [UInt8] = [0xb8, 0x10, 0x00, 0x00, 0x40, 0x0f, 0xa2, 0xf4, 0xb8, 0x01, 0x00, 0x00, 0x00, 0x0f, 0xa2, 0xf4]
        let (cpu, _) = try interpVCPU(code, index: 2,
                                      options: MachineOptions(vcpuCount: 3, apicTimerFrequency: 25_000_000))
        #expect(try cpu.run() == .halt)
        var s = try cpu.state()
        #expect(s.rax == 1_000_000, "TSC in kHz: 1 GHz")
        #expect(s.rbx == 25_000, "APIC timer in kHz, from MachineOptions")
        #expect(try cpu.run() == .halt)
        s = try cpu.state()
        #expect(s.rdx & UInt64(CPUIDTable.apicBit) != 0)
        #expect(s.rcx & UInt64(CPUIDTable.tscDeadlineBit) != 0)
        #expect(s.rcx & UInt64(CPUIDTable.x2APICBit) == 0)
        #expect(s.rbx >> 24 == 2, "initial APIC ID = vCPU index")
    }
}
