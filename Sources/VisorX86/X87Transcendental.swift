// x87 transcendental instructions: FSIN, FCOS, FSINCOS, FPTAN, FPATAN, F2XM1, FYL2X, FYL2XP1.
//
// The results are computed with 128-bit significands (`WideReal`: series after range reduction,
// each step truncating below 2^-125 relative) and rounded once, by RC, to 64 bits (PC does not
// apply). They are correctly rounded except when the exact value lies within about 2^-120
// (relative) of a rounding boundary: within 1 ulp always. The host CPU's results are within
// 0.56 ulp of the exact values, so the two differ by at most 1 ulp; the differential test
// compares them with that tolerance (and without C1, the round-up indicator).
//
// FSIN/FCOS/FSINCOS/FPTAN reduce their argument as the hardware does, by multiples of π/2
// taken from a 66-bit approximation of π (SDM Vol. 1 8.3.10), exactly: the result for x is the
// function of r = x − k·P/2 in quadrant k. Arguments of magnitude 2^63 or more set C2 and change
// nothing. F2XM1 is defined for −1 ≤ x ≤ 1 and FYL2XP1 for |x| < 1 − √2/2; outside, where the
// SDM leaves the results undefined, Visor does what the host's processors do: F2XM1 leaves x,
// FYL2XP1 computes y·log2(1 + x) while 1 + x > 0 and gives x otherwise, both inexact.
// Computed results are always reported inexact (as the hardware does, even when exact).
//
// Special operands follow the SDM's tables for each instruction (zeros, infinities, NaNs,
// invalid operations, FYL2X's division by zero); denormal operands raise denormal.

import VisorX86Decode

/// A real number with a 128-bit significand: (−1)^negative × significand × 2^(exponent − 127),
/// normalized (bit 127 set) unless zero.
struct WideReal {
    var negative: Bool
    var exponent: Int
    var significand: UInt128

    static let zero = WideReal(negative: false, exponent: 0, significand: 0)
    static let one = WideReal(negative: false, exponent: 0, significand: 1 << 127)

    init(negative: Bool, exponent: Int, significand: UInt128) {
        self.negative = negative; self.exponent = exponent; self.significand = significand
        normalize()
    }

    /// A finite value exactly (zero for zero).
    init(_ v: FloatValue) {
        if v.kind == .finite {
            self.init(negative: v.sign, exponent: Int(v.exponent), significand: UInt128(v.significand) << 64)
        } else {
            self.init(negative: v.sign, exponent: 0, significand: 0)
        }
    }

    init(integer: Int) {
        self.init(negative: integer < 0, exponent: 127, significand: UInt128(integer.magnitude))
    }

    var isZero: Bool { significand == 0 }

    private mutating func normalize() {
        guard significand != 0 else { exponent = 0; return }
        let lz = significand.leadingZeroBitCount
        significand <<= UInt128(lz)
        exponent -= lz
    }

    /// × 2^k.
    func scaled(_ k: Int) -> WideReal {
        var r = self
        if !r.isZero { r.exponent += k }
        return r
    }

    var negated: WideReal {
        var r = self
        r.negative.toggle()
        return r
    }

    var magnitude: WideReal {
        var r = self
        r.negative = false
        return r
    }

    /// |a| < |b|.
    static func magnitudeLess(_ a: WideReal, _ b: WideReal) -> Bool {
        if a.isZero { return !b.isZero }
        if b.isZero { return false }
        return a.exponent < b.exponent || (a.exponent == b.exponent && a.significand < b.significand)
    }

    static func + (a: WideReal, b: WideReal) -> WideReal {
        if a.isZero { return b }
        if b.isZero { return a }
        var x = a, y = b
        if magnitudeLess(x, y) { swap(&x, &y) }
        let d = x.exponent - y.exponent
        let ys = d >= 128 ? 0 : y.significand >> UInt128(d)
        if x.negative == y.negative {
            let (sum, carry) = x.significand.addingReportingOverflow(ys)
            if carry { return WideReal(negative: x.negative, exponent: x.exponent + 1, significand: sum >> 1 | 1 << 127) }
            return WideReal(negative: x.negative, exponent: x.exponent, significand: sum)
        }
        return WideReal(negative: x.negative, exponent: x.exponent, significand: x.significand - ys)
    }

    static func - (a: WideReal, b: WideReal) -> WideReal { a + b.negated }

    static func * (a: WideReal, b: WideReal) -> WideReal {
        if a.isZero || b.isZero { return .zero }
        let (high, low) = a.significand.multipliedFullWidth(by: b.significand)
        if high >> 127 == 1 {
            return WideReal(negative: a.negative != b.negative, exponent: a.exponent + b.exponent + 1, significand: high)
        }
        return WideReal(negative: a.negative != b.negative, exponent: a.exponent + b.exponent,
                        significand: high << 1 | low >> 127)
    }

    static func / (a: WideReal, b: WideReal) -> WideReal {
        if a.isZero || b.isZero { return .zero }
        // a·2^127 / b with both significands normalized: the high half (a >> 1) is below b.
        let (q, _) = b.significand.dividingFullWidth((a.significand >> 1, a.significand << 127))
        return WideReal(negative: a.negative != b.negative, exponent: a.exponent - b.exponent, significand: q)
    }

    /// √a (a ≥ 0): the 64-bit root refined by two Newton steps.
    var squareRoot: WideReal {
        if isZero || negative { return .zero }
        let e = exponent
        // A first approximation from the top 64 bits.
        let top = FloatValue(kind: .finite, sign: false, exponent: Int32(e & 1), significand: UInt64(significand >> 64))
        let root = SoftFloat.unpack(extended: Float80Bits(bits: SoftFloat.squareRoot(top, FloatEnvironment(format: .extended, rounding: .nearest)).bits))
        var x = WideReal(root).scaled((e - (e & 1)) / 2)
        for _ in 0..<2 { x = (x + self / x).scaled(-1) }
        return x
    }

    /// The value to round: with a sticky bit standing for what lies below the 128 bits.
    var wideFloat: WideFloat {
        WideFloat(sign: negative, exponent: Int32(clamping: exponent), significand: significand | 1)
    }

    // Constants (128-bit significands of the mathematical values, truncated).
    static let ln2 = WideReal(negative: false, exponent: -1, significand: 0xb172_17f7_d1cf_79ab_c9e3_b398_03f2_f6af)
    static let halfPi = WideReal(negative: false, exponent: 0, significand: 0xc90f_daa2_2168_c234_c4c6_628b_80dc_1cd1)
    static let pi = halfPi.scaled(1)
    static let quarterPi = halfPi.scaled(-1)
    static let threeQuarterPi = WideReal(negative: false, exponent: 1, significand: 0x96cb_e3f9_990e_91a7_9394_c9e8_a0a5_159c)

    /// Stops a series once a term no longer changes the sum's 128 bits.
    static func negligible(_ term: WideReal, _ sum: WideReal) -> Bool {
        term.isZero || (!sum.isZero && term.exponent < sum.exponent - 130)
    }

    /// sin and cos of |r| ≤ π/4 (Taylor series).
    static func sineCosine(_ r: WideReal) -> (sin: WideReal, cos: WideReal) {
        let r2 = r * r
        var sinSum = r, sinTerm = r
        var cosSum = WideReal.one, cosTerm = WideReal.one
        var n = 1
        while n < 60 {
            sinTerm = (sinTerm * r2 / WideReal(integer: (2 * n) * (2 * n + 1))).negated
            cosTerm = (cosTerm * r2 / WideReal(integer: (2 * n - 1) * (2 * n))).negated
            sinSum = sinSum + sinTerm
            cosSum = cosSum + cosTerm
            if negligible(sinTerm, sinSum) && negligible(cosTerm, cosSum) { break }
            n += 1
        }
        return (sinSum, cosSum)
    }

    /// atanh(s) = s + s³/3 + s⁵/5 + … for |s| ≤ 0.18.
    static func inverseHyperbolicTangent(_ s: WideReal) -> WideReal {
        let s2 = s * s
        var power = s, sum = s
        var k = 3
        while k < 200 {
            power = power * s2
            let term = power / WideReal(integer: k)
            sum = sum + term
            if negligible(term, sum) { break }
            k += 2
        }
        return sum
    }

    /// ln(x) for x > 0.
    static func logarithm(_ x: WideReal) -> WideReal {
        // x = m × 2^e with m in [1/√2, √2).
        var m = x.magnitude
        var e = m.exponent
        m.exponent = 0
        if m.significand > 0xb504_f333_f9de_6484_597d_89b3_754a_be9f {  // √2 × 2^127
            m.exponent = -1
            e += 1
        }
        let s = (m - .one) / (m + .one)
        return inverseHyperbolicTangent(s).scaled(1) + ln2 * WideReal(integer: e)
    }

    /// e^y − 1 (series, halving the argument until it is below 1/16 and squaring back).
    static func exponentialMinusOne(_ y: WideReal) -> WideReal {
        var t = y
        var halvings = 0
        while !t.isZero && t.exponent > -5 && halvings < 64 {
            t = t.scaled(-1)
            halvings += 1
        }
        var term = t, sum = t
        var n = 2
        while n < 60 {
            term = term * t / WideReal(integer: n)
            sum = sum + term
            if negligible(term, sum) { break }
            n += 1
        }
        // expm1(2t) = expm1(t) × (expm1(t) + 2).
        for _ in 0..<halvings { sum = sum * (sum + WideReal(integer: 2)) }
        return sum
    }

    /// atan(z) for 0 ≤ z ≤ 1: halvings atan(z) = 2·atan(z / (1 + √(1 + z²))), then the series.
    static func arcTangent(_ z: WideReal) -> WideReal {
        var t = z
        var doublings = 0
        while !t.isZero && t.exponent > -5 && doublings < 8 {
            t = t / (.one + (.one + t * t).squareRoot)
            doublings += 1
        }
        let t2 = t * t
        var power = t, sum = t
        var k = 3
        while k < 200 {
            power = (power * t2).negated
            let term = power / WideReal(integer: k)
            sum = sum + term
            if negligible(term, sum) { break }
            k += 2
        }
        return sum.scaled(doublings)
    }
}

extension X86Machine {
    func x87Transcendental(_ op: Operation) {
        switch op {
        case .fsin, .fcos, .fsincos, .fptan: x87Trigonometric(op)
        case .f2xm1: x87TwoToXMinusOne()
        case .fpatan: x87ArcTangent()
        default: x87Logarithm(plusOne: op == .fyl2xp1)  // .fyl2x, .fyl2xp1
        }
    }

    /// Rounds a computed value into a register with the x87 rules (RC, 64 bits).
    private func deliver(_ v: WideReal) -> Float80Bits {
        if v.isZero { return Self.x87Load(.zero(v.negative)) }
        return x87Deliver(v.wideFloat, precisionControl: false)
    }

    /// r = |x| − k·P/2 with P the 66-bit π, exactly, and k (the quadrant is k mod 4); |x| < 2^63.
    private func reduceByHalfPi(_ x: FloatValue) -> (r: WideReal, quadrant: Int) {
        let q: UInt128 = 0x3_243f_6a88_85a3_08d3  // ⌊π/2 × 2^65⌋: P/2 = q × 2^-65
        // |x| = X × 2^(e − 63); below π/4 nothing to reduce.
        let e = Int(x.exponent)
        if e < -1 || (e == -1 && x.significand < 0xc90f_daa2_2168_c234) {
            return (WideReal(x).magnitude, 0)
        }
        // In units of 2^-65: X × 2^(e + 2), at most 2^128 (e ≤ 62).
        let scaled = UInt128(x.significand) << UInt128(e + 2)
        var k = UInt128(scaled / q)
        if scaled % q > q / 2 { k += 1 }
        // r = scaled − k·q, in 256 bits (k·q may exceed 2^128).
        let (kqHigh, kqLow) = k.multipliedFullWidth(by: q)
        let negative = kqHigh != 0 || kqLow > scaled
        let difference: UInt128 = negative ? kqLow &- scaled : scaled &- kqLow
        let r = WideReal(negative: negative, exponent: 127 - 65, significand: difference)
        return (r, Int(truncatingIfNeeded: k & 3))
    }

    private func x87Trigonometric(_ op: Operation) {
        let pushes = op == .fsincos || op == .fptan
        if isEmpty(st: 0) {
            cpu.fsw &= ~Self.fswC2
            if x87StackUnderflow() { return }
            setST(0, Self.x87Indefinite)
            if pushes { x87Push(Self.x87Indefinite) }
            return
        }
        if pushes && !isEmpty(st: 7) {
            cpu.fsw &= ~Self.fswC2
            if x87StackOverflow() { return }
            setST(0, Self.x87Indefinite)
            x87Push(Self.x87Indefinite)
            return
        }
        let a = SoftFloat.unpack(extended: st(0))
        // Out of range: C2 set, nothing else happens.
        if a.kind == .finite && a.exponent >= 63 {
            cpu.fsw |= Self.fswC2
            return
        }
        cpu.fsw &= ~Self.fswC2
        switch x87ScreenOperands(a, nil) {
        case .abort: return
        case .result(let r):
            setST(0, r)
            if pushes { x87Push(r) }
            return
        case .proceed: break
        }
        if a.kind == .infinity {
            if let r = x87InvalidOperation() {
                setST(0, r)
                if pushes { x87Push(r) }
            }
            return
        }
        if a.denormal && x87Abort(.denormal) { return }
        if a.kind == .zero {
            setC1(false)
            let one = Self.x87Load(SoftFloat.value(fromInteger: 1, negative: false))
            switch op {
            case .fsin: setST(0, st(0))
            case .fcos: setST(0, one)
            case .fptan: x87Push(one)
            default: x87Push(one)  // .fsincos: ST(1) = sin = ±0, ST(0) = cos = 1
            }
            return
        }
        let (r, quadrant) = reduceByHalfPi(a)
        let (s, c) = WideReal.sineCosine(r)
        // sin(x) and cos(x) for |x| from the quadrant; sin is odd, cos even.
        var sine: WideReal, cosine: WideReal
        switch quadrant {
        case 0: (sine, cosine) = (s, c)
        case 1: (sine, cosine) = (c, s.negated)
        case 2: (sine, cosine) = (s.negated, c.negated)
        default: (sine, cosine) = (c.negated, s)
        }
        if a.sign { sine = sine.negated }
        switch op {
        case .fsin:
            setST(0, deliver(sine))
        case .fcos:
            setST(0, deliver(cosine))
        case .fptan:
            setST(0, deliver(sine / cosine))
            x87Push(Self.x87Load(SoftFloat.value(fromInteger: 1, negative: false)))
        default:
            setST(0, deliver(sine))
            let c1 = cpu.fsw & Self.fswC1
            x87Push(deliver(cosine))
            cpu.fsw |= c1
        }
    }

    private func x87TwoToXMinusOne() {
        if isEmpty(st: 0) {
            if x87StackUnderflow() { return }
            setST(0, Self.x87Indefinite)
            return
        }
        let a = SoftFloat.unpack(extended: st(0))
        switch x87ScreenOperands(a, nil) {
        case .abort: return
        case .result(let r): setST(0, r); return
        case .proceed: break
        }
        if a.kind == .infinity {
            setC1(false)
            setST(0, Self.x87Load(a.sign ? SoftFloat.value(fromInteger: 1, negative: true) : a))
            return
        }
        if a.denormal && x87Abort(.denormal) { return }
        if a.kind == .zero {
            setC1(false)
            return
        }
        // Outside −1 ≤ x ≤ 1 the SDM leaves the result undefined; the host's processors leave x
        // and report inexact, and so does Visor.
        if a.exponent >= 1 || (a.exponent == 0 && a.significand != 1 << 63) {
            setC1(false)
            x87Signal(.inexact)
            return
        }
        // 2^x − 1 = e^(x ln 2) − 1.
        setST(0, deliver(WideReal.exponentialMinusOne(WideReal(a) * WideReal.ln2)))
    }

    private func x87Logarithm(plusOne: Bool) {
        if isEmpty(st: 0) || isEmpty(st: 1) {
            if x87StackUnderflow() { return }
            setST(1, Self.x87Indefinite)
            x87Pop()
            return
        }
        let x = SoftFloat.unpack(extended: st(0)), y = SoftFloat.unpack(extended: st(1))
        func finish(_ value: Float80Bits) {
            setST(1, value)
            x87Pop()
        }
        switch x87ScreenOperands(x, y) {
        case .abort: return
        case .result(let r): finish(r); return
        case .proceed: break
        }
        let infinityOf: (Bool) -> Float80Bits = { Self.x87Load(.infinity($0)) }
        let zeroOf: (Bool) -> Float80Bits = { Self.x87Load(.zero($0)) }
        if plusOne {
            // y × log2(1 + x).
            if (x.kind == .zero && y.kind == .infinity) || (x.kind == .infinity && (x.sign || y.kind == .zero)) {
                if let r = x87InvalidOperation() { finish(r) }
                return
            }
            if x.kind == .infinity && !x.sign {
                setC1(false)
                finish(infinityOf(y.sign))
                return
            }
            if (x.denormal || y.denormal) && x87Abort(.denormal) { return }
            if x.kind == .zero || y.kind == .zero {
                setC1(false)
                finish(zeroOf(x.sign != y.sign))
                return
            }
            if y.kind == .infinity {
                setC1(false)
                finish(infinityOf(x.sign != y.sign))
                return
            }
            let wx = WideReal(x)
            if x.sign && !WideReal.magnitudeLess(wx, .one) {
                // x ≤ −1, where log(1 + x) does not exist (the SDM leaves the result undefined):
                // the host's processors give x, inexact, and so does Visor.
                setC1(false)
                x87Signal(.inexact)
                finish(st(0))
                return
            }
            // ln(1 + x) = 2 atanh(x / (2 + x)) near 0, where 1 + x would lose x's bits; the
            // logarithm of 1 + x farther out (the SDM's domain is |x| < 1 − √2/2).
            let ln: WideReal
            if x.exponent < -2 {
                ln = WideReal.inverseHyperbolicTangent(wx / (WideReal(integer: 2) + wx)).scaled(1)
            } else {
                ln = WideReal.logarithm(.one + wx)
            }
            finish(deliver(WideReal(y) * ln / WideReal.ln2))
            return
        }
        // y × log2(x).
        if x.sign && x.kind != .zero {
            if let r = x87InvalidOperation() { finish(r) }
            return
        }
        let xIsOne = x.kind == .finite && x.exponent == 0 && x.significand == 1 << 63
        if (x.kind == .zero && y.kind == .zero) || (x.kind == .infinity && y.kind == .zero)
            || (xIsOne && y.kind == .infinity) {
            if let r = x87InvalidOperation() { finish(r) }
            return
        }
        if x.kind == .zero && y.kind == .finite {
            if x87Abort(.divideByZero) { return }
            setC1(false)
            finish(infinityOf(!y.sign))
            return
        }
        if (x.denormal || y.denormal) && x87Abort(.denormal) { return }
        if x.kind == .zero {  // y infinite
            setC1(false)
            finish(infinityOf(!y.sign))
            return
        }
        // The sign of log2(x): below 1 negative.
        let belowOne = x.kind == .finite && x.exponent < 0
        if x.kind == .infinity {
            setC1(false)
            finish(infinityOf(y.sign))
            return
        }
        if y.kind == .infinity {
            setC1(false)
            finish(infinityOf(y.sign != belowOne))
            return
        }
        if xIsOne || y.kind == .zero {
            setC1(false)
            finish(zeroOf(xIsOne ? y.sign : y.sign != belowOne))
            return
        }
        finish(deliver(WideReal(y) * WideReal.logarithm(WideReal(x)) / WideReal.ln2))
    }

    private func x87ArcTangent() {
        if isEmpty(st: 0) || isEmpty(st: 1) {
            if x87StackUnderflow() { return }
            setST(1, Self.x87Indefinite)
            x87Pop()
            return
        }
        let x = SoftFloat.unpack(extended: st(0)), y = SoftFloat.unpack(extended: st(1))
        func finish(_ value: Float80Bits) {
            setST(1, value)
            x87Pop()
        }
        switch x87ScreenOperands(x, y) {
        case .abort: return
        case .result(let r): finish(r); return
        case .proceed: break
        }
        if (x.denormal || y.denormal) && x87Abort(.denormal) { return }
        // atan2(y, x): the angle in (−π, π], its sign that of y.
        var angle: WideReal
        switch (y.kind, x.kind) {
        case (.zero, _):
            angle = x.sign ? WideReal.pi : .zero
        case (.infinity, .infinity):
            angle = x.sign ? WideReal.threeQuarterPi : WideReal.quarterPi
        case (.infinity, _), (_, .zero):
            angle = WideReal.halfPi
        case (_, .infinity):
            angle = x.sign ? WideReal.pi : .zero
        default:
            let ay = WideReal(y).magnitude, ax = WideReal(x).magnitude
            if WideReal.magnitudeLess(ax, ay) {
                angle = WideReal.halfPi - WideReal.arcTangent(ax / ay)
            } else {
                angle = WideReal.arcTangent(ay / ax)
            }
            if x.sign { angle = WideReal.pi - angle }
        }
        if angle.isZero {
            setC1(false)
            finish(Self.x87Load(.zero(y.sign)))
            return
        }
        if y.sign { angle = angle.negated }
        finish(deliver(angle))
    }
}
