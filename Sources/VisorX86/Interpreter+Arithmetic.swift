// Two-operand ALU instructions (ADD OR ADC SBB AND SUB XOR CMP TEST) and the one-operand
// INC DEC NOT NEG. Each reads every operand, computes, writes the destination (a memory write
// may fault, leaving the flags untouched), then writes the flags. With LOCK the destination is
// read and written through readRMW/writeRMW: an atomic load and a compare-exchange (SMP.swift).

import VisorX86Decode

extension X86Machine {
    func executeBinaryArithmetic(_ insn: DecodedInstruction) throws(X86Interruption) {
        if insn.prefixes.lock && lockMode == .none { return try executeLocked(insn) }
        let size = operationSize(insn)
        let m = Self.mask(size)
        let a = try readRMW(insn.destination, insn) & m
        let b = try readValue(insn.source, insn, size: size)
        let carryIn = cpu.rflags & RFlag.carry
        let r: UInt64
        let f: UInt64
        switch insn.operation {
        case .add:
            r = (a &+ b) & m; f = FlagMath.add(a, b, r, size)
        case .adc:
            r = (a &+ b &+ carryIn) & m; f = FlagMath.add(a, b, r, size)
        case .sub, .cmp:
            r = (a &- b) & m; f = FlagMath.sub(a, b, r, size)
        case .sbb:
            r = (a &- b &- carryIn) & m; f = FlagMath.sub(a, b, r, size)
        case .and, .test:
            r = a & b; f = FlagMath.logic(r, size)
        case .or:
            r = a | b; f = FlagMath.logic(r, size)
        default:  // .xor
            r = a ^ b; f = FlagMath.logic(r, size)
        }
        if insn.operation != .cmp && insn.operation != .test {
            try writeRMW(insn.destination, insn, r)
        }
        setFlags(f)
        retire(insn)
    }

    func executeUnaryArithmetic(_ insn: DecodedInstruction) throws(X86Interruption) {
        if insn.prefixes.lock && lockMode == .none { return try executeLocked(insn) }
        let size = operationSize(insn)
        let m = Self.mask(size)
        let a = try readRMW(insn.destination, insn) & m
        switch insn.operation {
        case .inc:
            let r = (a &+ 1) & m
            try writeRMW(insn.destination, insn, r)
            setFlags(FlagMath.add(a, 1, r, size), mask: RFlag.status & ~RFlag.carry)
        case .dec:
            let r = (a &- 1) & m
            try writeRMW(insn.destination, insn, r)
            setFlags(FlagMath.sub(a, 1, r, size), mask: RFlag.status & ~RFlag.carry)
        case .not:
            try writeRMW(insn.destination, insn, ~a & m)
        default:  // .neg: 0 - a, so CF = (a != 0)
            let r = (0 &- a) & m
            try writeRMW(insn.destination, insn, r)
            setFlags(FlagMath.sub(0, a, r, size))
        }
        retire(insn)
    }
}
