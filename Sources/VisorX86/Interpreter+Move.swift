// Data movement and exchange: MOV MOVZX MOVSX LEA CMOVcc SETcc XLAT, CBW-family and
// CWD-family, XCHG CMPXCHG CMPXCHG8B/16B XADD. None of these changes flags except the
// compare-exchanges (as CMP) and XADD (as ADD).
//
// Operand writes that can fault (memory) are done before register writes, so a fault leaves
// the registers as they were. That order is also what lets a locked instruction (and XCHG with
// memory, always locked) run again from the start when its compare-exchange loses (`SMP.swift`).

import VisorX86Decode

extension X86Machine {
    func executeMove(_ insn: DecodedInstruction) throws(X86Interruption) {
        switch insn.operation {
        case .mov:
            let size = operationSize(insn)
            try write(insn.destination, insn, try readValue(insn.source, insn, size: size))
        case .movzx:
            try write(insn.destination, insn, try read(insn.source, insn))
        case .movsx:
            let v = try read(insn.source, insn)
            let extended = UInt64(bitPattern: FlagMath.signExtend(v, from: insn.source.size))
            try write(insn.destination, insn, extended & Self.mask(operationSize(insn)))
        case .lea:
            try write(insn.destination, insn, effectiveAddress(insn) & Self.mask(operationSize(insn)))
        case .cmovcc:
            let v = try read(insn.source, insn)
            if conditionHolds(insn.condition) {
                try write(insn.destination, insn, v)
            } else if insn.destination.kind == .register && insn.destination.size == 4 {
                // The destination is written even when the condition is false: the upper half clears.
                writeRegister(insn.destination.index, size: 4, readRegister(insn.destination.index, size: 4))
            }
        case .setcc:
            try write(insn.destination, insn, conditionHolds(insn.condition) ? 1 : 0)
        case .xlat:
            let segment = insn.memory.segment  // DS or the override
            let offset = (cpu.gpr[X86CPU.rbx] &+ (cpu.gpr[X86CPU.rax] & 0xff)) & Self.mask(insn.addressSize)
            let v = try readMemory(segment: segment, offset: offset, size: 1)
            writeRegister(0, size: 1, v)
        case .signExtendAccumulator:
            // CBW / CWDE / CDQE: rAX ← sign-extend the low half of rAX.
            let size = insn.operandSize
            let half = size / 2
            let v = UInt64(bitPattern: FlagMath.signExtend(readRegister(0, size: half), from: half))
            writeRegister(0, size: size, v & Self.mask(size))
        default:  // .signExtendIntoDX: CWD / CDQ / CQO
            let size = insn.operandSize
            let negative = readRegister(0, size: size) & FlagMath.signBit(size) != 0
            writeRegister(2, size: size, negative ? Self.mask(size) : 0)
        }
        retire(insn)
    }

    func executeExchange(_ insn: DecodedInstruction) throws(X86Interruption) {
        if lockMode == .none && (insn.prefixes.lock || (insn.operation == .xchg
            && (insn.destination.kind == .memory || insn.source.kind == .memory))) {
            // XCHG with a memory operand is locked whether or not it has the prefix.
            return try executeLocked(insn)
        }
        let size = operationSize(insn)
        let m = Self.mask(size)
        let d = try readRMW(insn.destination, insn) & m
        let s = try readRMW(insn.source, insn) & m
        switch insn.operation {
        case .xchg:
            if insn.source.kind == .memory {
                try writeRMW(insn.source, insn, d)
                try writeRMW(insn.destination, insn, s)
            } else {
                try writeRMW(insn.destination, insn, s)
                try writeRMW(insn.source, insn, d)
            }
        case .xadd:
            let sum = (d &+ s) & m
            // SDM order: SRC ← DEST, then DEST ← SUM (so `xadd r, r` on one register leaves the sum);
            // a memory destination is written first so a fault changes nothing.
            if insn.destination.kind == .memory {
                try writeRMW(insn.destination, insn, sum)
                try writeRMW(insn.source, insn, d)
            } else {
                try writeRMW(insn.source, insn, d)
                try writeRMW(insn.destination, insn, sum)
            }
            setFlags(FlagMath.add(d, s, sum, size))
        default:  // .cmpxchg: compare the accumulator with the destination
            let accumulator = readRegister(0, size: size)
            let flags = FlagMath.sub(accumulator, d, (accumulator &- d) & m, size)
            if accumulator == d {
                try writeRMW(insn.destination, insn, s)
            } else {
                // A memory destination is always written (with its own value on failure).
                if insn.destination.kind == .memory { try writeRMW(insn.destination, insn, d) }
                writeRegister(0, size: size, d)
            }
            setFlags(flags)
        }
        retire(insn)
    }

    /// CMPXCHG8B m64 / CMPXCHG16B m128: compare rDX:rAX with memory; equal → memory ← rCX:rBX
    /// and ZF = 1; else rDX:rAX ← memory and ZF = 0. Memory is written either way.
    func executeCompareExchangeDouble(_ insn: DecodedInstruction) throws(X86Interruption) {
        if insn.prefixes.lock && lockMode == .none { return try executeLocked(insn) }
        let wide = insn.operandSize == 16 || insn.destination.size == 16
        let offset = effectiveAddress(insn)
        let segment = insn.memory.segment
        if wide {
            // 16 bytes are beyond the host atomics used for locked operands: take the machine lock.
            if lockMode == .atomic { throw .stop(.retryLocked(needsMachineLock: true)) }
            let linear = try linearAddress(segment: segment, offset: offset, size: 16)
            // Aligned, so both halves are on one page: the first write cannot succeed alone.
            guard linear & 15 == 0 else { throw .fault(.gp(0)) }
            let low = try readLinear(linear, size: 8)
            let high = try readLinear(linear &+ 8, size: 8)
            let equal = low == cpu.gpr[X86CPU.rax] && high == cpu.gpr[X86CPU.rdx]
            let newLow = equal ? cpu.gpr[X86CPU.rbx] : low
            let newHigh = equal ? cpu.gpr[X86CPU.rcx] : high
            try writeLinear(linear, size: 8, value: newLow)
            try writeLinear(linear &+ 8, size: 8, value: newHigh)
            if !equal {
                cpu.gpr[X86CPU.rax] = low
                cpu.gpr[X86CPU.rdx] = high
            }
            setFlags(equal ? RFlag.zero : 0, mask: RFlag.zero)
        } else {
            let old = try readMemoryRMW(segment: segment, offset: offset, size: 8)
            let expected = (readRegister(2, size: 4) << 32) | readRegister(0, size: 4)
            let equal = old == expected
            let replacement = (readRegister(1, size: 4) << 32) | readRegister(3, size: 4)
            try writeMemoryRMW(segment: segment, offset: offset, size: 8, value: equal ? replacement : old)
            if !equal {
                writeRegister(0, size: 4, old & 0xffff_ffff)
                writeRegister(2, size: 4, old >> 32)
            }
            setFlags(equal ? RFlag.zero : 0, mask: RFlag.zero)
        }
        retire(insn)
    }
}
