// ALU, multiply and divide: results, exact flags at the carry/overflow/AF/parity boundaries,
// sizes (high bytes, 32-bit zero-extension), RIP advance and fault atomicity.

import Testing
import VisorCore
import VisorX86
import VisorX86Decode

@Suite("General: arithmetic and logic")
struct GeneralArithmeticTests {
    /// Runs `op dst, src` on registers rAX (dst) and rCX (src) at `size`; returns (result, status flags).
    func alu(_ op: Operation, _ a: UInt64, _ b: UInt64, size: UInt8, carryIn: Bool = false) throws -> (UInt64, UInt64) {
        let h = Harness()
        h.cpu.gpr[0] = a; h.cpu.gpr[1] = b
        if carryIn { h.cpu.rflags |= F.cf }
        try h.run(insn(op, reg(0, size), reg(1, size)))
        return (h.cpu.gpr[0], h.status)
    }

    @Test func addCarryOverflowAuxiliaryParity() throws {
        // 0x7f + 1 = 0x80: OF, SF, AF; 0x80 has one bit set → PF clear.
        #expect(try alu(.add, 0x7f, 1, size: 1) == (0x80, F.of | F.sf | F.af))
        // 0xff + 1 = 0x00: CF, ZF, AF, PF.
        #expect(try alu(.add, 0xff, 1, size: 1) == (0, F.cf | F.zf | F.af | F.pf))
        // 64-bit: max + max = ...fe with CF, SF, AF.
        #expect(try alu(.add, .max, .max, size: 8) == (0xffff_ffff_ffff_fffe, F.cf | F.sf | F.af))
        // 32-bit writes zero the upper half.
        #expect(try alu(.add, 0xdead_beef_0000_0001, 2, size: 4) == (3, F.pf))
        // 16-bit writes keep the upper bits.
        #expect(try alu(.add, 0x1234_5678_0000_ffff, 1, size: 2) == (0x1234_5678_0000_0000, F.cf | F.zf | F.af | F.pf))
    }

    @Test func adcAndSbbUseTheCarry() throws {
        #expect(try alu(.adc, 0xff, 0, size: 1, carryIn: true) == (0, F.cf | F.zf | F.af | F.pf))
        #expect(try alu(.adc, .max, .max, size: 8, carryIn: true) == (.max, F.cf | F.sf | F.af | F.pf))
        #expect(try alu(.sbb, 0, 0, size: 4, carryIn: true) == (0xffff_ffff, F.cf | F.sf | F.af | F.pf))
        #expect(try alu(.sbb, 0x80, 0x7f, size: 1, carryIn: true) == (0, F.zf | F.of | F.af | F.pf))
    }

    @Test func subAndCmpFlags() throws {
        // 0x80 - 1 = 0x7f: OF (sign changed wrongly), AF (borrow from bit 4).
        #expect(try alu(.sub, 0x80, 1, size: 1) == (0x7f, F.of | F.af))
        #expect(try alu(.sub, 0, 1, size: 2) == (0xffff, F.cf | F.sf | F.af | F.pf))
        let h = Harness()
        h.cpu.gpr[0] = 5; h.cpu.gpr[1] = 5
        try h.run(insn(.cmp, reg(0, 8), reg(1, 8)))
        #expect(h.cpu.gpr[0] == 5)
        #expect(h.status == F.zf | F.pf)
    }

    @Test func logicClearsCarryAndOverflow() throws {
        let h = Harness()
        h.cpu.rflags |= F.cf | F.of
        h.cpu.gpr[0] = 0xf0; h.cpu.gpr[1] = 0x0f
        try h.run(insn(.and, reg(0, 1), reg(1, 1)))
        #expect(h.cpu.gpr[0] == 0)
        #expect(h.status == F.zf | F.pf)
        #expect(try alu(.xor, 0x8000_0000, 1, size: 4) == (0x8000_0001, F.sf))
        #expect(try alu(.or, 3, 0, size: 8) == (3, F.pf))
    }

    @Test func testDoesNotWrite() throws {
        let h = Harness()
        h.cpu.gpr[0] = 0x80
        try h.run(insn(.test, reg(0, 1), imm(1), immediate: 0x80))
        #expect(h.cpu.gpr[0] == 0x80)
        #expect(h.status == F.sf)
    }

    @Test func highByteRegisters() throws {
        let h = Harness()
        h.cpu.gpr[0] = 0x1234  // AH = 0x12
        h.cpu.gpr[3] = 0xff00  // BH = 0xff
        try h.run(insn(.add, high(0), high(3)))
        #expect(h.cpu.gpr[0] == 0x1134)
        #expect(h.cpu.gpr[3] == 0xff00)
        #expect(h.status & F.cf != 0)
    }

    @Test func immediatesAreTakenAtTheOperationSize() throws {
        let h = Harness()
        h.cpu.gpr[0] = 1
        // add rax, -1 (83 /0 ib): the immediate is already sign-extended to 64 bits.
        try h.run(insn(.add, reg(0, 8), imm(8), immediate: UInt64(bitPattern: -1)))
        #expect(h.cpu.gpr[0] == 0)
        #expect(h.status == F.cf | F.zf | F.af | F.pf)
    }

    @Test func incDecKeepCarry() throws {
        let h = Harness()
        h.cpu.rflags |= F.cf
        h.cpu.gpr[2] = 0x7fff
        try h.run(insn(.inc, reg(2, 2)))
        #expect(h.cpu.gpr[2] == 0x8000)
        #expect(h.status == F.cf | F.of | F.sf | F.af | F.pf)
        h.cpu.rflags &= ~F.cf
        h.cpu.gpr[2] = 0
        try h.run(insn(.dec, reg(2, 4)))
        #expect(h.cpu.gpr[2] == 0xffff_ffff)
        #expect(h.status == F.sf | F.af | F.pf)
    }

    @Test func negAndNot() throws {
        let h = Harness()
        h.cpu.gpr[1] = 0x80
        try h.run(insn(.neg, reg(1, 1)))
        #expect(h.cpu.gpr[1] == 0x80)
        #expect(h.status == F.cf | F.of | F.sf)
        h.cpu.gpr[1] = 0
        try h.run(insn(.neg, reg(1, 8)))
        #expect(h.status == F.zf | F.pf)
        let before = h.cpu.rflags
        h.cpu.gpr[1] = 0xffff_0000_ffff_0000
        try h.run(insn(.not, reg(1, 4)))
        #expect(h.cpu.gpr[1] == 0x0000_ffff)
        #expect(h.cpu.rflags == before)
    }

    @Test func memoryDestinationAndRIPAdvance() throws {
        let h = Harness()
        h.store32(0xffff_fffe, at: 0x2000)
        h.cpu.gpr[3] = 0x2000; h.cpu.gpr[1] = 3
        try h.run(insn(.add, mem(4), reg(1, 4), length: 2, memory: address(base: 3)))
        #expect(h.load32(0x2000) == 1)
        #expect(h.cpu.rip == Harness.startRIP + 2)
        #expect(h.status & F.cf != 0)
    }

    @Test func faultingWriteChangesNothing() throws {
        let h = Harness()
        // A non-canonical address: #GP(0) before anything is written.
        h.cpu.gpr[3] = 0x8000_0000_0000_0000
        h.cpu.rflags = 0x2 | F.zf
        let flagsBefore = h.cpu.rflags
        let fault = h.fault(insn(.add, mem(8), reg(1, 8), memory: address(base: 3)))
        #expect(fault == .gp(0))
        #expect(h.cpu.rip == Harness.startRIP)
        #expect(h.cpu.rflags == flagsBefore)
    }

    @Test func sixteenBitModeWrapsRIP() throws {
        let h = Harness(mode: .bits16)
        h.cpu.rip = 0xfffe
        h.cpu.gpr[0] = 1
        try h.run(insn(.add, reg(0, 2), imm(2), length: 3, immediate: 1))
        #expect(h.cpu.gpr[0] == 2)
        #expect(h.cpu.rip == 0x0001)
    }
}

@Suite("General: multiply and divide")
struct GeneralMultiplyTests {
    @Test func mulByteAndQuad() throws {
        let h = Harness()
        h.cpu.gpr[0] = 0x80; h.cpu.gpr[1] = 2
        try h.run(insn(.mul, .none, reg(1, 1)))
        #expect(h.cpu.gpr[0] == 0x100)
        #expect(h.status & (F.cf | F.of) == F.cf | F.of)
        h.cpu.gpr[0] = .max; h.cpu.gpr[1] = .max; h.cpu.gpr[2] = 7
        try h.run(insn(.mul, .none, reg(1, 8)))
        #expect(h.cpu.gpr[0] == 1)
        #expect(h.cpu.gpr[2] == 0xffff_ffff_ffff_fffe)
        h.cpu.gpr[0] = 3; h.cpu.gpr[1] = 5
        try h.run(insn(.mul, .none, reg(1, 4)))
        #expect(h.cpu.gpr[0] == 15 && h.cpu.gpr[2] == 0)
        #expect(h.status & (F.cf | F.of) == 0)
    }

    @Test func imulWideSignedOverflow() throws {
        let h = Harness()
        h.cpu.gpr[0] = 0xffff  // -1
        h.cpu.gpr[1] = 0x8000  // -32768
        try h.run(insn(.imulWide, .none, reg(1, 2)))
        // 32768 = 0x0000:8000 does not fit in a signed word.
        #expect(h.cpu.gpr[0] == 0x8000 && h.cpu.gpr[2] == 0)
        #expect(h.status & (F.cf | F.of) == F.cf | F.of)
        h.cpu.gpr[0] = UInt64(bitPattern: -3); h.cpu.gpr[1] = 5
        try h.run(insn(.imulWide, .none, reg(1, 8)))
        #expect(h.cpu.gpr[0] == UInt64(bitPattern: -15) && h.cpu.gpr[2] == .max)
        #expect(h.status & (F.cf | F.of) == 0)
    }

    @Test func imulThreeOperand() throws {
        let h = Harness()
        h.cpu.gpr[1] = 0x4000_0000
        try h.run(insn(.imul, reg(0, 4), reg(1, 4), imm(4), immediate: 2))
        #expect(h.cpu.gpr[0] == 0x8000_0000)
        #expect(h.status & (F.cf | F.of) == F.cf | F.of)
        h.cpu.gpr[0] = 0xffff_ffff_ffff_fff0
        try h.run(insn(.imul, reg(0, 8), reg(1, 8), reg(0, 8)))  // two-operand: rax *= rcx
        #expect(h.cpu.gpr[0] == 0xffff_fffc_0000_0000)
        #expect(h.status & (F.cf | F.of) == 0)
    }

    @Test func divideQuotientAndRemainder() throws {
        let h = Harness()
        h.cpu.gpr[0] = 1001  // AX
        h.cpu.gpr[1] = 10
        try h.run(insn(.div, .none, reg(1, 1)))
        #expect(h.cpu.gpr[0] & 0xffff == (1 << 8) | 100)
        h.cpu.gpr[2] = 1; h.cpu.gpr[0] = 0; h.cpu.gpr[1] = 2
        try h.run(insn(.div, .none, reg(1, 8)))
        #expect(h.cpu.gpr[0] == 1 << 63 && h.cpu.gpr[2] == 0)
        // idiv: -7 / 2 = -3 rem -1.
        h.cpu.gpr[0] = UInt64(bitPattern: -7); h.cpu.gpr[2] = .max; h.cpu.gpr[1] = 2
        try h.run(insn(.idiv, .none, reg(1, 8)))
        #expect(h.cpu.gpr[0] == UInt64(bitPattern: -3) && h.cpu.gpr[2] == .max)
        // 32-bit idiv zero-extends both results.
        h.cpu.gpr[0] = 0xffff_ffff_ffff_fff9; h.cpu.gpr[2] = 0xffff_ffff; h.cpu.gpr[1] = 2
        try h.run(insn(.idiv, .none, reg(1, 4)))
        #expect(h.cpu.gpr[0] == 0xffff_fffd && h.cpu.gpr[2] == 0xffff_ffff)
    }

    @Test func divideErrorsLeaveStateUnchanged() throws {
        let h = Harness()
        h.cpu.gpr[0] = 5; h.cpu.gpr[2] = 0; h.cpu.gpr[1] = 0
        #expect(h.fault(insn(.div, .none, reg(1, 4))) == .divide)
        // Quotient overflow: 0x1_0000_0000 / 1 does not fit in 32 bits.
        h.cpu.gpr[2] = 1; h.cpu.gpr[1] = 1
        #expect(h.fault(insn(.div, .none, reg(1, 4))) == .divide)
        // INT64_MIN / -1 overflows.
        h.cpu.gpr[0] = 1 << 63; h.cpu.gpr[2] = .max; h.cpu.gpr[1] = .max
        #expect(h.fault(insn(.idiv, .none, reg(1, 8))) == .divide)
        // -128 / -1 in bytes overflows; -128 / 1 does not.
        h.cpu.gpr[0] = 0xff80; h.cpu.gpr[1] = 0xff
        #expect(h.fault(insn(.idiv, .none, reg(1, 1))) == .divide)
        #expect(h.cpu.gpr[0] == 0xff80)
        #expect(h.cpu.rip == Harness.startRIP)
        h.cpu.gpr[1] = 1
        try h.run(insn(.idiv, .none, reg(1, 1)))
        #expect(h.cpu.gpr[0] & 0xffff == 0x0080)
    }
}
