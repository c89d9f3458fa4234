// General-purpose instructions: arithmetic, logic, shifts, bits, moves, stack, control flow,
// strings, flags. One file per family (`Interpreter+Arithmetic.swift`, `+Multiply`, `+Shift`,
// `+Bits`, `+Move`, `+Stack`, `+ControlFlow`, `+String`, `+Flags`); this one only dispatches.
// x87, MMX and SSE are dispatched from `Interpreter+SIMD.swift`.
//
// Every handler reads all its operands and computes before it writes, writes memory before
// registers, and advances RIP (or branches) only on success: a fault leaves the instruction
// without effect. Flags are eager (`cpu.rflags` is always architectural): see Interpreter+Flags.

import VisorX86Decode

extension X86Machine {
    /// Executes `insn` if it is a general-purpose instruction; false if it is not one.
    func executeGeneral(_ insn: DecodedInstruction) throws(X86Interruption) -> Bool {
        switch insn.operation {
        case .add, .or, .adc, .sbb, .and, .sub, .xor, .cmp, .test:
            try executeBinaryArithmetic(insn)
        case .inc, .dec, .not, .neg:
            try executeUnaryArithmetic(insn)
        case .mul, .imulWide, .imul:
            try executeMultiply(insn)
        case .div, .idiv:
            try executeDivide(insn)
        case .rol, .ror, .rcl, .rcr, .shl, .shr, .sar:
            try executeShift(insn)
        case .shld, .shrd:
            try executeDoubleShift(insn)
        case .bt, .bts, .btr, .btc:
            try executeBitTest(insn)
        case .bsf, .bsr, .tzcnt, .lzcnt, .popcnt:
            try executeBitScan(insn)
        case .bswap:
            try executeByteSwap(insn)
        case .mov, .movzx, .movsx, .lea, .cmovcc, .setcc, .xlat, .signExtendAccumulator, .signExtendIntoDX:
            try executeMove(insn)
        case .xchg, .xadd, .cmpxchg:
            try executeExchange(insn)
        case .cmpxchgDouble:
            try executeCompareExchangeDouble(insn)
        case .push, .pop, .pushf, .popf, .pusha, .popa, .enter, .leave:
            return try executeStack(insn)
        case .jmpRelative, .callRelative, .jcc, .jmpIndirect, .callIndirect, .ret,
             .loop, .loopEqual, .loopNotEqual, .jumpIfCXZero:
            try executeControlFlow(insn)
        case .clc, .stc, .cmc, .cld, .std, .lahf, .sahf:
            executeFlagOperation(insn)
        case .movs, .cmps, .stos, .lods, .scas:
            try executeString(insn)
        case .nop, .pause, .lfence, .mfence, .sfence:
            retire(insn)
        case .clflush:
            // No caches to flush; the address must still be valid.
            _ = try linearAddress(segment: insn.memory.segment, offset: effectiveAddress(insn), size: 1)
            retire(insn)
        case .clwb:
            // The 66 prefix (folded into a 2-byte operand size) makes it CLWB; without it the
            // encoding is XSAVEOPT, which is not offered. Like CLFLUSH, only the address matters.
            guard insn.operandSize == 2, offersLeaf7EBX(bit: 24) else { throw .fault(.undefined) }
            _ = try linearAddress(segment: insn.memory.segment, offset: effectiveAddress(insn), size: 1)
            retire(insn)
        default:
            return false
        }
        return true
    }
}
