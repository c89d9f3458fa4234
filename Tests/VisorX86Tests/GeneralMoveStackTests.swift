// Moves, exchanges, flag instructions and the stack: zero/sign extension, LEA truncation,
// CMOV's zero-extension when false, CMPXCHG family, POP [rsp-based], POPF privilege rules,
// PUSHA/POPA, ENTER/LEAVE.

import Testing
import VisorCore
import VisorX86
import VisorX86Decode

@Suite("General: moves and exchanges")
struct GeneralMoveTests {
    @Test func movSizesAndExtension() throws {
        let h = Harness()
        h.cpu.gpr[0] = .max
        try h.run(insn(.mov, reg(0, 4), imm(4), immediate: 0x1234))
        #expect(h.cpu.gpr[0] == 0x1234)
        h.cpu.gpr[1] = 0xffff_ffff_ffff_ff80
        try h.run(insn(.movsx, reg(2, 8), reg(1, 1)))
        #expect(h.cpu.gpr[2] == 0xffff_ffff_ffff_ff80)
        try h.run(insn(.movsx, reg(2, 2), reg(1, 1)))
        #expect(h.cpu.gpr[2] == 0xffff_ffff_ffff_ff80)
        try h.run(insn(.movzx, reg(2, 4), reg(1, 2)))
        #expect(h.cpu.gpr[2] == 0xff80)
        h.cpu.gpr[1] = 0x8000_0000
        try h.run(insn(.movsx, reg(2, 8), reg(1, 4)))  // MOVSXD
        #expect(h.cpu.gpr[2] == 0xffff_ffff_8000_0000)
        #expect(h.cpu.rip == Harness.startRIP + 15)
    }

    @Test func leaComputesWithoutMemoryAndTruncates() throws {
        let h = Harness()
        h.cpu.gpr[3] = 0xffff_ffff_ffff_fff0
        h.cpu.gpr[6] = 0x20
        var m = address(base: 3, displacement: 4)
        m.index = 6; m.scale = 2
        try h.run(insn(.lea, reg(0, 8), mem(0), memory: m))
        #expect(h.cpu.gpr[0] == 0x34)
        try h.run(insn(.lea, reg(0, 2), mem(0), memory: MemoryOperand(base: 3, displacement: 0x7fff_0000)))
        #expect(h.cpu.gpr[0] == 0xfff0)
        // A non-canonical address is fine: LEA does not access memory.
        h.cpu.gpr[3] = 0x8000_0000_0000_0000
        try h.run(insn(.lea, reg(0, 8), mem(0), memory: address(base: 3)))
        #expect(h.cpu.gpr[0] == 0x8000_0000_0000_0000)
    }

    @Test func cmovZeroExtendsEvenWhenFalse() throws {
        let h = Harness()
        h.cpu.gpr[0] = 0xffff_ffff_0000_0001; h.cpu.gpr[1] = 7
        h.cpu.rflags = 0x2  // ZF = 0: condition 4 (E) is false
        try h.run(insn(.cmovcc, reg(0, 4), reg(1, 4), condition: 4))
        #expect(h.cpu.gpr[0] == 1)
        try h.run(insn(.cmovcc, reg(0, 8), reg(1, 8), condition: 5))  // NE: true
        #expect(h.cpu.gpr[0] == 7)
        // The source is read even when the condition is false: a bad address faults.
        h.cpu.gpr[3] = 0x8000_0000_0000_0000
        #expect(h.fault(insn(.cmovcc, reg(0, 8), mem(8), memory: address(base: 3), condition: 4)) == .gp(0))
    }

    @Test func setccConditions() throws {
        let h = Harness()
        // SF != OF → L (0xC) true, GE (0xD) false; ZF=0, CF=1 → BE (6) true, A (7) false.
        h.cpu.rflags = 0x2 | F.sf | F.cf
        for (cc, expected) in [(UInt8(0xc), UInt64(1)), (0xd, 0), (6, 1), (7, 0), (0xe, 1), (0xf, 0), (0xa, 0), (0xb, 1)] {
            try h.run(insn(.setcc, reg(0, 1), condition: cc))
            #expect(h.cpu.gpr[0] & 0xff == expected, "condition \(cc)")
        }
    }

    @Test func xchgXaddCmpxchg() throws {
        let h = Harness()
        h.store64(0x1111, at: 0x2000)
        h.cpu.gpr[3] = 0x2000; h.cpu.gpr[1] = 0x2222
        try h.run(insn(.xchg, mem(8), reg(1, 8), memory: address(base: 3)))
        #expect(h.load64(0x2000) == 0x2222 && h.cpu.gpr[1] == 0x1111)
        try h.run(insn(.xadd, mem(8), reg(1, 8), memory: address(base: 3)))
        #expect(h.load64(0x2000) == 0x3333 && h.cpu.gpr[1] == 0x2222)
        // xadd of a register with itself leaves the sum.
        h.cpu.gpr[2] = 5
        try h.run(insn(.xadd, reg(2, 4), reg(2, 4)))
        #expect(h.cpu.gpr[2] == 10)
        // cmpxchg: equal → destination ← source, ZF.
        h.cpu.gpr[0] = 0x3333; h.cpu.gpr[1] = 0x4444
        try h.run(insn(.cmpxchg, mem(8), reg(1, 8), memory: address(base: 3)))
        #expect(h.load64(0x2000) == 0x4444 && h.status & F.zf != 0)
        // unequal → accumulator ← destination, ZF = 0, flags as CMP.
        h.cpu.gpr[0] = 0x5555
        try h.run(insn(.cmpxchg, mem(8), reg(1, 8), memory: address(base: 3)))
        #expect(h.cpu.gpr[0] == 0x4444 && h.load64(0x2000) == 0x4444 && h.status & F.zf == 0)
    }

    @Test func cmpxchg8bAnd16b() throws {
        let h = Harness()
        h.store64(0x0000_0002_0000_0001, at: 0x2000)
        h.cpu.gpr[3] = 0x2000
        h.cpu.gpr[0] = 1; h.cpu.gpr[2] = 2; h.cpu.gpr[1] = 0xcc; h.cpu.gpr[5] = 0
        let m = address(base: 3)
        // EBX is also the base here; the replacement is ECX:EBX = 0xcc:0x2000.
        try h.run(insn(.cmpxchgDouble, mem(8), size: 8, memory: m))
        #expect(h.load64(0x2000) == 0x0000_00cc_0000_2000 && h.status & F.zf != 0)
        h.cpu.gpr[0] = 0xffff_ffff_0000_0000
        try h.run(insn(.cmpxchgDouble, mem(8), size: 8, memory: m))
        #expect(h.cpu.gpr[0] == 0x2000 && h.cpu.gpr[2] == 0xcc && h.status & F.zf == 0)
        // 16-byte form needs alignment.
        h.cpu.gpr[3] = 0x2008
        #expect(h.fault(insn(.cmpxchgDouble, mem(16), size: 16, memory: m)) == .gp(0))
        h.cpu.gpr[3] = 0x2010
        h.store64(7, at: 0x2010); h.store64(8, at: 0x2018)
        h.cpu.gpr[0] = 7; h.cpu.gpr[2] = 8; h.cpu.gpr[1] = 0x99
        try h.run(insn(.cmpxchgDouble, mem(16), size: 16, memory: m))
        #expect(h.load64(0x2010) == 0x2010 && h.load64(0x2018) == 0x99 && h.status & F.zf != 0)
    }

    @Test func signExtensionOfTheAccumulator() throws {
        let h = Harness()
        h.cpu.gpr[0] = 0xffff_ffff_ffff_0080
        try h.run(insn(.signExtendAccumulator, size: 2))  // CBW
        #expect(h.cpu.gpr[0] == 0xffff_ffff_ffff_ff80)
        h.cpu.gpr[0] = 0x1_8000_0000
        try h.run(insn(.signExtendAccumulator, size: 8))  // CDQE
        #expect(h.cpu.gpr[0] == 0xffff_ffff_8000_0000)
        h.cpu.gpr[2] = 0x1234_5678_9abc_def0
        try h.run(insn(.signExtendIntoDX, size: 4))  // CDQ: EAX is negative
        #expect(h.cpu.gpr[2] == 0xffff_ffff)
        h.cpu.gpr[0] = 0x7fff
        try h.run(insn(.signExtendIntoDX, size: 2))  // CWD: only DX changes
        #expect(h.cpu.gpr[2] == 0xffff_0000)
    }

    @Test func flagInstructionsAndLahfSahf() throws {
        let h = Harness()
        h.cpu.rflags = 0x2
        try h.run(insn(.stc, length: 1)); try h.run(insn(.cmc, length: 1))
        #expect(h.cpu.rflags & F.cf == 0)
        try h.run(insn(.std, length: 1))
        #expect(h.cpu.rflags & F.df != 0)
        h.cpu.rflags |= F.sf | F.pf | F.cf | F.of
        try h.run(insn(.lahf, length: 1))
        #expect((h.cpu.gpr[0] >> 8) & 0xff == 0x87)
        h.cpu.gpr[0] = 0x4100  // ZF | CF
        try h.run(insn(.sahf, length: 1))
        #expect(h.status == F.zf | F.cf | F.of)  // OF is not in the low byte
        #expect(h.cpu.rip == Harness.startRIP + 5)
    }

    @Test func xlatUsesBXPlusAL() throws {
        let h = Harness()
        h.store8(0x5a, at: 0x2010)
        h.cpu.gpr[3] = 0x2000; h.cpu.gpr[0] = 0x1234_0010
        try h.run(insn(.xlat, reg(0, 1), length: 1, memory: MemoryOperand(base: 3)))
        #expect(h.cpu.gpr[0] == 0x1234_005a)
    }
}

@Suite("General: stack")
struct GeneralStackTests {
    @Test func pushPopSizes() throws {
        let h = Harness()
        h.cpu.gpr[4] = 0x8000
        h.cpu.gpr[1] = 0x1122_3344_5566_7788
        try h.run(insn(.push, .none, reg(1, 8), size: 8, length: 1))
        #expect(h.cpu.gpr[4] == 0x7ff8 && h.load64(0x7ff8) == 0x1122_3344_5566_7788)
        try h.run(insn(.push, .none, imm(8), size: 8, length: 2, immediate: UInt64(bitPattern: -2)))
        #expect(h.load64(0x7ff0) == UInt64(bitPattern: -2))
        try h.run(insn(.push, .none, reg(1, 2), size: 2, length: 2))
        #expect(h.cpu.gpr[4] == 0x7fee && h.load16(0x7fee) == 0x7788)
        try h.run(insn(.pop, reg(2, 2), size: 2, length: 2))
        #expect(h.cpu.gpr[2] & 0xffff == 0x7788 && h.cpu.gpr[4] == 0x7ff0)
        // push rsp pushes the old value.
        try h.run(insn(.push, .none, reg(4, 8), size: 8, length: 1))
        #expect(h.load64(0x7fe8) == 0x7ff0)
    }

    @Test func popIntoRSPBasedMemoryUsesTheIncrementedRSP() throws {
        let h = Harness()
        h.cpu.gpr[4] = 0x8000
        h.store64(0xabcd, at: 0x8000)
        // pop qword [rsp]: the value lands at the new rSP (0x8008).
        try h.run(insn(.pop, mem(8), size: 8, memory: address(base: 4)))
        #expect(h.cpu.gpr[4] == 0x8008 && h.load64(0x8008) == 0xabcd)
        // A faulting destination leaves rSP as it was.
        h.cpu.gpr[3] = 0x8000_0000_0000_0000
        #expect(h.fault(insn(.pop, mem(8), size: 8, memory: address(base: 3))) == .gp(0))
        #expect(h.cpu.gpr[4] == 0x8008)
        // pop rsp ends with the popped value.
        h.store64(0x4444, at: 0x8008)
        try h.run(insn(.pop, reg(4, 8), size: 8, length: 1))
        #expect(h.cpu.gpr[4] == 0x4444)
    }

    @Test func pushfPopfPrivilege() throws {
        let h = Harness()
        h.cpu.gpr[4] = 0x8000
        h.cpu.rflags = 0x2 | F.if | (1 << 16)  // IF and RF
        try h.run(insn(.pushf, size: 8, length: 1))
        #expect(h.load64(0x7ff8) == 0x2 | F.if)  // RF is not pushed
        // CPL 0 may change IOPL and IF.
        h.store64(0x2 | F.iopl | F.cf | F.ac, at: 0x7ff8)
        try h.run(insn(.popf, size: 8, length: 1))
        #expect(h.cpu.rflags == 0x2 | F.iopl | F.cf | F.ac)
        // CPL 3 with IOPL 0: IOPL and IF are kept.
        h.cpu.cpl = 3
        h.cpu.rflags = 0x2 | F.if
        h.cpu.gpr[4] = 0x7ff8
        h.store64(0x2 | F.iopl | F.zf | F.df, at: 0x7ff8)
        try h.run(insn(.popf, size: 8, length: 1))
        #expect(h.cpu.rflags == 0x2 | F.if | F.zf | F.df)
        // 16-bit POPF changes only the low word.
        h.cpu.cpl = 0
        h.cpu.rflags = 0x2 | F.ac
        h.cpu.gpr[4] = 0x7ffe
        h.store16(0x0001, at: 0x7ffe)
        try h.run(insn(.popf, size: 2, length: 2))
        #expect(h.cpu.rflags == 0x2 | F.ac | F.cf)
    }

    @Test func pushaPopaIn32BitMode() throws {
        let h = Harness(mode: .bits32)
        for i in 0..<8 { h.cpu.gpr[i] = UInt64(0x100 * (i + 1)) }
        h.cpu.gpr[4] = 0x8000
        try h.run(insn(.pusha, size: 4, length: 1, addressSize: 4))
        #expect(h.cpu.gpr[4] == 0x8000 - 32)
        #expect(h.load32(0x8000 - 4) == 0x100 && h.load32(0x8000 - 20) == 0x8000 && h.load32(0x8000 - 32) == 0x800)
        for i in [0, 1, 2, 3, 5, 6, 7] { h.cpu.gpr[i] = 0 }
        h.store32(0x1234, at: 0x8000 - 20)  // the saved ESP slot is skipped
        try h.run(insn(.popa, size: 4, length: 1, addressSize: 4))
        #expect(h.cpu.gpr[4] == 0x8000 && h.cpu.gpr[0] == 0x100 && h.cpu.gpr[7] == 0x800 && h.cpu.gpr[5] == 0x600)
        let long = Harness()
        #expect(long.fault(insn(.pusha, size: 4, length: 1)) == .undefined)
    }

    @Test func enterAndLeave() throws {
        let h = Harness()
        h.cpu.gpr[4] = 0x8000; h.cpu.gpr[5] = 0x9000
        h.store64(0xaaaa, at: 0x9000 - 8)
        // enter 0x20, 2: push rbp, copy one outer frame pointer, push the new frame.
        try h.run(insn(.enter, size: 8, length: 4, immediate: 0x20, immediate2: 2))
        #expect(h.load64(0x7ff8) == 0x9000)
        #expect(h.load64(0x7ff0) == 0xaaaa)
        #expect(h.load64(0x7fe8) == 0x7ff8)
        #expect(h.cpu.gpr[5] == 0x7ff8)
        #expect(h.cpu.gpr[4] == 0x7fe8 - 0x20)
        try h.run(insn(.leave, size: 8, length: 1))
        #expect(h.cpu.gpr[4] == 0x8000 && h.cpu.gpr[5] == 0x9000)
    }
}
