// The MSRs kernels read at boot and the counters beside them, on the software CPU: the TSC and
// IA32_TSC_ADJUST moving together, IA32_MISC_ENABLE's writable and read-only bits, the
// machine-check architecture with no banks, RDPMC with no counters offered, and RDTSCP with
// IA32_TSC_AUX. Each checks what the CPUID table the CPU answers with offers.

import Testing
import VisorCore
@testable import VisorX86
import VisorX86Decode

extension SysMachine {
    func writeMSR(_ index: UInt32, _ value: UInt64) throws {
        cpu.gpr[1] = UInt64(index); cpu.gpr[0] = value & 0xffff_ffff; cpu.gpr[2] = value >> 32
        try machine.execute(sysInsn(.wrmsr))
    }

    func readMSR(_ index: UInt32) throws -> UInt64 {
        cpu.gpr[1] = UInt64(index)
        try machine.execute(sysInsn(.rdmsr))
        return cpu.gpr[2] << 32 | cpu.gpr[0]
    }

    func readTSC() throws -> UInt64 {
        try machine.execute(sysInsn(.rdtsc))
        return cpu.gpr[2] << 32 | cpu.gpr[0]
    }

    func cpuid(_ function: UInt32, _ index: UInt32 = 0) -> CPUIDEntry {
        bus.cpuid(function: function, index: index)
    }
}

@Suite struct ModelSpecificRegisterTests {
    @Test("a TSC write moves IA32_TSC_ADJUST by the same amount, and an IA32_TSC_ADJUST write moves the TSC")
    func timeStampCounterAdjust() throws {
        let s = SysMachine.longMode()
        #expect(s.cpuid(7).ebx & (1 << 1) != 0, "CPUID offers IA32_TSC_ADJUST")
        s.bus.tsc = 1000
        #expect(try s.readMSR(X86SystemBits.msrTSCAdjust) == 0, "0 at reset")
        try s.writeMSR(X86SystemBits.msrTSC, 5000)
        #expect(try s.readMSR(X86SystemBits.msrTSCAdjust) == 4000)
        s.bus.tsc += 7
        #expect(try s.readTSC() == 5007)
        // Back 10000 (through zero): both wrap as 64-bit values.
        try s.writeMSR(X86SystemBits.msrTSCAdjust, 4000 &- 10000)
        #expect(try s.readTSC() == 5007 &- 10000)
        #expect(try s.readMSR(X86SystemBits.msrTSC) == 5007 &- 10000)
        try s.writeMSR(X86SystemBits.msrTSCAdjust, 0)
        #expect(try s.readTSC() == 1007, "adjust 0: the platform's count again")
        // A second TSC write adds to the adjust rather than replacing it.
        try s.writeMSR(X86SystemBits.msrTSC, 2007)
        try s.writeMSR(X86SystemBits.msrTSC, 3007)
        #expect(try s.readMSR(X86SystemBits.msrTSCAdjust) == 2000)
    }

    @Test("IA32_MISC_ENABLE reads back its writable bits and refuses to change the others")
    func miscEnable() throws {
        let s = SysMachine.longMode()
        let reset = try s.readMSR(X86SystemBits.msrMiscEnable)
        #expect(reset == X86SystemBits.miscEnableReset)
        #expect(reset & (1 << 7) == 0, "performance monitoring not available: leaf 0xA offers none")
        #expect(s.cpuid(0xa).eax & 0xff == 0)
        try s.writeMSR(X86SystemBits.msrMiscEnable, reset)
        try s.writeMSR(X86SystemBits.msrMiscEnable, reset & ~X86SystemBits.miscEnableFastStrings)
        #expect(try s.readMSR(X86SystemBits.msrMiscEnable) == reset & ~X86SystemBits.miscEnableFastStrings)
        try s.writeMSR(X86SystemBits.msrMiscEnable, reset | X86SystemBits.miscEnableThermalControl)
        #expect(try s.readMSR(X86SystemBits.msrMiscEnable) == reset | X86SystemBits.miscEnableThermalControl)
        for bit: UInt64 in [7, 11, 12, 18, 22, 34, 63] {
            let before = try s.readMSR(X86SystemBits.msrMiscEnable)
            #expect(s.fault { try s.writeMSR(X86SystemBits.msrMiscEnable, before ^ (1 << bit)) } == .gp(0),
                    "bit \(bit) is read-only or reserved")
            #expect(try s.readMSR(X86SystemBits.msrMiscEnable) == before)
        }
    }

    @Test("machine check with no banks: MCG_CAP reads 0 and is read-only, MCG_STATUS holds its three bits")
    func machineCheckWithoutBanks() throws {
        let s = SysMachine.longMode()
        let edx = s.cpuid(1).edx
        #expect(edx & (1 << 7) != 0 && edx & (1 << 14) != 0, "CPUID offers MCE and MCA")
        #expect(try s.readMSR(X86SystemBits.msrMCGCap) == 0, "bank count 0, no MCG_CTL")
        #expect(s.fault { try s.writeMSR(X86SystemBits.msrMCGCap, 0) } == .gp(0))
        #expect(try s.readMSR(X86SystemBits.msrMCGStatus) == 0)
        try s.writeMSR(X86SystemBits.msrMCGStatus, 0x5)
        #expect(try s.readMSR(X86SystemBits.msrMCGStatus) == 0x5)
        try s.writeMSR(X86SystemBits.msrMCGStatus, 0)
        #expect(s.fault { try s.writeMSR(X86SystemBits.msrMCGStatus, 1 << 3) } == .gp(0), "LMCE_S: no LMCE")
        #expect(s.fault { _ = try s.readMSR(0x17b) } == .gp(0), "no IA32_MCG_CTL (MCG_CAP bit 8 is clear)")
        #expect(s.fault { _ = try s.readMSR(0x400) } == .gp(0), "no bank 0")
        #expect(s.fault { _ = try s.readMSR(0x401) } == .gp(0), "no IA32_MC0_STATUS")
        // CR4.MCE, which CPUID's MCE bit promises, can be set.
        s.cpu.gpr[0] = s.cpu.cr4 | X86SystemBits.cr4MCE
        try s.machine.execute(sysInsn(.movControl, Operand(.control, index: 4, size: 8), .register(0, size: 8),
                                      length: 3, operandSize: 4))
        #expect(s.cpu.cr4 & X86SystemBits.cr4MCE != 0)
    }

    @Test("RDPMC with no counters offered raises #GP(0) for every counter, at CPL0 and CPL3 with CR4.PCE")
    func performanceCountersNotOffered() throws {
        let s = SysMachine.longMode()
        #expect(s.cpuid(0xa).eax == 0, "leaf 0xA: no architectural PMU")
        for counter: UInt64 in [0, 1, 0x4000_0000, 0xffff_ffff] {
            s.cpu.gpr[1] = counter
            #expect(s.fault { try s.machine.execute(sysInsn(.rdpmc)) } == .gp(0), "counter \(counter) at CPL0")
        }
        s.cpu.cr4 |= X86SystemBits.cr4PCE
        s.enterUser()
        s.cpu.gpr[1] = 0
        #expect(s.fault { try s.machine.execute(sysInsn(.rdpmc)) } == .gp(0), "CPL3 with CR4.PCE")
        s.cpu.cr4 &= ~X86SystemBits.cr4PCE
        #expect(s.fault { try s.machine.execute(sysInsn(.rdpmc)) } == .gp(0), "CPL3 without CR4.PCE")
    }

    @Test("RDTSCP, offered in CPUID, reads the TSC and IA32_TSC_AUX's low half into ECX, at CPL0 and CPL3")
    func rdtscpReadsTSCAux() throws {
        let s = SysMachine.longMode()
        #expect(s.cpuid(0x8000_0001).edx & (1 << 27) != 0, "CPUID offers RDTSCP")
        try s.writeMSR(X86SystemBits.msrTSCAux, 0x8765_4321)
        #expect(try s.readMSR(X86SystemBits.msrTSCAux) == 0x8765_4321)
        #expect(s.fault { try s.writeMSR(X86SystemBits.msrTSCAux, 1 << 32) } == .gp(0), "bits 63:32 are reserved")
        s.bus.tsc = 0x1_2345_6789
        s.cpu.gpr[1] = 0xdead_beef_dead_beef
        try s.machine.execute(sysInsn(.rdtscp, length: 3))
        #expect(s.cpu.gpr[0] == 0x2345_6789 && s.cpu.gpr[2] == 1 && s.cpu.gpr[1] == 0x8765_4321,
                "EDX:EAX the TSC, ECX the aux value with RCX's upper half cleared")
        s.enterUser()
        s.cpu.gpr[1] = 0
        try s.machine.execute(sysInsn(.rdtscp, length: 3))
        #expect(s.cpu.gpr[1] == 0x8765_4321, "at CPL3 with CR4.TSD clear")
        s.cpu.cr4 |= X86SystemBits.cr4TSD
        #expect(s.fault { try s.machine.execute(sysInsn(.rdtscp, length: 3)) } == .gp(0), "CR4.TSD at CPL3")
    }
}
