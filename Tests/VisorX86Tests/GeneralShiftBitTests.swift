// Shifts, rotates, double shifts and bit instructions: counts 0, 1, size and over-size,
// rotate through carry, the bit-offset addressing of BT* on memory, BSF/BSR on zero.

import Testing
import VisorCore
import VisorX86
import VisorX86Decode

@Suite("General: shifts and rotates")
struct GeneralShiftTests {
    /// `op reg0, count` at `size` with rFLAGS `flags` before; returns (rax, rflags & status).
    func shift(_ op: Operation, _ value: UInt64, by count: UInt64, size: UInt8, flags: UInt64 = 0) throws
        -> (UInt64, UInt64)
    {
        let h = Harness()
        h.cpu.gpr[0] = value
        h.cpu.rflags = 0x2 | flags
        try h.run(insn(op, reg(0, size), imm(1), immediate: count))
        return (h.cpu.gpr[0], h.status)
    }

    @Test func countZeroChangesNoFlags() throws {
        let allSet = F.status
        #expect(try shift(.shl, 0x80, by: 0, size: 1, flags: allSet) == (0x80, allSet))
        // The count is masked to 5 bits: 32 is 0 for a 32-bit operand, but the register is still
        // written (upper half cleared).
        #expect(try shift(.shr, 0xffff_ffff_0000_0001, by: 32, size: 4, flags: allSet) == (1, allSet))
        #expect(try shift(.rcl, 0x1, by: 0, size: 8, flags: F.cf) == (0x1, F.cf))
    }

    @Test func shlCountOneAndBoundaries() throws {
        // 0x80 << 1: CF = 1, result 0, OF = MSB(result) ^ CF = 1.
        let (r, f) = try shift(.shl, 0x80, by: 1, size: 1)
        #expect(r == 0)
        #expect(f & (F.cf | F.of | F.zf | F.pf | F.sf) == F.cf | F.of | F.zf | F.pf)
        // 0x40 << 1 = 0x80: OF (sign changed), no CF.
        let (r2, f2) = try shift(.shl, 0x40, by: 1, size: 1)
        #expect(r2 == 0x80 && f2 & (F.cf | F.of | F.sf) == F.of | F.sf)
        // 64-bit shift by 63 keeps the low bit at the top; CF = bit 1 of the source.
        let (r3, f3) = try shift(.shl, 3, by: 63, size: 8)
        #expect(r3 == 1 << 63 && f3 & F.cf != 0)
        // Byte shifted by 8 (count not masked to the size): result 0, CF = old bit 0.
        let (r4, f4) = try shift(.shl, 0x01, by: 8, size: 1)
        #expect(r4 == 0 && f4 & (F.cf | F.zf) == F.cf | F.zf)
    }

    @Test func shrAndSar() throws {
        // SHR count 1: OF = old MSB.
        let (r, f) = try shift(.shr, 0x81, by: 1, size: 1)
        #expect(r == 0x40 && f & (F.cf | F.of) == F.cf | F.of)
        // SAR keeps the sign; count 1 → OF = 0.
        let (r2, f2) = try shift(.sar, 0x81, by: 1, size: 1)
        #expect(r2 == 0xc0 && f2 & (F.cf | F.of | F.sf) == F.cf | F.sf)
        // SAR of a byte by 20 (> 8): all sign bits, CF = sign.
        let (r3, f3) = try shift(.sar, 0x80, by: 20, size: 1)
        #expect(r3 == 0xff && f3 & F.cf != 0)
        // SHR of a word by 16: zero, CF = old bit 15.
        let (r4, f4) = try shift(.shr, 0x8000, by: 16, size: 2)
        #expect(r4 == 0 && f4 & (F.cf | F.zf) == F.cf | F.zf)
    }

    @Test func rotatesChangeOnlyCarryAndOverflow() throws {
        let (r, f) = try shift(.rol, 0x81, by: 1, size: 1, flags: F.zf | F.sf)
        #expect(r == 0x03)
        #expect(f == F.zf | F.sf | F.cf | F.of)  // CF = LSB = 1, OF = MSB(0) ^ 1
        let (r2, f2) = try shift(.ror, 0x01, by: 1, size: 4)
        #expect(r2 == 0x8000_0000 && f2 == F.cf | F.of)
        // Rotate a byte by 8: value unchanged, CF = LSB of the result.
        let (r3, f3) = try shift(.rol, 0x81, by: 8, size: 1)
        #expect(r3 == 0x81 && f3 & F.cf != 0)
    }

    @Test func rotateThroughCarry() throws {
        // RCL 0x80 by 1 with CF=1: result 0x01, CF = 1, OF = MSB(0) ^ CF = 1.
        #expect(try shift(.rcl, 0x80, by: 1, size: 1, flags: F.cf) == (0x01, F.cf | F.of))
        // RCR 0x01 by 1 with CF=0: result 0, CF = 1, OF = top two bits equal → 0.
        #expect(try shift(.rcr, 0x01, by: 1, size: 1) == (0x00, F.cf))
        // A byte rotates through 9 bits: count 9 leaves value and CF.
        #expect(try shift(.rcl, 0x5a, by: 9, size: 1, flags: F.cf).0 == 0x5a)
        // 64-bit RCL by 64 is 0 after masking to 6 bits... count 63 instead: bit 0 goes to 63.
        let (r, f) = try shift(.rcl, 1, by: 63, size: 8)
        #expect(r == 1 << 63 && f & F.cf == 0)
        let (r2, f2) = try shift(.rcr, 1, by: 1, size: 8, flags: F.cf)
        #expect(r2 == 1 << 63 && f2 & F.cf != 0)
    }

    @Test func doubleShifts() throws {
        let h = Harness()
        h.cpu.gpr[0] = 0x8000_0001; h.cpu.gpr[2] = 0xf000_0000
        try h.run(insn(.shld, reg(0, 4), reg(2, 4), imm(1), immediate: 4))
        #expect(h.cpu.gpr[0] == 0x0000_001f)
        #expect(h.status & F.cf == 0)  // last bit out: bit 28 of 0x80000001
        h.cpu.gpr[0] = 0x0000_0000_0000_0003; h.cpu.gpr[2] = 0x1
        try h.run(insn(.shrd, reg(0, 8), reg(2, 8), reg(1, 1)))  // count in CL = 0 → nothing
        #expect(h.cpu.gpr[0] == 3)
        h.cpu.gpr[1] = 1
        try h.run(insn(.shrd, reg(0, 8), reg(2, 8), reg(1, 1)))
        #expect(h.cpu.gpr[0] == 0x8000_0000_0000_0001)
        #expect(h.status & (F.cf | F.of | F.sf) == F.cf | F.of | F.sf)
    }
}

@Suite("General: bit instructions")
struct GeneralBitTests {
    @Test func btOnRegisterMasksTheOffset() throws {
        let h = Harness()
        h.cpu.gpr[0] = 0x10; h.cpu.gpr[1] = 36  // 36 mod 32 = 4
        try h.run(insn(.bts, reg(0, 4), reg(1, 4)))
        #expect(h.cpu.gpr[0] == 0x10 && h.status & F.cf != 0)
        try h.run(insn(.btr, reg(0, 4), imm(1), immediate: 4))
        #expect(h.cpu.gpr[0] == 0 && h.status & F.cf != 0)
        try h.run(insn(.btc, reg(0, 8), imm(1), immediate: 63))
        #expect(h.cpu.gpr[0] == 1 << 63 && h.status & F.cf == 0)
    }

    @Test func btMemoryRegisterOffsetIsSignedAndSelectsTheWord() throws {
        let h = Harness()
        h.store32(0, at: 0x3000)
        h.store32(0, at: 0x3004)
        h.store32(0, at: 0x2ffc)
        h.cpu.gpr[3] = 0x3000
        h.cpu.gpr[1] = 33  // dword 1, bit 1
        try h.run(insn(.bts, mem(4), reg(1, 4), memory: address(base: 3)))
        #expect(h.load32(0x3004) == 2 && h.load32(0x3000) == 0)
        h.cpu.gpr[1] = UInt64(bitPattern: -1)  // dword -1, bit 31 (32-bit operand: offset is a signed dword)
        h.cpu.gpr[1] &= 0xffff_ffff
        try h.run(insn(.bts, mem(4), reg(1, 4), memory: address(base: 3)))
        #expect(h.load32(0x2ffc) == 0x8000_0000)
        // An immediate offset stays inside the operand.
        try h.run(insn(.bt, mem(4), imm(1), immediate: 33, memory: address(base: 3)))
        #expect(h.status & F.cf == 0)  // bit 1 of [0x3000] is clear
    }

    @Test func bitScans() throws {
        let h = Harness()
        h.cpu.gpr[1] = 0x0000_0100_0000_0010
        try h.run(insn(.bsf, reg(0, 8), reg(1, 8)))
        #expect(h.cpu.gpr[0] == 4 && h.status & F.zf == 0)
        try h.run(insn(.bsr, reg(0, 8), reg(1, 8)))
        #expect(h.cpu.gpr[0] == 40)
        // Zero source: ZF = 1, destination unchanged.
        h.cpu.gpr[1] = 0; h.cpu.gpr[0] = 0xdead_beef_dead_beef
        try h.run(insn(.bsf, reg(0, 4), reg(1, 4)))
        #expect(h.cpu.gpr[0] == 0xdead_beef_dead_beef && h.status & F.zf != 0)
        try h.run(insn(.tzcnt, reg(0, 2), reg(1, 2)))
        #expect(h.cpu.gpr[0] == 0xdead_beef_dead_0010 && h.status & (F.cf | F.zf) == F.cf)
        h.cpu.gpr[1] = 0x8000_0000
        try h.run(insn(.lzcnt, reg(0, 4), reg(1, 4)))
        #expect(h.cpu.gpr[0] == 0 && h.status & (F.cf | F.zf) == F.zf)
        h.cpu.gpr[1] = 0xff00_ff00_0000_0001
        h.cpu.rflags |= F.cf | F.of
        try h.run(insn(.popcnt, reg(0, 8), reg(1, 8)))
        #expect(h.cpu.gpr[0] == 17 && h.status == 0)
    }

    @Test func byteSwap() throws {
        let h = Harness()
        h.cpu.gpr[2] = 0x1122_3344_5566_7788
        try h.run(insn(.bswap, reg(2, 8)))
        #expect(h.cpu.gpr[2] == 0x8877_6655_4433_2211)
        try h.run(insn(.bswap, reg(2, 4)))
        #expect(h.cpu.gpr[2] == 0x1122_3344)
    }
}
