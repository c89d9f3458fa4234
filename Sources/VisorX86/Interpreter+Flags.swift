// RFLAGS for the general-purpose instructions: the bit names, the arithmetic-flag formulas
// every family shares, condition codes, and the flag instructions themselves (CLC ... STD,
// LAHF/SAHF).
//
// Flags are computed eagerly: `cpu.rflags` is always the architectural value. The formulas
// work on operands and results already masked to the operand size, so one function serves
// bytes through quadwords:
//   * carry out of an addition  = top bit of (a & b) | ((a | b) & ~r)
//   * borrow out of a subtraction = top bit of (~a & b) | ((~a | b) & r)
//   * AF = bit 4 of a ^ b ^ r (the carry or borrow into bit 4)
//   * OF = top bit of (a ^ r) & (b ^ r) for addition, (a ^ b) & (a ^ r) for subtraction.
// These are exact for ADC/SBB too, because the carry-in shows up in the result.

import VisorX86Decode

/// RFLAGS bit masks.
enum RFlag {
    static let carry: UInt64 = 1 << 0
    static let reserved1: UInt64 = 1 << 1
    static let parity: UInt64 = 1 << 2
    static let auxiliary: UInt64 = 1 << 4
    static let zero: UInt64 = 1 << 6
    static let sign: UInt64 = 1 << 7
    static let trap: UInt64 = 1 << 8
    static let interrupt: UInt64 = 1 << 9
    static let direction: UInt64 = 1 << 10
    static let overflow: UInt64 = 1 << 11
    static let iopl: UInt64 = 3 << 12
    static let nestedTask: UInt64 = 1 << 14
    static let resume: UInt64 = 1 << 16
    static let virtual8086: UInt64 = 1 << 17
    static let alignmentCheck: UInt64 = 1 << 18
    static let virtualInterrupt: UInt64 = 1 << 19
    static let virtualInterruptPending: UInt64 = 1 << 20
    static let identification: UInt64 = 1 << 21

    /// The six arithmetic status flags: CF, PF, AF, ZF, SF, OF.
    static let status: UInt64 = carry | parity | auxiliary | zero | sign | overflow
}

/// The arithmetic-flag formulas. Inputs and results are masked to `size` bytes.
enum FlagMath {
    @inline(__always)
    static func signBit(_ size: UInt8) -> UInt64 { UInt64(1) << (UInt64(size) &* 8 &- 1) }

    /// SF, ZF and PF of a result (PF looks at the low byte only: set when it has an even
    /// number of one bits).
    @inline(__always)
    static func signZeroParity(_ result: UInt64, _ size: UInt8) -> UInt64 {
        var f: UInt64 = 0
        if result & X86Machine.mask(size) == 0 { f |= RFlag.zero }
        if result & signBit(size) != 0 { f |= RFlag.sign }
        if (result & 0xff).nonzeroBitCount & 1 == 0 { f |= RFlag.parity }
        return f
    }

    /// All six status flags of `r = a + b (+ carry-in)`.
    @inline(__always)
    static func add(_ a: UInt64, _ b: UInt64, _ r: UInt64, _ size: UInt8) -> UInt64 {
        let top = signBit(size)
        var f = signZeroParity(r, size)
        if ((a & b) | ((a | b) & ~r)) & top != 0 { f |= RFlag.carry }
        if (a ^ b ^ r) & 0x10 != 0 { f |= RFlag.auxiliary }
        if (a ^ r) & (b ^ r) & top != 0 { f |= RFlag.overflow }
        return f
    }

    /// All six status flags of `r = a - b (- borrow-in)`.
    @inline(__always)
    static func sub(_ a: UInt64, _ b: UInt64, _ r: UInt64, _ size: UInt8) -> UInt64 {
        let top = signBit(size)
        var f = signZeroParity(r, size)
        if ((~a & b) | ((~a | b) & r)) & top != 0 { f |= RFlag.carry }
        if (a ^ b ^ r) & 0x10 != 0 { f |= RFlag.auxiliary }
        if (a ^ b) & (a ^ r) & top != 0 { f |= RFlag.overflow }
        return f
    }

    /// Flags of AND/OR/XOR/TEST: CF = OF = 0, SF/ZF/PF from the result, AF (undefined) = 0.
    @inline(__always)
    static func logic(_ r: UInt64, _ size: UInt8) -> UInt64 { signZeroParity(r, size) }

    /// `value` (the low `size` bytes) sign-extended to 64 bits.
    @inline(__always)
    static func signExtend(_ value: UInt64, from size: UInt8) -> Int64 {
        let shift = 64 &- UInt64(size) &* 8
        return Int64(bitPattern: value << shift) >> shift
    }
}

extension X86Machine {
    /// Replaces the flags in `mask` with those in `flags`.
    @inline(__always)
    func setFlags(_ flags: UInt64, mask: UInt64 = RFlag.status) {
        cpu.rflags = (cpu.rflags & ~mask) | (flags & mask)
    }

    @inline(__always)
    func flag(_ bit: UInt64) -> Bool { cpu.rflags & bit != 0 }

    /// The Jcc/SETcc/CMOVcc condition `code` (0 O ... F G) on the current flags.
    @inline(__always)
    func conditionHolds(_ code: UInt8) -> Bool {
        let f = cpu.rflags
        let holds: Bool
        switch code >> 1 {
        case 0: holds = f & RFlag.overflow != 0
        case 1: holds = f & RFlag.carry != 0
        case 2: holds = f & RFlag.zero != 0
        case 3: holds = f & (RFlag.carry | RFlag.zero) != 0
        case 4: holds = f & RFlag.sign != 0
        case 5: holds = f & RFlag.parity != 0
        case 6: holds = (f & RFlag.sign != 0) != (f & RFlag.overflow != 0)
        default: holds = f & RFlag.zero != 0 || (f & RFlag.sign != 0) != (f & RFlag.overflow != 0)
        }
        return holds != (code & 1 != 0)
    }

    /// The instruction pointer's width in the current code mode.
    @inline(__always)
    var instructionPointerMask: UInt64 {
        switch cpu.codeMode {
        case .bits64: return .max
        case .bits32: return 0xffff_ffff
        case .bits16: return 0xffff
        }
    }

    /// Steps RIP past `insn`: the instruction retired without branching.
    @inline(__always)
    func retire(_ insn: DecodedInstruction) {
        cpu.rip = (cpu.rip &+ UInt64(insn.length)) & instructionPointerMask
    }

    /// Reads a source operand as a `size`-byte value. Immediates are taken at `size` whatever
    /// width the decoder recorded for them (they are already sign- or zero-extended).
    @inline(__always)
    func readValue(_ operand: Operand, _ insn: DecodedInstruction, size: UInt8) throws(X86Interruption) -> UInt64 {
        if operand.kind == .immediate { return insn.immediate & Self.mask(size) }
        return try read(operand, insn) & Self.mask(size)
    }

    /// The size of the operation: the destination's width, or the operand size.
    @inline(__always)
    func operationSize(_ insn: DecodedInstruction) -> UInt8 {
        let s = insn.destination.size
        return s == 0 || s > 8 ? insn.operandSize : s
    }

    /// CLC, STC, CMC, CLD, STD.
    func executeFlagOperation(_ insn: DecodedInstruction) {
        switch insn.operation {
        case .clc: cpu.rflags &= ~RFlag.carry
        case .stc: cpu.rflags |= RFlag.carry
        case .cmc: cpu.rflags ^= RFlag.carry
        case .cld: cpu.rflags &= ~RFlag.direction
        case .std: cpu.rflags |= RFlag.direction
        case .lahf:
            // AH ← SF:ZF:0:AF:0:PF:1:CF
            let low = (cpu.rflags & (RFlag.status & 0xff)) | RFlag.reserved1
            cpu.gpr[0] = (cpu.gpr[0] & ~0xff00) | (low << 8)
        case .sahf:
            let ah = (cpu.gpr[0] >> 8) & 0xff
            let bits = RFlag.sign | RFlag.zero | RFlag.auxiliary | RFlag.parity | RFlag.carry
            cpu.rflags = (cpu.rflags & ~bits) | (ah & bits) | RFlag.reserved1
        default: return
        }
        retire(insn)
    }
}
