// Binary floating point in software, bit-exact: the single (32-bit), double (64-bit) and x87
// double extended (80-bit) formats, with the rounding modes, precision control and exception
// flags of IEEE 754 as the x87 FPU and SSE implement them. Host floating point is never used:
// its rounding mode and flags are not the guest's, and the compiler may fold or reorder it.
//
// Every operation computes the exact result (or enough of it: a significand with guard bits and
// a sticky bit) and rounds it once, in `roundPack`. Values in flight are `FloatValue`s: a class
// (zero, finite, infinity, quiet or signalling NaN, or one of the x87's unsupported encodings),
// a sign, and for finite values an exponent and a 64-bit significand normalized to bit 63, so
// one set of algorithms serves all three formats. NaN propagation and the choice of the default
// NaN differ between the x87 and SSE; they are left to the callers (`X87.swift`,
// `Interpreter+SSEFloat.swift`), which see the operands first.
//
// x86 detects tininess after rounding (the result rounded to the destination precision with an
// unbounded exponent is below the smallest normal); a tiny result raises underflow when it is
// also inexact, or whenever underflow is unmasked (the callers decide: `FloatResult.tiny`).

/// An x87 register or m80fp value: 64-bit significand with an explicit integer bit, then the
/// sign and 15-bit biased exponent.
public struct Float80Bits: Equatable, Hashable, Sendable {
    public var significand: UInt64
    public var signExponent: UInt16
    public init(significand: UInt64 = 0, signExponent: UInt16 = 0) {
        self.significand = significand; self.signExponent = signExponent
    }
    /// The 80-bit little-endian image in the low 80 bits.
    public var bits: UInt128 { UInt128(signExponent) << 64 | UInt128(significand) }
    public init(bits: UInt128) {
        significand = UInt64(truncatingIfNeeded: bits)
        signExponent = UInt16(truncatingIfNeeded: bits >> 64)
    }
}

/// IEEE exception flags, in the bit order of the x87 status word and MXCSR (bits 0-5).
public struct FloatExceptions: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue & 0x3f }
    public static let invalid = FloatExceptions(rawValue: 1 << 0)
    public static let denormal = FloatExceptions(rawValue: 1 << 1)
    public static let divideByZero = FloatExceptions(rawValue: 1 << 2)
    public static let overflow = FloatExceptions(rawValue: 1 << 3)
    public static let underflow = FloatExceptions(rawValue: 1 << 4)
    public static let inexact = FloatExceptions(rawValue: 1 << 5)
    /// The exceptions detected before the operation (its operands): invalid, denormal, divide by zero.
    public static let preComputation: FloatExceptions = [.invalid, .denormal, .divideByZero]
}

/// The rounding control field (RC) of the x87 control word and MXCSR.
public enum FloatRounding: UInt8, Sendable {
    case nearest = 0, down = 1, up = 2, towardZero = 3
}

/// The three binary formats.
public enum FloatFormat: Sendable {
    case single, double, extended

    /// Significand bits including the integer bit.
    var precision: Int {
        switch self {
        case .single: return 24
        case .double: return 53
        case .extended: return 64
        }
    }
    var bias: Int32 {
        switch self {
        case .single: return 127
        case .double: return 1023
        case .extended: return 16383
        }
    }
    /// The exponent of the smallest normal number and of the largest finite one.
    var minExponent: Int32 { 1 - bias }
    var maxExponent: Int32 { bias }
    /// The biased exponent of infinities and NaNs.
    var maxBiased: UInt32 {
        switch self {
        case .single: return 0xff
        case .double: return 0x7ff
        case .extended: return 0x7fff
        }
    }
}

/// What a value is.
public enum FloatClass: UInt8, Sendable {
    case zero, finite, infinity, quietNaN, signalingNaN
    /// x87 only: unnormals, pseudo-infinities and pseudo-NaNs (invalid operands since the 387).
    case unsupported
}

/// A value unpacked for computation. For `.finite`, value = significand × 2^(exponent − 63) with
/// bit 63 of the significand set (denormals are normalized, with `denormal` recording that the
/// encoding was one). For NaNs the significand holds the payload as the x87 lays it out: bit 63
/// set, bit 62 the quiet bit, then the rest of the fraction left-aligned.
public struct FloatValue: Equatable, Sendable {
    public var kind: FloatClass
    public var sign: Bool
    public var exponent: Int32
    public var significand: UInt64
    /// The operand was encoded as a denormal (or an x87 pseudo-denormal).
    public var denormal: Bool

    public init(kind: FloatClass, sign: Bool, exponent: Int32 = 0, significand: UInt64 = 0, denormal: Bool = false) {
        self.kind = kind; self.sign = sign; self.exponent = exponent; self.significand = significand
        self.denormal = denormal
    }

    public static func zero(_ sign: Bool) -> FloatValue { FloatValue(kind: .zero, sign: sign) }
    public static func infinity(_ sign: Bool) -> FloatValue { FloatValue(kind: .infinity, sign: sign) }

    public var isNaN: Bool { kind == .quietNaN || kind == .signalingNaN }
    public var isSignalingNaN: Bool { kind == .signalingNaN }

    /// A NaN made quiet (its payload kept).
    public var quieted: FloatValue {
        var v = self
        v.kind = .quietNaN
        v.significand |= 3 << 62
        return v
    }

    /// The exact value as a finite number with a normalized 128-bit significand.
    var wide: UInt128 { UInt128(significand) << 64 }
}

/// How to round: the mode, the precision (24, 53 or 64 significand bits; the x87's precision
/// control rounds to fewer bits than its format holds) and SSE's flush-to-zero.
public struct FloatEnvironment: Sendable {
    public var format: FloatFormat
    public var rounding: FloatRounding
    public var precision: Int
    public var flushToZero: Bool

    public init(format: FloatFormat, rounding: FloatRounding, precision: Int? = nil, flushToZero: Bool = false) {
        self.format = format; self.rounding = rounding
        self.precision = min(precision ?? format.precision, format.precision)
        self.flushToZero = flushToZero
    }
}

/// A rounded result: the encoding in the destination format (the low 32, 64 or 80 bits), the
/// exceptions raised (masked responses), whether the magnitude was rounded up (x87 C1), and
/// whether the exact result was tiny (for unmasked underflow) or overflowed.
public struct FloatResult: Sendable {
    public var bits: UInt128
    public var exceptions: FloatExceptions
    public var roundedUp: Bool
    public var tiny: Bool = false
    public var overflowed: Bool = false
    /// Rounding with an unbounded exponent lost bits: the inexact that goes with an unmasked
    /// underflow (whose handler sees that result, not the denormal).
    public var inexactUnbounded: Bool = false

    public init(bits: UInt128, exceptions: FloatExceptions = [], roundedUp: Bool = false) {
        self.bits = bits; self.exceptions = exceptions; self.roundedUp = roundedUp
    }
}

/// A result before rounding: sign × significand × 2^(exponent − 127), bit 127 of the significand
/// set (bit 0 may be a sticky bit for bits beyond).
public struct WideFloat: Equatable, Sendable {
    public var sign: Bool
    public var exponent: Int32
    public var significand: UInt128
    public init(sign: Bool, exponent: Int32, significand: UInt128) {
        self.sign = sign; self.exponent = exponent; self.significand = significand
    }
    /// A finite nonzero value, exactly.
    public init(_ v: FloatValue) {
        sign = v.sign; exponent = v.exponent; significand = v.wide
    }
}

/// The arithmetic. Stateless: everything comes in arguments.
public enum SoftFloat {
    // MARK: Unpacking

    /// Unpacks a single-precision encoding; with `denormalsAreZero` a denormal reads as zero.
    public static func unpack(single bits: UInt32, denormalsAreZero: Bool = false) -> FloatValue {
        unpackIEEE(UInt64(bits), fractionBits: 23, exponentMask: 0xff, denormalsAreZero: denormalsAreZero)
    }

    /// Unpacks a double-precision encoding.
    public static func unpack(double bits: UInt64, denormalsAreZero: Bool = false) -> FloatValue {
        unpackIEEE(bits, fractionBits: 52, exponentMask: 0x7ff, denormalsAreZero: denormalsAreZero)
    }

    private static func unpackIEEE(_ bits: UInt64, fractionBits: UInt64, exponentMask: UInt64,
                                   denormalsAreZero: Bool) -> FloatValue {
        let sign = bits >> (fractionBits + (exponentMask == 0xff ? 8 : 11)) & 1 == 1
        let biased = (bits >> fractionBits) & exponentMask
        let fraction = bits & ((1 << fractionBits) - 1)
        let bias = Int32(exponentMask >> 1)
        if biased == exponentMask {
            if fraction == 0 { return .infinity(sign) }
            let payload = 1 << 63 | fraction << (63 - fractionBits)
            let quiet = fraction >> (fractionBits - 1) & 1 == 1
            return FloatValue(kind: quiet ? .quietNaN : .signalingNaN, sign: sign, significand: payload)
        }
        if biased == 0 {
            if fraction == 0 || denormalsAreZero { return .zero(sign) }
            let shift = UInt64(fraction.leadingZeroBitCount)
            return FloatValue(kind: .finite, sign: sign,
                              exponent: 1 - bias - Int32(shift) + Int32(63 - fractionBits),
                              significand: fraction << shift, denormal: true)
        }
        return FloatValue(kind: .finite, sign: sign, exponent: Int32(biased) - bias,
                          significand: 1 << 63 | fraction << (63 - fractionBits))
    }

    /// Unpacks an x87 80-bit value. Pseudo-denormals (exponent 0, integer bit set) are denormal
    /// operands with the value of exponent 1; unnormals, pseudo-infinities and pseudo-NaNs are
    /// `.unsupported`.
    public static func unpack(extended v: Float80Bits) -> FloatValue {
        let sign = v.signExponent & 0x8000 != 0
        let biased = Int32(v.signExponent & 0x7fff)
        let sig = v.significand
        let integerBit = sig >> 63 == 1
        if biased == 0x7fff {
            guard integerBit else { return FloatValue(kind: .unsupported, sign: sign, significand: sig) }
            let fraction = sig & ~(1 << 63)
            if fraction == 0 { return .infinity(sign) }
            return FloatValue(kind: sig >> 62 & 1 == 1 ? .quietNaN : .signalingNaN, sign: sign, significand: sig)
        }
        if biased == 0 {
            if sig == 0 { return .zero(sign) }
            let shift = Int32(sig.leadingZeroBitCount)
            return FloatValue(kind: .finite, sign: sign, exponent: -16382 - shift, significand: sig << UInt64(shift),
                              denormal: true)
        }
        guard integerBit else { return FloatValue(kind: .unsupported, sign: sign, exponent: biased - 16383, significand: sig) }
        return FloatValue(kind: .finite, sign: sign, exponent: biased - 16383, significand: sig)
    }

    // MARK: Packing special values

    /// The encoding of ±0, ±∞, or the largest finite magnitude in `format`.
    public static func zeroBits(_ sign: Bool, _ format: FloatFormat) -> UInt128 {
        sign ? signBit(format) : 0
    }

    public static func infinityBits(_ sign: Bool, _ format: FloatFormat) -> UInt128 {
        let s = zeroBits(sign, format)
        switch format {
        case .single: return s | 0x7f80_0000
        case .double: return s | 0x7ff0_0000_0000_0000
        case .extended: return s | UInt128(0x7fff) << 64 | UInt128(1) << 63
        }
    }

    static func signBit(_ format: FloatFormat) -> UInt128 {
        switch format {
        case .single: return 1 << 31
        case .double: return 1 << 63
        case .extended: return 1 << 79
        }
    }

    /// The largest finite value with `precision` significand bits.
    static func maxFiniteBits(_ sign: Bool, _ env: FloatEnvironment) -> UInt128 {
        let top = UInt128.max << UInt128(128 - env.precision)
        return pack(sign: sign, exponent: env.format.maxExponent, significand: top, format: env.format)
    }

    /// The default NaN ("real indefinite"): negative, quiet, zero payload.
    public static func defaultNaNBits(_ format: FloatFormat) -> UInt128 {
        nanBits(FloatValue(kind: .quietNaN, sign: true, significand: 3 << 62), format)
    }

    /// A NaN's encoding in `format`: the payload is truncated to the format's fraction.
    public static func nanBits(_ v: FloatValue, _ format: FloatFormat) -> UInt128 {
        let s = zeroBits(v.sign, format)
        switch format {
        case .single: return s | 0x7f80_0000 | UInt128((v.significand & ~(1 << 63)) >> 40)
        case .double: return s | 0x7ff0_0000_0000_0000 | UInt128((v.significand & ~(1 << 63)) >> 11)
        case .extended: return s | UInt128(0x7fff) << 64 | UInt128(v.significand | 1 << 63)
        }
    }

    /// Encodes a value that needs no rounding (zero, infinity, NaN) or re-encodes a finite one
    /// with rounding in `env`.
    public static func encode(_ v: FloatValue, _ env: FloatEnvironment) -> FloatResult {
        switch v.kind {
        case .zero: return FloatResult(bits: zeroBits(v.sign, env.format))
        case .infinity: return FloatResult(bits: infinityBits(v.sign, env.format))
        case .quietNaN, .signalingNaN, .unsupported: return FloatResult(bits: nanBits(v, env.format))
        case .finite: return roundPack(sign: v.sign, exponent: v.exponent, significand: v.wide, env)
        }
    }

    /// Packs a rounded significand (bit 127 set for normals; clear with `exponent` = the minimum
    /// for denormals) into `format`.
    static func pack(sign: Bool, exponent: Int32, significand: UInt128, format: FloatFormat) -> UInt128 {
        let s = zeroBits(sign, format)
        let normal = significand >> 127 == 1
        let biased = normal ? UInt128(UInt32(bitPattern: exponent + format.bias)) : 0
        switch format {
        case .single: return s | biased << 23 | (significand >> 104) & 0x7f_ffff
        case .double: return s | biased << 52 | (significand >> 75) & 0xf_ffff_ffff_ffff
        case .extended: return s | biased << 64 | significand >> 64
        }
    }

    // MARK: Rounding

    /// `value` shifted right by `count` with every bit shifted out ORed into bit 0 (sticky).
    @inline(__always)
    static func shiftRightJam(_ value: UInt128, _ count: Int) -> UInt128 {
        if count <= 0 { return value }
        if count >= 128 { return value != 0 ? 1 : 0 }
        let lost = value & ((UInt128(1) << UInt128(count)) - 1)
        return value >> UInt128(count) | (lost != 0 ? 1 : 0)
    }

    /// Rounds a significand to `precision` bits from bit 127 down. Returns the kept bits, whether
    /// rounding carried out of bit 127 (the result is then 1 << 127 at the next exponent), whether
    /// bits were lost, and whether the magnitude was incremented.
    @inline(__always)
    static func roundSignificand(_ significand: UInt128, precision: Int, rounding: FloatRounding, sign: Bool)
        -> (kept: UInt128, carry: Bool, inexact: Bool, incremented: Bool)
    {
        let lsbShift = UInt128(128 - precision)
        let lsb = UInt128(1) << lsbShift
        let rest = significand & (lsb - 1)
        var kept = significand & ~(lsb - 1)
        let inexact = rest != 0
        let increment: Bool
        switch rounding {
        case .nearest:
            let half = lsb >> 1
            increment = rest > half || (rest == half && kept & lsb != 0)
        case .down: increment = inexact && sign
        case .up: increment = inexact && !sign
        case .towardZero: increment = false
        }
        var carry = false
        if increment {
            let (sum, overflow) = kept.addingReportingOverflow(lsb)
            kept = overflow ? 1 << 127 : sum
            carry = overflow
        }
        return (kept, carry, inexact, increment)
    }

    /// Rounds sign × significand × 2^(exponent − 127) (bit 127 of `significand` set) into the
    /// environment's format and precision, with the masked responses to overflow and underflow.
    public static func roundPack(sign: Bool, exponent: Int32, significand: UInt128, _ env: FloatEnvironment)
        -> FloatResult
    {
        let format = env.format
        let minExponent = format.minExponent
        // Tininess after rounding: the result rounded with an unbounded exponent is below 2^emin.
        let unbounded = roundSignificand(significand, precision: env.precision, rounding: env.rounding, sign: sign)
        let tiny = exponent + (unbounded.carry ? 1 : 0) < minExponent
        if tiny && env.flushToZero {
            var r = FloatResult(bits: zeroBits(sign, format), exceptions: [.underflow, .inexact])
            r.tiny = true
            r.inexactUnbounded = unbounded.inexact
            return r
        }
        var rounded = unbounded
        var e = exponent
        if exponent < minExponent {
            // Denormal: the significand loses the bits below the smallest denormal's.
            let shift = Int(minExponent) - Int(exponent)
            rounded = roundSignificand(shiftRightJam(significand, shift), precision: env.precision,
                                       rounding: env.rounding, sign: sign)
            e = minExponent
        }
        if rounded.carry { e += 1 }
        var exceptions: FloatExceptions = rounded.inexact ? .inexact : []
        if tiny && rounded.inexact { exceptions.insert(.underflow) }
        if e > format.maxExponent {
            let toInfinity: Bool
            switch env.rounding {
            case .nearest: toInfinity = true
            case .towardZero: toInfinity = false
            case .down: toInfinity = sign
            case .up: toInfinity = !sign
            }
            var r = FloatResult(bits: toInfinity ? infinityBits(sign, format) : maxFiniteBits(sign, env),
                                exceptions: [.overflow, .inexact], roundedUp: toInfinity)
            r.overflowed = true
            r.inexactUnbounded = unbounded.inexact
            return r
        }
        var r = FloatResult(bits: pack(sign: sign, exponent: e, significand: rounded.kept, format: format),
                            exceptions: exceptions, roundedUp: rounded.incremented)
        r.tiny = tiny
        r.inexactUnbounded = unbounded.inexact
        return r
    }

    public static func roundPack(_ w: WideFloat, _ env: FloatEnvironment) -> FloatResult {
        roundPack(sign: w.sign, exponent: w.exponent, significand: w.significand, env)
    }

    /// The x87 response to an unmasked overflow or underflow with a register destination: the
    /// significand rounded to the precision with an unbounded exponent, and the exponent brought
    /// back into range by subtracting (overflow) or adding (underflow) 24576 (SDM 8.5.4, 8.5.5).
    /// A result still out of range after the adjustment (FSCALE can get there) is an infinity or
    /// a zero of its sign, inexact.
    public static func roundBiasAdjusted(sign: Bool, exponent: Int32, significand: UInt128,
                                         _ env: FloatEnvironment) -> FloatResult {
        let r = roundSignificand(significand, precision: env.precision, rounding: env.rounding, sign: sign)
        var e = Int(exponent) + (r.carry ? 1 : 0)
        e += e > 0 ? -24576 : 24576
        if e > 16383 { return FloatResult(bits: infinityBits(sign, .extended), exceptions: .inexact, roundedUp: true) }
        if e < -16382 { return FloatResult(bits: zeroBits(sign, .extended), exceptions: .inexact) }
        let biased = UInt128(e + 16383)
        let bits = zeroBits(sign, .extended) | biased << 64 | r.kept >> 64
        return FloatResult(bits: bits, exceptions: r.inexact ? .inexact : [], roundedUp: r.incremented)
    }

    // MARK: Arithmetic on finite operands
    //
    // Callers handle NaNs, infinities and zeros (their rules differ by instruction set) and pass
    // finite nonzero operands here. The `…Exact` forms return the result before rounding: exact,
    // or with a sticky bit 0 standing for the bits beyond (enough for every rounding).

    /// The exact sum a + b (or a − b with `subtract`) of two finite nonzero values; nil when it is
    /// exactly zero.
    public static func addExact(_ a: FloatValue, _ b: FloatValue, subtract: Bool) -> WideFloat? {
        var x = a, y = b
        if subtract { y.sign.toggle() }
        // |x| ≥ |y|
        if y.exponent > x.exponent || (y.exponent == x.exponent && y.significand > x.significand) { swap(&x, &y) }
        let sx = UInt128(x.significand) << 62
        let sy = shiftRightJam(UInt128(y.significand) << 62, Int(x.exponent) - Int(y.exponent))
        let sum = x.sign == y.sign ? sx + sy : sx - sy
        if sum == 0 { return nil }
        let lz = sum.leadingZeroBitCount
        return WideFloat(sign: x.sign, exponent: x.exponent + 2 - Int32(lz), significand: sum << UInt128(lz))
    }

    /// a + b rounded; an exact zero sum is +0, or −0 when rounding down.
    public static func add(_ a: FloatValue, _ b: FloatValue, subtract: Bool, _ env: FloatEnvironment) -> FloatResult {
        guard let w = addExact(a, b, subtract: subtract) else {
            return FloatResult(bits: zeroBits(env.rounding == .down, env.format))
        }
        return roundPack(w, env)
    }

    /// The exact product of two finite nonzero values.
    public static func multiplyExact(_ a: FloatValue, _ b: FloatValue) -> WideFloat {
        var product = UInt128(a.significand) * UInt128(b.significand)
        var exponent = a.exponent + b.exponent + 1
        if product >> 127 == 0 {
            product <<= 1
            exponent -= 1
        }
        return WideFloat(sign: a.sign != b.sign, exponent: exponent, significand: product)
    }

    public static func multiply(_ a: FloatValue, _ b: FloatValue, _ env: FloatEnvironment) -> FloatResult {
        roundPack(multiplyExact(a, b), env)
    }

    /// The quotient of two finite nonzero values: at least 124 quotient bits (A·2^124 / B in two
    /// long-division steps of 62 bits, each dividend below 2^126) and a sticky bit.
    public static func divideExact(_ a: FloatValue, _ b: FloatValue) -> WideFloat {
        let divisor = UInt128(b.significand)
        let (q1, r1) = (UInt128(a.significand) << 62).quotientAndRemainder(dividingBy: divisor)
        let (q2, r2) = (r1 << 62).quotientAndRemainder(dividingBy: divisor)
        let q = q1 << 62 | q2
        let lz = q.leadingZeroBitCount
        var significand = q << UInt128(lz)
        if r2 != 0 { significand |= 1 }
        return WideFloat(sign: a.sign != b.sign, exponent: a.exponent - b.exponent + 3 - Int32(lz),
                         significand: significand)
    }

    public static func divide(_ a: FloatValue, _ b: FloatValue, _ env: FloatEnvironment) -> FloatResult {
        roundPack(divideExact(a, b), env)
    }

    /// The square root of a finite positive value: 65 root bits and a sticky bit.
    public static func squareRootExact(_ a: FloatValue) -> WideFloat {
        // value = N × 2^f with f even and N in [2^126, 2^128): the root of N has 64 bits.
        let oddExponent = a.exponent & 1 != 0
        let n = UInt128(a.significand) << (oddExponent ? 64 : 63)
        let f = oddExponent ? a.exponent - 127 : a.exponent - 126
        let (root, remainder) = integerSquareRoot(n)
        // The bit below the root is set when N ≥ (root + ½)² = root² + root + ¼, i.e. remainder > root;
        // the root is never exactly halfway, so any remainder is sticky.
        var significand = UInt128(root) << 64
        if remainder > UInt128(root) { significand |= 1 << 63 }
        if remainder != 0 { significand |= 1 }
        return WideFloat(sign: false, exponent: 63 + f / 2, significand: significand)
    }

    public static func squareRoot(_ a: FloatValue, _ env: FloatEnvironment) -> FloatResult {
        roundPack(squareRootExact(a), env)
    }

    /// ⌊√n⌋ and n − ⌊√n⌋², bit by bit.
    static func integerSquareRoot(_ n: UInt128) -> (root: UInt64, remainder: UInt128) {
        var op = n
        var result: UInt128 = 0
        var one: UInt128 = 1 << 126
        while one > op { one >>= 2 }
        while one != 0 {
            if op >= result + one {
                op -= result + one
                result = (result >> 1) + one
            } else {
                result >>= 1
            }
            one >>= 2
        }
        return (UInt64(truncatingIfNeeded: result), op)
    }

    /// Rounds a finite value to an integer in `rounding`: the magnitude (nil when it does not fit
    /// in 64 bits) and whether it was inexact.
    public static func roundToInteger(_ a: FloatValue, _ rounding: FloatRounding) -> (magnitude: UInt64?, inexact: Bool) {
        if a.exponent >= 64 { return (nil, false) }
        if a.exponent >= 63 { return (a.significand, false) }
        if a.exponent < -1 {
            // |a| < ½: 0, or 1 when rounding away from zero in its direction.
            let up = (rounding == .up && !a.sign) || (rounding == .down && a.sign)
            return (up ? 1 : 0, true)
        }
        // The leading bit at 126 (weight 2^exponent): bits 127 ... 126 − exponent are the integer
        // part, exponent + 2 of them (bit 127 is zero, so rounding cannot carry out).
        let wide = UInt128(a.significand) << 63
        let r = roundSignificand(wide, precision: Int(a.exponent) + 2, rounding: rounding, sign: a.sign)
        return (UInt64(truncatingIfNeeded: r.kept >> UInt128(126 - Int(a.exponent))), r.inexact)
    }

    /// Converts a signed 64-bit integer magnitude (with its sign) exactly to a finite value, or zero.
    public static func value(fromInteger magnitude: UInt64, negative: Bool) -> FloatValue {
        guard magnitude != 0 else { return .zero(false) }
        let lz = magnitude.leadingZeroBitCount
        return FloatValue(kind: .finite, sign: negative, exponent: 63 - Int32(lz), significand: magnitude << UInt64(lz))
    }

    /// Compares two values that are not NaNs: −1, 0, 1 (zeros of either sign are equal).
    public static func compare(_ a: FloatValue, _ b: FloatValue) -> Int {
        func key(_ v: FloatValue) -> (Int, Int32, UInt64) {
            switch v.kind {
            case .zero: return (0, 0, 0)
            case .infinity: return (2, 0, 0)
            default: return (1, v.exponent, v.significand)
            }
        }
        let ka = key(a), kb = key(b)
        if ka.0 == 0 && kb.0 == 0 { return 0 }
        if a.sign != b.sign { return a.sign ? -1 : 1 }
        let magnitude: Int
        if ka.0 != kb.0 { magnitude = ka.0 < kb.0 ? -1 : 1 }
        else if ka.1 != kb.1 { magnitude = ka.1 < kb.1 ? -1 : 1 }
        else if ka.2 != kb.2 { magnitude = ka.2 < kb.2 ? -1 : 1 }
        else { magnitude = 0 }
        return a.sign ? -magnitude : magnitude
    }
}
