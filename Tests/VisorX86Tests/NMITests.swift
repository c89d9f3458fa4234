// The `interp` engine's NMI input (`VirtualCPU.injectNMI`): delivery through vector 2 whatever IF
// says, waking a halted CPU, blocking from delivery until the next IRET with one NMI held
// pending and any more collapsing into it (SDM Vol. 3A 6.7.1); and the CPUID APIC bit following
// IA32_APIC_BASE's enable bit (SDM Vol. 3A 11.4.3).

import Testing
import VisorCore
@testable import VisorX86

@Suite struct NMITests {
    /// Port writes by `out imm8, al`: main and handler mark where they are with them.
    static func out(_ port: UInt8) -> [UInt8] { [0xe6, port] }
    static let iretq: [UInt8] = [0x48, 0xcf], hlt: [UInt8] = [0xf4]

    func mark(_ port: UInt16) -> Exit { .portWrite(port: port, size: 1, value: 0) }

    @Test func anNMIIsDeliveredThroughVector2WithIFClear() throws {
        let (cpu, f) = try interpVCPU(Self.out(0x81) + Self.hlt)
        f.gate(2, handler: SysLayout.code + 0x100)
        f.bus.bytes(SysLayout.code + 0x100, Self.out(0x80) + Self.iretq)
        #expect(try cpu.state().rflags & X86SystemBits.flagIF == 0)
        #expect(!cpu.interruptWindowOpen)
        try cpu.injectNMI()
        #expect(try cpu.run() == mark(0x80), "the handler runs before main's first instruction")
        #expect(cpu.machine.nmiBlocked)
        #expect(try cpu.run() == mark(0x81), "IRETQ returned to main")
        #expect(!cpu.machine.nmiBlocked, "IRET unblocked NMIs")
        #expect(try cpu.run() == .halt)
    }

    @Test func anNMIWakesACPUHaltedWithIFClear() throws {
        let (cpu, f) = try interpVCPU(Self.hlt + Self.out(0x81) + Self.hlt)
        f.gate(2, handler: SysLayout.code + 0x100)
        f.bus.bytes(SysLayout.code + 0x100, Self.out(0x80) + Self.iretq)
        #expect(try cpu.run() == .halt)
        try cpu.injectNMI()
        #expect(try cpu.run() == mark(0x80))
        #expect(try cpu.run() == mark(0x81), "the NMI returned past the HLT")
        #expect(try cpu.run() == .halt)
    }

    @Test func nmisAreBlockedUntilIRETWithOneHeldPendingAndTheRestCollapsed() throws {
        // main: out 0x81; hlt      handler: out 0x80; out 0x82; iretq
        let (cpu, f) = try interpVCPU(Self.out(0x81) + Self.hlt)
        f.gate(2, handler: SysLayout.code + 0x100)
        f.bus.bytes(SysLayout.code + 0x100, Self.out(0x80) + Self.out(0x82) + Self.iretq)
        try cpu.injectNMI()
        #expect(try cpu.run() == mark(0x80))
        try cpu.injectNMI()  // held: NMIs are blocked in the handler
        try cpu.injectNMI()  // collapses into the held one
        #expect(cpu.machine.nmiPending)
        #expect(try cpu.run() == mark(0x82), "not nested: the handler went on")
        #expect(try cpu.run() == mark(0x80), "after IRETQ the held NMI is taken before main runs")
        #expect(try cpu.run() == mark(0x82))
        #expect(try cpu.run() == mark(0x81), "only one was held: main runs")
        #expect(try cpu.run() == .halt)
        #expect(!cpu.machine.nmiPending && !cpu.machine.nmiBlocked)
    }

    @Test func anNMIGoesBeforeAMaskableInterruptAndNeedsNoWindow() throws {
        let (cpu, f) = try interpVCPU(Self.out(0x81) + Self.hlt)
        f.gate(2, handler: SysLayout.code + 0x100)
        f.gate(0x30, handler: SysLayout.code + 0x200)
        f.bus.bytes(SysLayout.code + 0x100, Self.out(0x80) + Self.iretq)
        f.bus.bytes(SysLayout.code + 0x200, Self.out(0x90) + Self.iretq)
        var s = try cpu.state()
        s.rflags |= X86SystemBits.flagIF
        try cpu.setState(s)
        try cpu.injectInterrupt(vector: 0x30)
        try cpu.injectNMI()
        #expect(try cpu.run() == mark(0x80), "the NMI first")
        #expect(try cpu.run() == mark(0x90), "IRETQ restored IF: the maskable interrupt next")
        #expect(try cpu.run() == mark(0x81))
    }

    @Test func cpuidReportsTheAPICOnlyWhileIA32APICBaseEnablesIt() throws {
        // mov eax, 1; cpuid; hlt
        let (cpu, _) = try interpVCPU([0xb8, 0x01, 0x00, 0x00, 0x00, 0x0f, 0xa2] + Self.hlt + [0xb8, 0x01, 0x00, 0x00, 0x00, 0x0f, 0xa2] + Self.hlt)
        let apicBit: UInt64 = 1 << 9
        #expect(try cpu.localAPICEnabled())
        try cpu.machine.writeModelSpecificRegister(0x1b, 0xfee0_0100)  // enable bit clear
        #expect(try !cpu.localAPICEnabled())
        #expect(try cpu.run() == .halt)
        #expect(try cpu.state().rdx & apicBit == 0, "CPUID.1:EDX.APIC clear while the APIC is disabled")
        try cpu.machine.writeModelSpecificRegister(0x1b, 0xfee0_0900)
        #expect(try cpu.localAPICEnabled())
        #expect(try cpu.run() == .halt)
        #expect(try cpu.state().rdx & apicBit != 0, "and set again once it is enabled")
    }
}
