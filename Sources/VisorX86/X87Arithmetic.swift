// x87 arithmetic: FADD/FSUB/FMUL/FDIV and their reversed, popping and integer forms, the
// compares (FCOM, FUCOM, FICOM, FTST, FCOMI, FUCOMI), FXAM, FSQRT, FRNDINT, FSCALE, FXTRACT and
// the partial remainders FPREM/FPREM1. The rules common to all are in `X87.swift`.
//
// Exceptions are checked in the SDM's priority order (Vol. 1 4.9.2): stack underflow,
// unsupported operand, SNaN, QNaN (a NaN operand decides the result, and nothing below is
// checked), other invalid operations, divide by zero, denormal operand; then overflow,
// underflow and inexact on the rounded result. A masked exception lets the lower ones be
// detected as well; an unmasked invalid, divide-by-zero or denormal stops the instruction.
//
// FPREM/FPREM1 compute exact remainders. When the exponents differ by 64 or more they reduce
// partially, by 32 + (D mod 32) bits, and set C2 (the SDM leaves the amount between 32 and 63
// bits to the implementation; this is what the host's processors do).

import VisorX86Decode

extension X86Machine {
    func executeX87Arithmetic(_ insn: DecodedInstruction) throws(X86Interruption) {
        switch insn.operation {
        case .fadd, .faddp, .fiadd, .fsub, .fsubp, .fisub, .fsubr, .fsubrp, .fisubr,
             .fmul, .fmulp, .fimul, .fdiv, .fdivp, .fidiv, .fdivr, .fdivrp, .fidivr:
            try x87BinaryArithmetic(insn)
        case .fcom, .fcomp, .fcompp, .ficom, .ficomp, .fucom, .fucomp, .fucompp, .ftst,
             .fcomi, .fcomip, .fucomi, .fucomip:
            try x87Compare(insn)
        case .fxam:
            x87NoteInstruction(insn)
            x87Examine()
        case .fsqrt, .frndint:
            x87NoteInstruction(insn)
            x87UnaryOnTop(insn.operation)
        case .fscale:
            x87NoteInstruction(insn)
            x87Scale()
        case .fxtract:
            x87NoteInstruction(insn)
            x87Extract()
        case .fprem, .fprem1:
            x87NoteInstruction(insn)
            x87PartialRemainder(nearest: insn.operation == .fprem1)
        default:
            x87NoteInstruction(insn)
            x87Transcendental(insn.operation)
        }
    }

    // MARK: FADD FSUB FMUL FDIV

    private func x87BinaryArithmetic(_ insn: DecodedInstruction) throws(X86Interruption) {
        let op = insn.operation
        let kind: FloatBinary
        var reverse = false, pop = false
        switch op {
        case .fadd, .fiadd: kind = .add
        case .faddp: kind = .add; pop = true
        case .fsub, .fisub: kind = .subtract
        case .fsubp: kind = .subtract; pop = true
        case .fsubr, .fisubr: kind = .subtract; reverse = true
        case .fsubrp: kind = .subtract; reverse = true; pop = true
        case .fmul, .fimul: kind = .multiply
        case .fmulp: kind = .multiply; pop = true
        case .fdiv, .fidiv: kind = .divide
        case .fdivp: kind = .divide; pop = true
        case .fdivr, .fidivr: kind = .divide; reverse = true
        default: kind = .divide; reverse = true; pop = true  // .fdivrp
        }
        var destination = 0
        var source: FloatValue? = nil
        var sourceIndex = 0
        if insn.source.kind == .memory {
            source = try readX87Operand(insn, integer: [.fiadd, .fisub, .fisubr, .fimul, .fidiv, .fidivr].contains(op))
        } else {
            destination = Int(insn.destination.index & 7)
            sourceIndex = Int(insn.source.index & 7)
        }
        x87NoteInstruction(insn)
        if isEmpty(st: destination) || (source == nil && isEmpty(st: sourceIndex)) {
            if x87StackUnderflow() { return }
            setST(destination, Self.x87Indefinite)
            if pop { x87Pop() }
            return
        }
        var a = SoftFloat.unpack(extended: st(destination))
        var b = source ?? SoftFloat.unpack(extended: st(sourceIndex))
        if reverse { swap(&a, &b) }
        guard let result = x87ArithmeticResult(kind, a, b) else { return }
        setST(destination, result)
        if pop { x87Pop() }
    }

    /// The invalid-operand checks every x87 operation starts with: unsupported encodings and
    /// NaNs. Returns the result to store when they decide it, nil (with `.proceed`) otherwise,
    /// or `.abort` when an unmasked exception stops the instruction.
    enum X87Screen {
        case proceed
        case result(Float80Bits)
        case abort
    }

    func x87ScreenOperands(_ a: FloatValue, _ b: FloatValue?) -> X87Screen {
        if a.kind == .unsupported || b?.kind == .unsupported {
            if x87Abort(.invalid) { return .abort }
            setC1(false)
            return .result(Self.x87Indefinite)
        }
        if a.isNaN || b?.isNaN == true {
            if (a.isSignalingNaN || b?.isSignalingNaN == true) && x87Abort(.invalid) { return .abort }
            setC1(false)
            return .result(x87PropagateNaN(a, b))
        }
        return .proceed
    }

    /// An invalid operation with a masked response: the indefinite; nil when unmasked.
    func x87InvalidOperation() -> Float80Bits? {
        if x87Abort(.invalid) { return nil }
        setC1(false)
        return Self.x87Indefinite
    }

    /// a op b with the x87's rules, rounded by PC and RC; nil when an unmasked exception
    /// stops the instruction.
    func x87ArithmeticResult(_ kind: FloatBinary, _ a: FloatValue, _ b: FloatValue) -> Float80Bits? {
        switch x87ScreenOperands(a, b) {
        case .abort: return nil
        case .result(let r): return r
        case .proceed: break
        }
        var b = b
        if kind == .subtract { b.sign.toggle() }
        let sign = a.sign != b.sign
        var exact: Float80Bits? = nil  // a result that needs no rounding
        switch kind {
        case .add, .subtract:
            if a.kind == .infinity && b.kind == .infinity && a.sign != b.sign { return x87InvalidOperation() }
            if a.kind == .infinity || b.kind == .infinity {
                exact = Self.x87Load(a.kind == .infinity ? a : b)
            } else if a.kind == .zero && b.kind == .zero {
                exact = Self.x87Load(.zero(a.sign == b.sign ? a.sign : x87Rounding == .down))
            }
        case .multiply:
            if (a.kind == .infinity && b.kind == .zero) || (a.kind == .zero && b.kind == .infinity) {
                return x87InvalidOperation()
            }
            if a.kind == .infinity || b.kind == .infinity {
                exact = Self.x87Load(.infinity(sign))
            } else if a.kind == .zero || b.kind == .zero {
                exact = Self.x87Load(.zero(sign))
            }
        default:
            if (a.kind == .infinity && b.kind == .infinity) || (a.kind == .zero && b.kind == .zero) {
                return x87InvalidOperation()
            }
            if a.kind == .infinity {
                exact = Self.x87Load(.infinity(sign))  // ∞ / 0 is ∞, not a division by zero
            } else if b.kind == .zero {
                // Divide by zero stands alone: a denormal dividend is not also reported.
                if x87Abort(.divideByZero) { return nil }
                setC1(false)
                return Self.x87Load(.infinity(sign))
            } else if b.kind == .infinity || a.kind == .zero {
                exact = Self.x87Load(.zero(sign))
            }
        }
        if (a.denormal || b.denormal) && x87Abort(.denormal) { return nil }
        if let exact {
            setC1(false)
            return exact
        }
        let wide: WideFloat
        switch kind {
        case .add, .subtract:
            if a.kind == .zero || b.kind == .zero {
                wide = WideFloat(a.kind == .zero ? b : a)
            } else if let sum = SoftFloat.addExact(a, b, subtract: false) {
                wide = sum
            } else {
                setC1(false)
                return Self.x87Load(.zero(x87Rounding == .down))
            }
        case .multiply: wide = SoftFloat.multiplyExact(a, b)
        default: wide = SoftFloat.divideExact(a, b)
        }
        return x87Deliver(wide, precisionControl: true)
    }

    // MARK: Compares

    private func x87Compare(_ insn: DecodedInstruction) throws(X86Interruption) {
        let op = insn.operation
        var source: FloatValue? = nil
        var sourceIndex = 1
        switch op {
        case .ftst:
            source = .zero(false)
        case .fcompp, .fucompp:
            sourceIndex = 1
        default:
            if insn.source.kind == .memory {
                source = try readX87Operand(insn, integer: op == .ficom || op == .ficomp)
            } else {
                sourceIndex = Int(insn.source.index & 7)
            }
        }
        x87NoteInstruction(insn)
        let pops: Int
        switch op {
        case .fcomp, .ficomp, .fucomp, .fcomip, .fucomip: pops = 1
        case .fcompp, .fucompp: pops = 2
        default: pops = 0
        }
        let toFlags = op == .fcomi || op == .fcomip || op == .fucomi || op == .fucomip
        let unorderedOnly = op == .fucom || op == .fucomp || op == .fucompp || op == .fucomi || op == .fucomip
        // The outcome: nil = unordered. An invalid operand (an empty register, a NaN, an
        // unsupported encoding) makes the result unordered even when the exception is unmasked —
        // the host's processors set the condition codes or flags then too — but an unmasked
        // exception stops the pops.
        var order: Int? = nil
        var stopped = false
        if isEmpty(st: 0) || (source == nil && isEmpty(st: sourceIndex)) {
            stopped = x87StackUnderflow()
        } else {
            let a = SoftFloat.unpack(extended: st(0))
            let b = source ?? SoftFloat.unpack(extended: st(sourceIndex))
            if a.kind == .unsupported || b.kind == .unsupported || a.isNaN || b.isNaN {
                let invalid = a.kind == .unsupported || b.kind == .unsupported || !unorderedOnly
                    || a.isSignalingNaN || b.isSignalingNaN
                if invalid { stopped = x87Signal(.invalid) }
            } else {
                if (a.denormal || b.denormal) && x87Signal(.denormal) {
                    // Unmasked: nothing is compared or popped. The SDM does not say what the
                    // condition codes (ZF PF CF for FCOMI) then hold, and the host's processors
                    // leave values that follow no rule Visor could find: Visor leaves them, clears
                    // C1 (and OF SF AF).
                    if toFlags { cpu.rflags &= ~0x890 } else { setC1(false) }
                    return
                }
                order = SoftFloat.compare(a, b)
            }
            // FCOMI and friends leave C1 alone.
            if !toFlags { setC1(false) }
        }
        if toFlags {
            // ZF PF CF as the table says; OF SF AF cleared.
            let zf: UInt64 = 1 << 6, pf: UInt64 = 1 << 2, cf: UInt64 = 1
            let result: UInt64 = order.map { $0 == 0 ? zf : $0 < 0 ? cf : 0 } ?? zf | pf | cf
            cpu.rflags = (cpu.rflags & ~0x8d5) | result
        } else {
            let c1 = cpu.fsw & Self.fswC1 != 0
            switch order {
            case nil: setConditionCodes(c3: true, c2: true, c1: c1, c0: true)
            case 0: setConditionCodes(c3: true, c2: false, c1: c1, c0: false)
            case let o? where o < 0: setConditionCodes(c3: false, c2: false, c1: c1, c0: true)
            default: setConditionCodes(c3: false, c2: false, c1: c1, c0: false)
            }
        }
        if stopped { return }
        for _ in 0..<pops { x87Pop() }
    }

    /// FXAM: C3 C2 C0 = 000 unsupported, 001 NaN, 010 normal, 011 infinity, 100 zero, 101 empty,
    /// 110 denormal; C1 the sign.
    private func x87Examine() {
        let r = st(0)
        let sign = r.signExponent & 0x8000 != 0
        let exponent = r.signExponent & 0x7fff
        let integer = r.significand >> 63 == 1
        let (c3, c2, c0): (Bool, Bool, Bool)
        if isEmpty(st: 0) {
            (c3, c2, c0) = (true, false, true)
        } else if exponent == 0 {
            (c3, c2, c0) = r.significand == 0 ? (true, false, false) : (true, true, false)
        } else if !integer {
            (c3, c2, c0) = (false, false, false)
        } else if exponent == 0x7fff {
            (c3, c2, c0) = r.significand << 1 == 0 ? (false, true, true) : (false, false, true)
        } else {
            (c3, c2, c0) = (false, true, false)
        }
        setConditionCodes(c3: c3, c2: c2, c1: sign, c0: c0)
    }

    // MARK: FSQRT FRNDINT

    private func x87UnaryOnTop(_ op: Operation) {
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
        if op == .fsqrt && a.sign && a.kind != .zero {
            if let r = x87InvalidOperation() { setST(0, r) }
            return
        }
        if a.kind != .finite {
            setC1(false)
            setST(0, Self.x87Load(a))
            return
        }
        if a.denormal && x87Abort(.denormal) { return }
        if op == .fsqrt {
            setST(0, x87Deliver(SoftFloat.squareRootExact(a), precisionControl: true))
            return
        }
        // FRNDINT: to an integer by RC.
        if a.exponent >= 63 {
            setC1(false)
            setST(0, Self.x87Load(a))
            return
        }
        let (magnitude, inexact) = SoftFloat.roundToInteger(a, x87Rounding)
        let m = magnitude ?? 0
        let truncated = SoftFloat.roundToInteger(a, .towardZero).magnitude ?? 0
        setC1(inexact && m > truncated)
        if inexact { x87Signal(.inexact) }
        var result = SoftFloat.value(fromInteger: m, negative: a.sign)
        if result.kind == .zero { result.sign = a.sign }
        setST(0, Self.x87Load(result))
    }

    // MARK: FSCALE FXTRACT

    private func x87Scale() {
        if isEmpty(st: 0) || isEmpty(st: 1) {
            if x87StackUnderflow() { return }
            setST(0, Self.x87Indefinite)
            return
        }
        let a = SoftFloat.unpack(extended: st(0)), b = SoftFloat.unpack(extended: st(1))
        switch x87ScreenOperands(a, b) {
        case .abort: return
        case .result(let r): setST(0, r); return
        case .proceed: break
        }
        if b.kind == .infinity {
            if (a.kind == .zero && !b.sign) || (a.kind == .infinity && b.sign) {
                if let r = x87InvalidOperation() { setST(0, r) }
                return
            }
            if a.denormal && x87Abort(.denormal) { return }
            setC1(false)
            if a.kind == .finite { setST(0, Self.x87Load(b.sign ? .zero(a.sign) : .infinity(a.sign))) }
            return
        }
        if (a.denormal || b.denormal) && x87Abort(.denormal) { return }
        if a.kind != .finite {
            setC1(false)
            return
        }
        // The scale: ST(1) truncated to an integer; beyond ±2^20 every result overflows or underflows.
        var scale: Int32 = 0
        if b.kind == .finite {
            if b.exponent >= 20 {
                scale = 1 << 20
            } else {
                scale = Int32(truncatingIfNeeded: SoftFloat.roundToInteger(b, .towardZero).magnitude ?? 0)
            }
            if b.sign { scale = -scale }
        }
        var w = WideFloat(a)
        w.exponent += scale
        setST(0, x87Deliver(w, precisionControl: false))
    }

    private func x87Extract() {
        if isEmpty(st: 0) {
            // Masked: the indefinite as both results, pushed over whatever ST(7) holds.
            if x87StackUnderflow() { return }
            setST(0, Self.x87Indefinite)
            x87Push(Self.x87Indefinite)
            return
        }
        if !isEmpty(st: 7) {
            if x87StackOverflow() { return }
            setST(0, Self.x87Indefinite)
            x87Push(Self.x87Indefinite)
            return
        }
        let a = SoftFloat.unpack(extended: st(0))
        var exponent: Float80Bits, significand: Float80Bits
        switch x87ScreenOperands(a, nil) {
        case .abort: return
        case .result(let r):
            exponent = r; significand = r
        case .proceed:
            switch a.kind {
            case .zero:
                if x87Abort(.divideByZero) { return }
                exponent = Self.x87Load(.infinity(true))
                significand = Self.x87Load(a)
            case .infinity:
                exponent = Self.x87Load(.infinity(false))
                significand = Self.x87Load(a)
            default:
                if a.denormal && x87Abort(.denormal) { return }
                exponent = Self.x87Load(SoftFloat.value(fromInteger: UInt64(a.exponent.magnitude), negative: a.exponent < 0))
                significand = Float80Bits(significand: a.significand, signExponent: (a.sign ? 0x8000 : 0) | 0x3fff)
            }
            setC1(false)
        }
        setST(0, exponent)
        x87Push(significand)
    }

    // MARK: FPREM FPREM1

    private func x87PartialRemainder(nearest: Bool) {
        // C2 is set only by a partial reduction; every other outcome clears it.
        cpu.fsw &= ~Self.fswC2
        if isEmpty(st: 0) || isEmpty(st: 1) {
            if x87StackUnderflow() { return }
            setST(0, Self.x87Indefinite)
            return
        }
        let a = SoftFloat.unpack(extended: st(0)), b = SoftFloat.unpack(extended: st(1))
        switch x87ScreenOperands(a, b) {
        case .abort: return
        case .result(let r):
            setST(0, r)
            return
        case .proceed: break
        }
        if a.kind == .infinity || b.kind == .zero {
            if let r = x87InvalidOperation() { setST(0, r) }
            return
        }
        if (a.denormal || b.denormal) && x87Abort(.denormal) { return }
        if a.kind == .zero || b.kind == .infinity {
            // The remainder is ST(0) itself, delivered again (a denormal is tiny: underflow).
            if a.kind == .finite {
                setST(0, x87Deliver(WideFloat(a), precisionControl: false))
            } else {
                setST(0, Self.x87Load(a))
            }
            setConditionCodes(c3: false, c2: false, c1: false, c0: false)
            return
        }
        let difference = Int(a.exponent) - Int(b.exponent)
        if difference >= 64 {
            // Partial: reduce by the multiple of b × 2^(D − N) that an N-bit truncated quotient
            // gives, N = 32 + (D mod 32), which leaves an exponent difference that is a multiple
            // of 32 (the amount the host's processors reduce by; the SDM allows 32 to 63).
            let n = 32 + difference % 32
            let (_, remainder) = (UInt128(a.significand) << UInt128(n)).quotientAndRemainder(dividingBy: UInt128(b.significand))
            store(remainder: remainder, sign: a.sign, exponent: a.exponent - 63 - Int32(n))
            setConditionCodes(c3: false, c2: true, c1: false, c0: false)
            return
        }
        // Exact: R = A·2^D mod B (with the quotient's low bits), r = ±R × 2^(eb − 63).
        var quotient: UInt128 = 0
        var remainder: UInt128
        var sign = a.sign
        if difference < 0 {
            remainder = UInt128(a.significand)
            if nearest && difference == -1 && a.significand > b.significand {
                // |a| in (|b|/2, |b|): the nearest multiple is 1.
                quotient = 1
                remainder = UInt128(b.significand) * 2 - UInt128(a.significand)
                sign.toggle()
                store(remainder: remainder, sign: sign, exponent: a.exponent - 63)
            } else {
                store(remainder: remainder, sign: sign, exponent: a.exponent - 63)
            }
        } else {
            let dividend = UInt128(a.significand) << UInt128(difference)
            (quotient, remainder) = dividend.quotientAndRemainder(dividingBy: UInt128(b.significand))
            if nearest {
                let twice = remainder * 2
                if twice > UInt128(b.significand) || (twice == UInt128(b.significand) && quotient & 1 == 1) {
                    quotient += 1
                    remainder = UInt128(b.significand) - remainder
                    sign.toggle()
                }
            }
            store(remainder: remainder, sign: sign, exponent: b.exponent - 63)
        }
        setConditionCodes(c3: quotient >> 1 & 1 == 1, c2: false, c1: quotient & 1 == 1, c0: quotient >> 2 & 1 == 1)

        func store(remainder: UInt128, sign: Bool, exponent: Int32) {
            if remainder == 0 {
                setST(0, Self.x87Load(.zero(a.sign)))
                return
            }
            let lz = remainder.leadingZeroBitCount
            let w = WideFloat(sign: sign, exponent: exponent + 127 - Int32(lz), significand: remainder << UInt128(lz))
            let c1 = cpu.fsw & Self.fswC1
            setST(0, x87Deliver(w, precisionControl: false))
            cpu.fsw = (cpu.fsw & ~Self.fswC1) | c1
        }
    }
}
