// Shifts and rotates: ROL ROR RCL RCR SHL SHR SAR, and the double shifts SHLD SHRD.
//
// The count is masked to 5 bits (6 for 64-bit operands). A masked count of 0 changes no flag
// (a 32-bit register destination is still written, so its upper half is cleared). Defined
// flags follow the SDM; where it leaves a flag undefined we compute the count-1 formula
// (OF for larger counts) or clear it (AF after shifts), and tests mask those.
//   SHL/SAL: CF = last bit out, OF (count 1) = MSB(result) ^ CF.
//   SHR: CF = last bit out, OF (count 1) = MSB(original).   SAR: OF (count 1) = 0.
//   ROL: CF = LSB(result), OF = MSB(result) ^ CF.   ROR: CF = MSB(result), OF = two top bits differ.
//   RCL/RCR rotate size + 1 bits (count mod 9 / 17 for bytes / words); only CF and OF change.
//   SHLD/SHRD: CF = last bit out of the destination, OF (count 1) = sign changed.

import VisorX86Decode

extension X86Machine {
    /// Writes back the destination of a shift whose masked count is zero: flags are unchanged,
    /// but a 32-bit register is still written (zero-extended).
    @inline(__always)
    private func shiftByZero(_ insn: DecodedInstruction, value: UInt64) throws(X86Interruption) {
        if insn.destination.kind == .register && insn.destination.size == 4 {
            writeRegister(insn.destination.index, size: 4, value)
        }
        retire(insn)
    }

    func executeShift(_ insn: DecodedInstruction) throws(X86Interruption) {
        let size = operationSize(insn)
        let bits = UInt64(size) * 8
        let m = Self.mask(size)
        let top = FlagMath.signBit(size)
        let v = try read(insn.destination, insn) & m
        let count = try readValue(insn.source, insn, size: 1) & (size == 8 ? 0x3f : 0x1f)
        guard count != 0 else { return try shiftByZero(insn, value: v) }
        let cf = cpu.rflags & RFlag.carry
        var r: UInt64
        var carry: UInt64
        var overflow: Bool
        var onlyCarryAndOverflow = false
        switch insn.operation {
        case .shl:
            r = (v << count) & m
            carry = count <= bits ? (v >> (bits - count)) & 1 : 0
            overflow = (r & top != 0) != (carry != 0)
        case .shr:
            r = v >> count
            carry = (v >> (count - 1)) & 1
            overflow = v & top != 0
        case .sar:
            let s = FlagMath.signExtend(v, from: size)
            r = UInt64(bitPattern: s >> Int64(min(count, 63))) & m
            carry = UInt64(bitPattern: s >> Int64(count - 1)) & 1
            overflow = false
        case .rol:
            let c = count % bits
            r = c == 0 ? v : ((v << c) | (v >> (bits - c))) & m
            carry = r & 1
            overflow = (r & top != 0) != (carry != 0)
            onlyCarryAndOverflow = true
        case .ror:
            let c = count % bits
            r = c == 0 ? v : ((v >> c) | (v << (bits - c))) & m
            carry = r & top != 0 ? 1 : 0
            overflow = (r & top != 0) != (r & (top >> 1) != 0)
            onlyCarryAndOverflow = true
        case .rcl:
            let c = count % (bits + 1)
            if c == 0 {
                r = v; carry = cf
            } else {
                r = ((v << c) | (cf << (c - 1)) | (v >> (bits + 1 - c))) & m
                carry = (v >> (bits - c)) & 1
            }
            overflow = (r & top != 0) != (carry != 0)
            onlyCarryAndOverflow = true
        default:  // .rcr
            let c = count % (bits + 1)
            if c == 0 {
                r = v; carry = cf
            } else {
                r = ((v >> c) | (cf << (bits - c)) | (v << (bits + 1 - c))) & m
                carry = (v >> (c - 1)) & 1
            }
            overflow = (r & top != 0) != (r & (top >> 1) != 0)
            onlyCarryAndOverflow = true
        }
        try write(insn.destination, insn, r)
        var f = carry != 0 ? RFlag.carry : 0
        if overflow { f |= RFlag.overflow }
        if onlyCarryAndOverflow {
            setFlags(f, mask: RFlag.carry | RFlag.overflow)
        } else {
            setFlags(f | FlagMath.signZeroParity(r, size))
        }
        retire(insn)
    }

    /// SHLD / SHRD destination, source, count (`source2`).
    func executeDoubleShift(_ insn: DecodedInstruction) throws(X86Interruption) {
        let size = operationSize(insn)
        let bits = UInt64(size) * 8
        let m = Self.mask(size)
        let top = FlagMath.signBit(size)
        let v = try read(insn.destination, insn) & m
        let s = try readValue(insn.source, insn, size: size)
        let count = try readValue(insn.source2, insn, size: 1) & (size == 8 ? 0x3f : 0x1f)
        guard count != 0 else { return try shiftByZero(insn, value: v) }
        let r: UInt64
        let carry: UInt64
        if size == 2 {
            // Counts above 16 are undefined for words; shift through destination:source:destination
            // as a 48-bit value, which is what Intel parts do.
            if insn.operation == .shld {
                let w = (v << 32) | (s << 16) | v
                r = (w << count) >> 32 & m
                carry = (w >> (48 - count)) & 1
            } else {
                let w = (v << 32) | (s << 16) | v
                r = (w >> count) & m
                carry = (w >> (count - 1)) & 1
            }
        } else if insn.operation == .shld {
            r = ((v << count) | (s >> (bits - count))) & m
            carry = (v >> (bits - count)) & 1
        } else {
            r = ((v >> count) | (s << (bits - count))) & m
            carry = (v >> (count - 1)) & 1
        }
        try write(insn.destination, insn, r)
        var f = FlagMath.signZeroParity(r, size)
        if carry != 0 { f |= RFlag.carry }
        if (r ^ v) & top != 0 { f |= RFlag.overflow }
        setFlags(f)
        retire(insn)
    }
}
