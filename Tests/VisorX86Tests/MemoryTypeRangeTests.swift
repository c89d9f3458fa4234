// The MTRRs and identification MSRs through RDMSR/WRMSR: what they read after reset, what the
// guest may write and read back, and the #GP(0) the SDM gives for reserved bits, invalid memory
// types and read-only registers. RDTSCP and IA32_TSC_AUX too.

import Testing
import VisorCore
@testable import VisorX86
import VisorX86Decode

@Suite("Model-specific registers Linux reads at boot")
struct MemoryTypeRangeTests {
    func wrmsr(_ s: SysMachine, _ index: UInt32, _ value: UInt64) throws {
        s.cpu.gpr[1] = UInt64(index); s.cpu.gpr[0] = value & 0xffff_ffff; s.cpu.gpr[2] = value >> 32
        try s.machine.execute(sysInsn(.wrmsr))
    }

    func rdmsr(_ s: SysMachine, _ index: UInt32) throws -> UInt64 {
        s.cpu.gpr[1] = UInt64(index)
        try s.machine.execute(sysInsn(.rdmsr))
        return s.cpu.gpr[2] << 32 | s.cpu.gpr[0] & 0xffff_ffff
    }

    @Test func memoryTypeRangeRegisters() throws {
        let s = SysMachine.longMode()
        #expect(try rdmsr(s, 0xfe) == 0x508, "MTRRCAP: 8 variable ranges, fixed ranges, WC")
        #expect(s.fault { try wrmsr(s, 0xfe, 0) } == .gp(0), "MTRRCAP is read-only")
        #expect(try rdmsr(s, 0x2ff) == 0)
        try wrmsr(s, 0x2ff, 0xc06)  // enabled, fixed enabled, write-back default
        #expect(try rdmsr(s, 0x2ff) == 0xc06)
        #expect(s.fault { try wrmsr(s, 0x2ff, 0x802) } == .gp(0), "type 2 is reserved")
        #expect(s.fault { try wrmsr(s, 0x2ff, 0x1006) } == .gp(0), "bit 12 is reserved")
        // A variable range: base and mask with the valid bit, within MAXPHYADDR (40).
        try wrmsr(s, 0x200, 0x8000_0000 | 6)
        try wrmsr(s, 0x201, 0xff_8000_0000 | 1 << 11)
        #expect(try rdmsr(s, 0x200) == 0x8000_0006 && rdmsr(s, 0x201) == 0xff_8000_0800)
        #expect(s.fault { try wrmsr(s, 0x202, 1 << 40) } == .gp(0), "base above MAXPHYADDR")
        #expect(s.fault { try wrmsr(s, 0x203, 1 << 10) } == .gp(0), "mask bit 10 is reserved")
        #expect(s.fault { _ = try rdmsr(s, 0x210) } == .gp(0), "only 8 variable ranges")
        // Fixed ranges: eight type bytes each.
        try wrmsr(s, 0x250, 0x0606_0606_0606_0606)
        try wrmsr(s, 0x26f, 0x0505_0404_0101_0000)
        #expect(try rdmsr(s, 0x26f) == 0x0505_0404_0101_0000)
        #expect(s.fault { try wrmsr(s, 0x259, 0x0700_0000_0000_0000) } == .gp(0), "type 7 is reserved")
        #expect(s.fault { _ = try rdmsr(s, 0x251) } == .gp(0), "not a fixed-range MTRR")
    }

    @Test func identificationRegisters() throws {
        let s = SysMachine.longMode()
        #expect(try rdmsr(s, 0x17) == 0, "IA32_PLATFORM_ID")
        #expect(try rdmsr(s, 0x3a) == 1, "IA32_FEATURE_CONTROL: locked, no VMX")
        #expect(s.fault { try wrmsr(s, 0x3a, 5) } == .gp(0), "locked")
        // 0x3b (IA32_TSC_ADJUST) is implemented now; 0x3c is not an architectural MSR.
        #expect(s.fault { _ = try rdmsr(s, 0x3c) } == .gp(0), "unknown MSRs still raise #GP")
    }

    @Test func rdtscpReadsTheAuxiliaryRegister() throws {
        let s = SysMachine.longMode()
        try wrmsr(s, X86SystemBits.msrTSCAux, 3)
        #expect(s.fault { try wrmsr(s, X86SystemBits.msrTSCAux, 1 << 32) } == .gp(0), "TSC_AUX is 32 bits")
        s.bus.tsc = 0x1_2345_6789
        s.enterUser()
        try s.machine.execute(sysInsn(.rdtscp, length: 3))
        #expect(s.cpu.gpr[0] == 0x2345_6789 && s.cpu.gpr[2] == 1 && s.cpu.gpr[1] == 3)
    }
}
