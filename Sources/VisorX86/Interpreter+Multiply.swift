// MUL, IMUL (one, two and three operands), DIV, IDIV.
//
// Flags: after MUL/IMUL only CF and OF are defined (set when the high half is significant);
// SF, ZF and PF are set from the low result and AF cleared, which the SDM leaves undefined.
// DIV and IDIV leave every flag unchanged (all undefined). #DE on a zero divisor or a quotient
// that does not fit, before anything is written.

import VisorX86Decode

extension X86Machine {
    /// The accumulator pair for widening multiply and divide: (low register, high register or
    /// AH for bytes). Writes `low` and `high` as MUL/DIV results.
    @inline(__always)
    private func writeWide(low: UInt64, high: UInt64, size: UInt8) {
        if size == 1 {
            writeRegister(0, size: 2, (low & 0xff) | ((high & 0xff) << 8))
        } else {
            writeRegister(0, size: size, low)
            writeRegister(2, size: size, high)
        }
    }

    /// The double-width dividend rDX:rAX (AX for bytes) as (high, low) halves of `size` bytes.
    @inline(__always)
    private func readWide(size: UInt8) -> (high: UInt64, low: UInt64) {
        if size == 1 {
            let ax = readRegister(0, size: 2)
            return (ax >> 8, ax & 0xff)
        }
        return (readRegister(2, size: size), readRegister(0, size: size))
    }

    func executeMultiply(_ insn: DecodedInstruction) throws(X86Interruption) {
        switch insn.operation {
        case .mul:
            let size = insn.source.size == 0 ? insn.operandSize : insn.source.size
            let b = try readValue(insn.source, insn, size: size)
            let a = readRegister(0, size: size)
            let product = UInt128(a) &* UInt128(b)
            let bits = UInt64(size) * 8
            let low = UInt64(truncatingIfNeeded: product) & Self.mask(size)
            let high = UInt64(truncatingIfNeeded: product >> bits) & Self.mask(size)
            writeWide(low: low, high: high, size: size)
            multiplyFlags(low: low, size: size, significant: high != 0)
        case .imulWide:
            let size = insn.source.size == 0 ? insn.operandSize : insn.source.size
            let b = FlagMath.signExtend(try readValue(insn.source, insn, size: size), from: size)
            let a = FlagMath.signExtend(readRegister(0, size: size), from: size)
            let product = Int128(a) &* Int128(b)
            let bits = UInt64(size) * 8
            let low = UInt64(truncatingIfNeeded: product) & Self.mask(size)
            let high = UInt64(truncatingIfNeeded: product >> bits) & Self.mask(size)
            let fits = Int128(FlagMath.signExtend(low, from: size)) == product
            writeWide(low: low, high: high, size: size)
            multiplyFlags(low: low, size: size, significant: !fits)
        default:  // .imul: destination ← source * source2
            let size = operationSize(insn)
            let a = FlagMath.signExtend(try readValue(insn.source, insn, size: size), from: size)
            let b = FlagMath.signExtend(try readValue(insn.source2, insn, size: size), from: size)
            let product = Int128(a) &* Int128(b)
            let low = UInt64(truncatingIfNeeded: product) & Self.mask(size)
            let fits = Int128(FlagMath.signExtend(low, from: size)) == product
            try write(insn.destination, insn, low)
            multiplyFlags(low: low, size: size, significant: !fits)
        }
        retire(insn)
    }

    @inline(__always)
    private func multiplyFlags(low: UInt64, size: UInt8, significant: Bool) {
        var f = FlagMath.signZeroParity(low, size)
        if significant { f |= RFlag.carry | RFlag.overflow }
        setFlags(f)
    }

    func executeDivide(_ insn: DecodedInstruction) throws(X86Interruption) {
        let size = insn.source.size == 0 ? insn.operandSize : insn.source.size
        let bits = UInt64(size) * 8
        let m = Self.mask(size)
        let divisor = try readValue(insn.source, insn, size: size)
        guard divisor != 0 else { throw .fault(.divide) }
        let (high, low) = readWide(size: size)
        if insn.operation == .div {
            let dividend = (UInt128(high) << bits) | UInt128(low)
            let quotient = dividend / UInt128(divisor)
            guard quotient <= UInt128(m) else { throw .fault(.divide) }
            let remainder = dividend % UInt128(divisor)
            writeWide(low: UInt64(truncatingIfNeeded: quotient), high: UInt64(truncatingIfNeeded: remainder),
                      size: size)
        } else {
            // The dividend is 2 * size bytes wide, sign-extended from its top bit.
            let unsignedDividend = (UInt128(high) << bits) | UInt128(low)
            let shift = 128 - 2 * bits
            let dividend = Int128(bitPattern: unsignedDividend << shift) >> shift
            let d = Int128(FlagMath.signExtend(divisor, from: size))
            let (quotient, overflow) = dividend.dividedReportingOverflow(by: d)
            let limit = Int128(1) << (bits - 1)
            guard !overflow, quotient >= -limit, quotient < limit else { throw .fault(.divide) }
            let remainder = dividend - quotient * d
            writeWide(low: UInt64(truncatingIfNeeded: quotient) & m, high: UInt64(truncatingIfNeeded: remainder) & m,
                      size: size)
        }
        retire(insn)
    }
}
