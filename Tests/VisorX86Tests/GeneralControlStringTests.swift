// Near control flow (targets, truncation, canonical checks, LOOP counters) and string
// instructions (REP, REPE/REPNE, DF, address size, pending-exit resumption), plus the SSE and
// x87 subset.

import Testing
import VisorCore
import VisorX86
import VisorX86Decode

@Suite("General: control flow")
struct GeneralControlFlowTests {
    @Test func relativeJumpsCallsAndReturn() throws {
        let h = Harness()
        h.cpu.gpr[4] = 0x8000
        try h.run(insn(.jmpRelative, length: 2, immediate: UInt64(bitPattern: -2)))
        #expect(h.cpu.rip == Harness.startRIP)
        try h.run(insn(.callRelative, size: 8, length: 5, immediate: 0x100))
        #expect(h.cpu.rip == 0x1105 && h.load64(0x7ff8) == 0x1005 && h.cpu.gpr[4] == 0x7ff8)
        try h.run(insn(.ret, size: 8, length: 3, immediate: 0x10))
        #expect(h.cpu.rip == 0x1005 && h.cpu.gpr[4] == 0x8010)
    }

    @Test func nonCanonicalTargetFaultsBeforeAnything() throws {
        let h = Harness()
        h.cpu.gpr[4] = 0x8000
        h.cpu.rip = 0x7fff_ffff_fff0
        #expect(h.fault(insn(.callRelative, size: 8, length: 5, immediate: 0x100)) == .gp(0))
        #expect(h.cpu.rip == 0x7fff_ffff_fff0 && h.cpu.gpr[4] == 0x8000)
        h.cpu.gpr[0] = 0x0000_8000_0000_0000
        #expect(h.fault(insn(.jmpIndirect, .none, reg(0, 8), size: 8, length: 2)) == .gp(0))
        h.store64(0xffff_0000_0000_0000, at: 0x8000)
        #expect(h.fault(insn(.ret, size: 8, length: 1)) == .gp(0))
        #expect(h.cpu.gpr[4] == 0x8000)
    }

    @Test func targetsTruncateOutsideLongMode() throws {
        let h = Harness(mode: .bits16)
        h.cpu.rip = 0xfff0
        try h.run(insn(.jmpRelative, size: 2, length: 3, immediate: 0x20, addressSize: 2))
        #expect(h.cpu.rip == 0x0013)
        let h32 = Harness(mode: .bits32)
        h32.cpu.rip = 0xffff_fff0
        try h32.run(insn(.jmpRelative, size: 4, length: 5, immediate: 0x20, addressSize: 4))
        #expect(h32.cpu.rip == 0x15)
        // A 16-bit operand size in 32-bit code truncates to IP.
        h32.cpu.rip = 0x12_3450
        try h32.run(insn(.jmpRelative, size: 2, length: 4, immediate: 0x10, addressSize: 4))
        #expect(h32.cpu.rip == 0x3464)
    }

    @Test func conditionalJumpsAndIndirect() throws {
        let h = Harness()
        h.cpu.rflags = 0x2 | F.zf
        try h.run(insn(.jcc, length: 2, immediate: 0x10, condition: 5))  // JNE not taken
        #expect(h.cpu.rip == Harness.startRIP + 2)
        try h.run(insn(.jcc, length: 2, immediate: 0x10, condition: 4))  // JE taken
        #expect(h.cpu.rip == Harness.startRIP + 4 + 0x10)
        h.cpu.gpr[4] = 0x8000
        h.store64(0x5000, at: 0x2000)
        h.cpu.gpr[3] = 0x2000
        try h.run(insn(.callIndirect, .none, mem(8), size: 8, length: 2, memory: address(base: 3)))
        #expect(h.cpu.rip == 0x5000 && h.load64(0x7ff8) == 0x1016)
    }

    @Test func loopCountersUseTheAddressSize() throws {
        let h = Harness()
        h.cpu.gpr[1] = 0x1_0000_0001
        // 32-bit address size: ECX 1 → 0, not taken; RCX upper half cleared.
        try h.run(insn(.loop, length: 2, immediate: UInt64(bitPattern: -2), addressSize: 4))
        #expect(h.cpu.gpr[1] == 0 && h.cpu.rip == Harness.startRIP + 2)
        h.cpu.gpr[1] = 0x1_0000
        // 16-bit: CX 0 → 0xffff, taken, upper bits kept.
        try h.run(insn(.loop, length: 2, immediate: 0x10, addressSize: 2))
        #expect(h.cpu.gpr[1] == 0x1_ffff && h.cpu.rip == Harness.startRIP + 4 + 0x10)
        h.cpu.rflags = 0x2
        h.cpu.gpr[1] = 5
        try h.run(insn(.loopEqual, length: 2, immediate: 0x10))
        #expect(h.cpu.gpr[1] == 4 && h.cpu.rip == Harness.startRIP + 0x16)
        try h.run(insn(.loopNotEqual, length: 2, immediate: 0x10))
        #expect(h.cpu.gpr[1] == 3 && h.cpu.rip == Harness.startRIP + 0x28)
        h.cpu.gpr[1] = 0xffff_ffff_0000_0000
        try h.run(insn(.jumpIfCXZero, length: 2, immediate: 0x10, addressSize: 4))
        #expect(h.cpu.rip == Harness.startRIP + 0x3a && h.cpu.gpr[1] == 0xffff_ffff_0000_0000)
    }
}

@Suite("General: strings")
struct GeneralStringTests {
    @Test func repMovsForwardAndBackward() throws {
        let h = Harness()
        for i in 0..<16 { h.store8(UInt8(i + 1), at: 0x2000 + UInt64(i)) }
        h.cpu.gpr[6] = 0x2000; h.cpu.gpr[7] = 0x3000; h.cpu.gpr[1] = 4
        try h.run(insn(.movs, size: 4, length: 2, repetition: .repeatWhileEqual))
        #expect(h.load64(0x3000) == h.load64(0x2000) && h.load64(0x3008) == h.load64(0x2008))
        #expect(h.cpu.gpr[1] == 0 && h.cpu.gpr[6] == 0x2010 && h.cpu.gpr[7] == 0x3010)
        #expect(h.cpu.rip == Harness.startRIP + 2)
        // DF = 1: backwards, bytes.
        h.cpu.rflags |= F.df
        h.cpu.gpr[6] = 0x200f; h.cpu.gpr[7] = 0x400f; h.cpu.gpr[1] = 2
        try h.run(insn(.movs, size: 1, length: 2, repetition: .repeatWhileEqual))
        #expect(h.load8(0x400f) == 16 && h.load8(0x400e) == 15 && h.load8(0x400d) == 0)
        #expect(h.cpu.gpr[6] == 0x200d)
    }

    @Test func repWithZeroCountDoesNothing() throws {
        let h = Harness()
        h.cpu.gpr[7] = 0x3000; h.cpu.gpr[1] = 0; h.cpu.gpr[0] = 0xff
        try h.run(insn(.stos, size: 1, length: 2, repetition: .repeatWhileEqual))
        #expect(h.load8(0x3000) == 0 && h.cpu.gpr[7] == 0x3000 && h.cpu.rip == Harness.startRIP + 2)
    }

    @Test func repeScasStopsOnMismatch() throws {
        let h = Harness()
        for (i, b) in [UInt8(7), 7, 7, 9, 7].enumerated() { h.store8(b, at: 0x2000 + UInt64(i)) }
        h.cpu.gpr[0] = 7; h.cpu.gpr[7] = 0x2000; h.cpu.gpr[1] = 10
        try h.run(insn(.scas, size: 1, length: 2, repetition: .repeatWhileEqual))
        #expect(h.cpu.gpr[7] == 0x2004 && h.cpu.gpr[1] == 6 && h.status & F.zf == 0)
        // REPNE CMPS stops on the first equal pair.
        h.store32(0x1111, at: 0x3000); h.store32(0x2222, at: 0x3004)
        h.store32(0x9999, at: 0x4000); h.store32(0x2222, at: 0x4004)
        h.cpu.gpr[6] = 0x3000; h.cpu.gpr[7] = 0x4000; h.cpu.gpr[1] = 8
        try h.run(insn(.cmps, size: 4, length: 2, repetition: .repeatWhileNotEqual))
        #expect(h.cpu.gpr[1] == 6 && h.cpu.gpr[6] == 0x3008 && h.status & F.zf != 0)
    }

    @Test func lodsAndAddressSizeWrap() throws {
        let h = Harness()
        h.store16(0xbeef, at: 0xfffe)
        h.cpu.gpr[6] = 0xffff_0000_0000_fffe
        try h.run(insn(.lods, size: 2, length: 2, addressSize: 2))
        #expect(h.cpu.gpr[0] & 0xffff == 0xbeef)
        #expect(h.cpu.gpr[6] == 0xffff_0000_0000_0000)  // SI wrapped, upper bits kept
    }

    @Test func pendingExitStopsBetweenIterationsAndResumes() throws {
        let h = Harness()
        h.bus.exitOnMMIOWrite = true
        // Destination beyond RAM (4 MiB): MMIO.
        h.cpu.gpr[7] = 0x1000_0000; h.cpu.gpr[1] = 3; h.cpu.gpr[0] = 0x42
        try h.run(insn(.stos, size: 1, length: 2, repetition: .repeatWhileEqual))
        #expect(h.bus.mmioWrites.count == 1)
        #expect(h.cpu.rip == Harness.startRIP && h.cpu.gpr[1] == 2 && h.cpu.gpr[7] == 0x1000_0001)
        h.bus.hasPendingExit = false
        h.bus.exitOnMMIOWrite = false
        try h.run(insn(.stos, size: 1, length: 2, repetition: .repeatWhileEqual))
        #expect(h.bus.mmioWrites.count == 3 && h.cpu.gpr[1] == 0 && h.cpu.rip == Harness.startRIP + 2)
    }

    @Test func faultMidRepKeepsCompletedIterations() throws {
        let h = Harness()
        // The destination crosses into non-canonical space after the first element.
        h.cpu.gpr[7] = 0x7fff_ffff_fff8; h.cpu.gpr[1] = 3; h.cpu.gpr[0] = 1
        h.cpu.gpr[6] = 0x2000
        let fault = h.fault(insn(.movs, size: 8, length: 3, repetition: .repeatWhileEqual))
        #expect(fault == .gp(0))
        #expect(h.cpu.gpr[1] == 2 && h.cpu.gpr[7] == 0x8000_0000_0000 && h.cpu.rip == Harness.startRIP)
    }
}

@Suite("General: SSE and x87 subset")
struct GeneralSSETests {
    @Test func movesAndAlignment() throws {
        let h = Harness()
        h.store64(0x1111, at: 0x2000); h.store64(0x2222, at: 0x2008)
        h.cpu.gpr[3] = 0x2000
        try h.run(insn(.movAligned128, xmm(1), mem(16), size: 16, memory: address(base: 3)))
        #expect(h.cpu.xmm[1].low == 0x1111 && h.cpu.xmm[1].high == 0x2222)
        h.cpu.gpr[3] = 0x2004
        #expect(h.fault(insn(.movAligned128, xmm(1), mem(16), size: 16, memory: address(base: 3))) == .gp(0))
        try h.run(insn(.movUnaligned128, mem(16), xmm(1), size: 16, memory: address(base: 3)))
        #expect(h.load64(0x2004) == 0x1111 && h.load64(0x200c) == 0x2222)
    }

    @Test func movdqZeroExtendsIntoXMM() throws {
        let h = Harness()
        h.cpu.xmm[2] = (.max, .max)
        h.cpu.gpr[0] = 0xaaaa_bbbb_cccc_dddd
        try h.run(insn(.movdq, xmm(2, 4), reg(0, 4), size: 4))
        #expect(h.cpu.xmm[2].low == 0xcccc_dddd && h.cpu.xmm[2].high == 0)
        h.cpu.xmm[3] = (0x1234_5678_9abc_def0, 5)
        try h.run(insn(.movdq, reg(1, 8), xmm(3, 8), size: 8))
        #expect(h.cpu.gpr[1] == 0x1234_5678_9abc_def0)
        try h.run(insn(.movdq, xmm(4, 8), xmm(3, 8), size: 8))
        #expect(h.cpu.xmm[4].low == 0x1234_5678_9abc_def0 && h.cpu.xmm[4].high == 0)
    }

    @Test func logicShuffleUnpack() throws {
        let h = Harness()
        h.cpu.xmm[0] = (0xff00, 0xf0f0); h.cpu.xmm[1] = (0x0ff0, 0xffff)
        try h.run(insn(.pxor, xmm(0), xmm(1), size: 16))
        #expect(h.cpu.xmm[0].low == 0xf0f0 && h.cpu.xmm[0].high == 0x0f0f)
        try h.run(insn(.pandn, xmm(0), xmm(1), size: 16))
        #expect(h.cpu.xmm[0].low == 0x0f00 && h.cpu.xmm[0].high == 0xf0f0)
        h.cpu.xmm[2] = (0x0000_0001_0000_0000, 0x0000_0003_0000_0002)
        try h.run(insn(.pshufd, xmm(3), xmm(2), imm(1), size: 16, immediate: 0x1b))  // reverse dwords
        #expect(h.cpu.xmm[3].low == 0x0000_0002_0000_0003 && h.cpu.xmm[3].high == 0x0000_0000_0000_0001)
        try h.run(insn(.punpcklqdq, xmm(2), xmm(2), size: 16))
        #expect(h.cpu.xmm[2].high == 0x0000_0001_0000_0000)
    }

    @Test func availabilityFaults() throws {
        let h = Harness()
        h.cpu.cr4 = 0
        #expect(h.fault(insn(.pxor, xmm(0), xmm(1), size: 16)) == .undefined)
        h.cpu.cr4 = X86.cr4OSFXSR
        h.cpu.cr0 |= 1 << 3  // TS
        #expect(h.fault(insn(.pxor, xmm(0), xmm(1), size: 16)) == .deviceNotAvailableFault)
        #expect(h.fault(insn(.fninit, length: 2)) == .deviceNotAvailableFault)
        h.cpu.cr0 &= ~(1 << 3)
        h.cpu.cr0 |= 1 << 2  // EM
        #expect(h.fault(insn(.pxor, xmm(0), xmm(1), size: 16)) == .undefined)
        #expect(h.cpu.rip == Harness.startRIP)
    }

    @Test func controlWords() throws {
        let h = Harness()
        h.cpu.gpr[3] = 0x2000
        h.store32(0x1f80 | 0x40, at: 0x2000)
        try h.run(insn(.ldmxcsr, .none, mem(4), size: 4, memory: address(base: 3)))
        #expect(h.cpu.mxcsr == 0x1fc0)
        h.store32(0x1_0000, at: 0x2000)
        #expect(h.fault(insn(.ldmxcsr, .none, mem(4), size: 4, memory: address(base: 3))) == .gp(0))
        try h.run(insn(.stmxcsr, mem(4), size: 4, memory: address(base: 3)))
        #expect(h.load32(0x2000) == 0x1fc0)
        h.cpu.fcw = 0; h.cpu.fsw = 0x3800
        try h.run(insn(.fnstsw, reg(0, 2), size: 2, length: 2))
        #expect(h.cpu.gpr[0] & 0xffff == 0x3800)
        try h.run(insn(.fninit, length: 2))
        #expect(h.cpu.fcw == 0x37f && h.cpu.fsw == 0)
        try h.run(insn(.fnstcw, mem(2), size: 2, memory: address(base: 3)))
        #expect(h.load16(0x2000) == 0x37f)
        h.store16(0x27f, at: 0x2000)
        try h.run(insn(.fldcw, .none, mem(2), size: 2, memory: address(base: 3)))
        #expect(h.cpu.fcw == 0x27f)
    }
}
