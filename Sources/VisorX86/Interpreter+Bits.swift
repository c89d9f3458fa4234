// Bit instructions: BT BTS BTR BTC, BSF BSR, TZCNT LZCNT POPCNT, BSWAP.
//
// Flags: BT* set CF to the selected bit and leave the others (ZF unaffected; OF SF AF PF
// undefined, kept). BSF/BSR set ZF (source zero: ZF = 1 and the destination is not written);
// the undefined CF OF SF AF PF are kept. TZCNT/LZCNT: CF = source was zero, ZF = result is
// zero (others undefined, kept). POPCNT clears OF SF AF CF PF and sets ZF = source was zero.

import VisorX86Decode

extension X86Machine {
    func executeBitTest(_ insn: DecodedInstruction) throws(X86Interruption) {
        if insn.prefixes.lock && lockMode == .none { return try executeLocked(insn) }
        let size = operationSize(insn)
        let bits = UInt64(size) * 8
        let offset = try readValue(insn.source, insn, size: size)
        let bit = offset & (bits - 1)
        let value: UInt64
        // Where the (possibly modified) word lives when it is not the operand itself.
        var wordOffset: UInt64? = nil
        if insn.destination.kind == .memory && insn.source.kind != .immediate {
            // A register bit offset is signed and may select a word outside the operand.
            let word = FlagMath.signExtend(offset, from: size) >> Int64(bits.trailingZeroBitCount)
            let address = (effectiveAddress(insn) &+ UInt64(bitPattern: word &* Int64(size)))
                & Self.mask(insn.addressSize)
            value = try readMemoryRMW(segment: insn.memory.segment, offset: address, size: Int(size))
            wordOffset = address
        } else {
            value = try readRMW(insn.destination, insn)
        }
        let selected = (value >> bit) & 1
        let updated: UInt64
        switch insn.operation {
        case .bts: updated = value | (1 << bit)
        case .btr: updated = value & ~(1 << bit)
        case .btc: updated = value ^ (1 << bit)
        default: updated = value
        }
        if insn.operation != .bt {
            if let wordOffset {
                try writeMemoryRMW(segment: insn.memory.segment, offset: wordOffset, size: Int(size), value: updated)
            } else {
                try writeRMW(insn.destination, insn, updated)
            }
        }
        setFlags(selected, mask: RFlag.carry)
        retire(insn)
    }

    func executeBitScan(_ insn: DecodedInstruction) throws(X86Interruption) {
        let size = operationSize(insn)
        let bits = UInt64(size) * 8
        let source = try readValue(insn.source, insn, size: size)
        switch insn.operation {
        case .bsf, .bsr:
            if source == 0 {
                cpu.rflags |= RFlag.zero
            } else {
                let index = insn.operation == .bsf
                    ? UInt64(source.trailingZeroBitCount) : UInt64(63 - source.leadingZeroBitCount)
                try write(insn.destination, insn, index)
                cpu.rflags &= ~RFlag.zero
            }
        case .tzcnt, .lzcnt:
            let count: UInt64
            if source == 0 {
                count = bits
            } else if insn.operation == .tzcnt {
                count = UInt64(source.trailingZeroBitCount)
            } else {
                count = UInt64(source.leadingZeroBitCount) - (64 - bits)
            }
            try write(insn.destination, insn, count)
            var f: UInt64 = 0
            if source == 0 { f |= RFlag.carry }
            if count == 0 { f |= RFlag.zero }
            setFlags(f, mask: RFlag.carry | RFlag.zero)
        default:  // .popcnt
            try write(insn.destination, insn, UInt64(source.nonzeroBitCount))
            setFlags(source == 0 ? RFlag.zero : 0)
        }
        retire(insn)
    }

    /// BSWAP register. With a 16-bit operand the result is undefined; this clears the low word,
    /// as Intel and AMD parts do.
    func executeByteSwap(_ insn: DecodedInstruction) throws(X86Interruption) {
        let size = operationSize(insn)
        let v = try read(insn.destination, insn)
        let r: UInt64
        switch size {
        case 8: r = v.byteSwapped
        case 4: r = UInt64(UInt32(truncatingIfNeeded: v).byteSwapped)
        default: r = 0
        }
        try write(insn.destination, insn, r)
        retire(insn)
    }
}
