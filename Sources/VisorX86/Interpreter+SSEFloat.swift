// SSE, SSE2 and SSE3 floating point: scalar and packed single and double moves, shuffles,
// arithmetic (horizontal and alternating too), minimum/maximum, square root, reciprocal
// approximations, compares and conversions, with
// MXCSR's rounding control, flush-to-zero, denormals-are-zero, exception flags and masks.
// The arithmetic is `SoftFloat` (bit-exact); this file applies the SSE rules around it:
// - NaN operands: an SNaN raises invalid; the result is the first operand if it is a NaN,
//   else the second, made quiet. Invalid operations without NaN operands give the default NaN
//   (negative, quiet, zero payload). MIN/MAX return the second operand when either is a NaN or
//   both are zeros, and raise invalid for any NaN.
// - Exceptions are taken over all elements: the pre-computation ones (invalid, denormal, divide
//   by zero) first; when any of them is unmasked, their flags are set, #XM is raised and nothing
//   else happens. Otherwise the results are computed; when an overflow, underflow or inexact is
//   unmasked, all the detected flags are set and #XM raised with the destination unchanged.
//   Unmasked underflow is signalled for every tiny result, masked underflow for tiny and inexact
//   ones. #XM is #UD while CR4.OSXMMEXCPT is clear.
// - DAZ reads denormal operands as zeros of their sign (no denormal flag); FTZ returns zero for a
//   tiny result while underflow is masked (with underflow and inexact).
// - RCPPS/RCPSS/RSQRTPS/RSQRTSS are approximations whose exact values the SDM leaves to the
//   implementation (relative error at most 1.5 × 2^-12): Visor returns the correctly rounded
//   value, treats denormal operands as zeros, flushes tiny results to zero and raises nothing.

import VisorX86Decode

extension X86Machine {
    /// Executes an SSE/SSE2 floating-point instruction; false if `insn` is not one.
    func executeSSEFloat(_ insn: DecodedInstruction) throws(X86Interruption) -> Bool {
        let op = insn.operation
        switch op {
        case .movss, .movsd, .movlp, .movhp, .movhlps, .movlhps, .shufps, .shufpd, .movmskps, .movmskpd,
             .movsldup, .movshdup, .movddup:
            try checkVectorInstruction(insn, sse: true)
            try executeFloatMove(insn)
        case .addsubps, .addsubpd, .haddps, .haddpd, .hsubps, .hsubpd:
            try checkVectorInstruction(insn, sse: true)
            try executeHorizontalArithmetic(insn)
        case .addps, .addpd, .addss, .addsd, .subps, .subpd, .subss, .subsd, .mulps, .mulpd, .mulss, .mulsd,
             .divps, .divpd, .divss, .divsd, .minps, .minpd, .minss, .minsd, .maxps, .maxpd, .maxss, .maxsd,
             .sqrtps, .sqrtpd, .sqrtss, .sqrtsd, .cmpps, .cmppd, .cmpss, .cmpsd:
            try checkVectorInstruction(insn, sse: true)
            try executeFloatArithmetic(insn)
        case .rcpps, .rcpss, .rsqrtps, .rsqrtss:
            try checkVectorInstruction(insn, sse: true)
            try executeReciprocalEstimate(insn)
        case .comiss, .comisd, .ucomiss, .ucomisd:
            try checkVectorInstruction(insn, sse: true)
            try executeFloatCompareFlags(insn)
        case .cvtpi2ps, .cvtpi2pd, .cvtsi2ss, .cvtsi2sd, .cvtps2pi, .cvttps2pi, .cvtpd2pi, .cvttpd2pi,
             .cvtss2si, .cvttss2si, .cvtsd2si, .cvttsd2si, .cvtps2pd, .cvtpd2ps, .cvtss2sd, .cvtsd2ss,
             .cvtdq2ps, .cvtps2dq, .cvttps2dq, .cvtdq2pd, .cvtpd2dq, .cvttpd2dq:
            try checkVectorInstruction(insn, sse: true)
            try executeFloatConversion(insn)
        default:
            return false
        }
        return true
    }

    // MARK: MXCSR

    var mxcsrRounding: FloatRounding { FloatRounding(rawValue: UInt8(truncatingIfNeeded: cpu.mxcsr >> 13) & 3) ?? .nearest }
    var mxcsrMasks: FloatExceptions { FloatExceptions(rawValue: UInt8(truncatingIfNeeded: cpu.mxcsr >> 7)) }
    var denormalsAreZero: Bool { cpu.mxcsr & 0x40 != 0 }

    /// The rounding environment for `format`: RC, and FTZ when underflow is masked.
    func sseEnvironment(_ format: FloatFormat) -> FloatEnvironment {
        FloatEnvironment(format: format, rounding: mxcsrRounding,
                         flushToZero: cpu.mxcsr & 0x8000 != 0 && cpu.mxcsr & (1 << 11) != 0)
    }

    /// Sets the flags of an instruction's elements, or raises #XM (#UD) as the masks say; on
    /// return the destination may be written. The x87-to-MMX transition of `insn` precedes it.
    func commitSIMDExceptions(_ insn: DecodedInstruction, pre: FloatExceptions, post: FloatExceptions)
        throws(X86Interruption)
    {
        mmxTransition(insn)
        let masks = mxcsrMasks
        if !pre.subtracting(masks).isEmpty {
            cpu.mxcsr |= UInt32(pre.rawValue)
            throw simdException
        }
        let all = pre.union(post)
        cpu.mxcsr |= UInt32(all.rawValue)
        if !post.subtracting(masks).isEmpty { throw simdException }
    }

    // MARK: Elements

    /// A float element's value with DAZ applied.
    func unpackElement(_ bits: UInt64, _ format: FloatFormat) -> FloatValue {
        format == .single
            ? SoftFloat.unpack(single: UInt32(truncatingIfNeeded: bits), denormalsAreZero: denormalsAreZero)
            : SoftFloat.unpack(double: bits, denormalsAreZero: denormalsAreZero)
    }

    /// One element's result: its encoding and exceptions.
    struct ElementResult {
        var bits: UInt64
        var exceptions: FloatExceptions
    }

    /// The rounded result of a finite computation. With underflow (overflow) unmasked, a tiny
    /// (huge) result is an underflow (overflow) whether exact or not, and inexact goes with it
    /// when the result rounded with an unbounded exponent — what a handler would be given — is.
    private func element(_ r: FloatResult) -> ElementResult {
        var e = r.exceptions
        let masks = mxcsrMasks
        if (r.tiny && !masks.contains(.underflow)) || (r.overflowed && !masks.contains(.overflow)) {
            e = r.tiny ? .underflow : .overflow
            if r.inexactUnbounded { e.insert(.inexact) }
        }
        return ElementResult(bits: UInt64(truncatingIfNeeded: r.bits), exceptions: e)
    }

    private func defaultNaN(_ format: FloatFormat) -> UInt64 {
        UInt64(truncatingIfNeeded: SoftFloat.defaultNaNBits(format))
    }

    /// The SSE NaN rule for two operands, or nil when neither is a NaN.
    private func propagateNaN(_ a: FloatValue, _ b: FloatValue, _ format: FloatFormat) -> ElementResult? {
        guard a.isNaN || b.isNaN else { return nil }
        let invalid: FloatExceptions = a.isSignalingNaN || b.isSignalingNaN ? .invalid : []
        let nan = a.isNaN ? a.quieted : b.quieted
        return ElementResult(bits: UInt64(truncatingIfNeeded: SoftFloat.nanBits(nan, format)), exceptions: invalid)
    }

    private func denormalFlag(_ a: FloatValue, _ b: FloatValue) -> FloatExceptions {
        a.denormal || b.denormal ? .denormal : []
    }

    enum FloatBinary { case add, subtract, multiply, divide, minimum, maximum }

    /// One element of ADD/SUB/MUL/DIV/MIN/MAX.
    func binaryElement(_ op: FloatBinary, _ x: UInt64, _ y: UInt64, _ format: FloatFormat) -> ElementResult {
        let a = unpackElement(x, format), b = unpackElement(y, format)
        let env = sseEnvironment(format)
        if op == .minimum || op == .maximum {
            if a.isNaN || b.isNaN { return ElementResult(bits: encodeOperand(b, y, format), exceptions: .invalid) }
            let flags = denormalFlag(a, b)
            if a.kind == .zero && b.kind == .zero { return ElementResult(bits: encodeOperand(b, y, format), exceptions: flags) }
            let c = SoftFloat.compare(a, b)
            let takeA = op == .minimum ? c < 0 : c > 0
            return ElementResult(bits: takeA ? encodeOperand(a, x, format) : encodeOperand(b, y, format), exceptions: flags)
        }
        if let nan = propagateNaN(a, b, format) { return nan }
        let invalid = ElementResult(bits: defaultNaN(format), exceptions: .invalid)
        var flags = denormalFlag(a, b)
        func special(_ v: FloatValue) -> ElementResult {
            ElementResult(bits: UInt64(truncatingIfNeeded: SoftFloat.encode(v, env).bits), exceptions: flags)
        }
        switch op {
        case .add, .subtract:
            var b2 = b
            if op == .subtract { b2.sign.toggle() }
            if a.kind == .infinity || b2.kind == .infinity {
                if a.kind == .infinity && b2.kind == .infinity && a.sign != b2.sign { return invalid }
                return special(a.kind == .infinity ? a : b2)
            }
            if a.kind == .zero && b2.kind == .zero {
                return special(.zero(a.sign == b2.sign ? a.sign : env.rounding == .down))
            }
            if a.kind == .zero { return addFlags(element(SoftFloat.encode(b2, env)), flags) }
            if b2.kind == .zero { return addFlags(element(SoftFloat.encode(a, env)), flags) }
            return addFlags(element(SoftFloat.add(a, b2, subtract: false, env)), flags)
        case .multiply:
            let sign = a.sign != b.sign
            if a.kind == .infinity || b.kind == .infinity {
                if a.kind == .zero || b.kind == .zero { return invalid }
                return special(.infinity(sign))
            }
            if a.kind == .zero || b.kind == .zero { return special(.zero(sign)) }
            return addFlags(element(SoftFloat.multiply(a, b, env)), flags)
        default:  // .divide
            let sign = a.sign != b.sign
            if a.kind == .infinity {
                if b.kind == .infinity { return invalid }
                return special(.infinity(sign))
            }
            if b.kind == .infinity { return special(.zero(sign)) }
            if b.kind == .zero {
                if a.kind == .zero { return invalid }
                // Divide by zero stands alone: a denormal dividend is not also reported.
                flags = .divideByZero
                return special(.infinity(sign))
            }
            if a.kind == .zero { return special(.zero(sign)) }
            return addFlags(element(SoftFloat.divide(a, b, env)), flags)
        }
    }

    private func addFlags(_ r: ElementResult, _ flags: FloatExceptions) -> ElementResult {
        ElementResult(bits: r.bits, exceptions: r.exceptions.union(flags))
    }

    /// An operand returned as the result (MIN/MAX): its own encoding, or a zero when DAZ read it so.
    private func encodeOperand(_ v: FloatValue, _ bits: UInt64, _ format: FloatFormat) -> UInt64 {
        v.kind == .zero ? UInt64(truncatingIfNeeded: SoftFloat.zeroBits(v.sign, format)) : bits
    }

    /// One element of SQRT.
    func squareRootElement(_ x: UInt64, _ format: FloatFormat) -> ElementResult {
        let a = unpackElement(x, format)
        let env = sseEnvironment(format)
        if a.isNaN {
            return ElementResult(bits: UInt64(truncatingIfNeeded: SoftFloat.nanBits(a.quieted, format)),
                                 exceptions: a.isSignalingNaN ? .invalid : [])
        }
        if a.kind == .zero { return ElementResult(bits: UInt64(truncatingIfNeeded: SoftFloat.zeroBits(a.sign, format)), exceptions: []) }
        if a.sign { return ElementResult(bits: defaultNaN(format), exceptions: .invalid) }
        if a.kind == .infinity { return ElementResult(bits: UInt64(truncatingIfNeeded: SoftFloat.infinityBits(false, format)), exceptions: []) }
        return addFlags(element(SoftFloat.squareRoot(a, env)), a.denormal ? .denormal : [])
    }

    /// One element of CMPccPS/PD/SS/SD: all ones when the predicate holds.
    func compareElement(_ x: UInt64, _ y: UInt64, predicate: Int, _ format: FloatFormat) -> ElementResult {
        let a = unpackElement(x, format), b = unpackElement(y, format)
        let unordered = a.isNaN || b.isNaN
        let signaling = [1, 2, 5, 6].contains(predicate & 7)
        var flags: FloatExceptions = []
        if a.isSignalingNaN || b.isSignalingNaN || (signaling && unordered) { flags.insert(.invalid) }
        if !unordered { flags.formUnion(denormalFlag(a, b)) }
        let c = unordered ? 0 : SoftFloat.compare(a, b)
        let holds: Bool
        switch predicate & 7 {
        case 0: holds = !unordered && c == 0
        case 1: holds = !unordered && c < 0
        case 2: holds = !unordered && c <= 0
        case 3: holds = unordered
        case 4: holds = unordered || c != 0
        case 5: holds = unordered || c >= 0
        case 6: holds = unordered || c > 0
        default: holds = !unordered
        }
        let ones: UInt64 = format == .single ? 0xffff_ffff : .max
        return ElementResult(bits: holds ? ones : 0, exceptions: flags)
    }

    // MARK: Instructions

    private func floatShape(_ op: Operation) -> (format: FloatFormat, packed: Bool) {
        switch op {
        case .addps, .subps, .mulps, .divps, .minps, .maxps, .sqrtps, .cmpps, .rcpps, .rsqrtps: return (.single, true)
        case .addpd, .subpd, .mulpd, .divpd, .minpd, .maxpd, .sqrtpd, .cmppd: return (.double, true)
        case .addss, .subss, .mulss, .divss, .minss, .maxss, .sqrtss, .cmpss, .rcpss, .rsqrtss: return (.single, false)
        default: return (.double, false)
        }
    }

    /// The elements of a vector: `count` of `bits` bits.
    @inline(__always)
    private func element(_ v: UInt128, _ i: Int, bits: Int) -> UInt64 { VectorLanes.lane(v, i, bits: bits) }

    /// Reads the source of a float instruction: 16 aligned bytes for packed forms, the low
    /// element (a register's, or 4 or 8 bytes of memory) for scalar ones.
    private func floatSource(_ insn: DecodedInstruction) throws(X86Interruption) -> UInt128 {
        try readVector(insn.source, insn, aligned: true)
    }

    private func executeFloatArithmetic(_ insn: DecodedInstruction) throws(X86Interruption) {
        let op = insn.operation
        let (format, packed) = floatShape(op)
        let bits = format == .single ? 32 : 64
        let count = packed ? 128 / bits : 1
        let b = try floatSource(insn)
        let a = try readVector(insn.destination, insn)
        // The destination with its elements replaced one by one (no allocation on this path).
        var result = a
        let laneMask: UInt128 = bits == 32 ? 0xffff_ffff : 0xffff_ffff_ffff_ffff
        var pre: FloatExceptions = [], post: FloatExceptions = []
        for i in 0..<count {
            let x = element(a, i, bits: bits), y = element(b, i, bits: bits)
            let r: ElementResult
            switch op {
            case .addps, .addpd, .addss, .addsd: r = binaryElement(.add, x, y, format)
            case .subps, .subpd, .subss, .subsd: r = binaryElement(.subtract, x, y, format)
            case .mulps, .mulpd, .mulss, .mulsd: r = binaryElement(.multiply, x, y, format)
            case .divps, .divpd, .divss, .divsd: r = binaryElement(.divide, x, y, format)
            case .minps, .minpd, .minss, .minsd: r = binaryElement(.minimum, x, y, format)
            case .maxps, .maxpd, .maxss, .maxsd: r = binaryElement(.maximum, x, y, format)
            case .sqrtps, .sqrtpd, .sqrtss, .sqrtsd: r = squareRootElement(y, format)
            default: r = compareElement(x, y, predicate: Int(insn.immediate & 7), format)
            }
            let shift = UInt128(i * bits)
            result = result & ~(laneMask << shift) | (UInt128(r.bits) & laneMask) << shift
            pre.formUnion(r.exceptions.intersection(.preComputation))
            post.formUnion(r.exceptions.subtracting(.preComputation))
        }
        try commitSIMDExceptions(insn, pre: pre, post: post)
        try writeVector(insn.destination, insn, result)
    }

    /// SSE3's ADDSUBPS/PD (even elements a − b, odd ones a + b) and HADDPS/PD, HSUBPS/PD (the
    /// destination's pairs, then the source's: a0 ± a1, a2 ± a3, b0 ± b1, b2 ± b3).
    private func executeHorizontalArithmetic(_ insn: DecodedInstruction) throws(X86Interruption) {
        let op = insn.operation
        let format: FloatFormat = op == .addsubps || op == .haddps || op == .hsubps ? .single : .double
        let bits = format == .single ? 32 : 64
        let count = 128 / bits
        let b = try floatSource(insn)
        let a = try readVector(insn.destination, insn)
        var results: [UInt64] = []
        var pre: FloatExceptions = [], post: FloatExceptions = []
        for i in 0..<count {
            let r: ElementResult
            switch op {
            case .addsubps, .addsubpd:
                r = binaryElement(i & 1 == 0 ? .subtract : .add, element(a, i, bits: bits), element(b, i, bits: bits), format)
            default:
                // Element i: a pair of the destination's (first half) or of the source's.
                let source = i < count / 2 ? a : b
                let pair = 2 * (i % (count / 2))
                let kind: FloatBinary = op == .haddps || op == .haddpd ? .add : .subtract
                r = binaryElement(kind, element(source, pair, bits: bits), element(source, pair + 1, bits: bits), format)
            }
            results.append(r.bits)
            pre.formUnion(r.exceptions.intersection(.preComputation))
            post.formUnion(r.exceptions.subtracting(.preComputation))
        }
        try commitSIMDExceptions(insn, pre: pre, post: post)
        try writeVector(insn.destination, insn, merge(0, results, bits: bits))
    }

    /// `base` with its low elements replaced by `elements`.
    private func merge(_ base: UInt128, _ elements: [UInt64], bits: Int) -> UInt128 {
        VectorLanes.make(count: 128 / bits, bits: bits) { i in i < elements.count ? elements[i] : element(base, i, bits: bits) }
    }

    /// RCPPS/RCPSS/RSQRTPS/RSQRTSS: correctly rounded 1/x and 1/√x in single precision.
    private func executeReciprocalEstimate(_ insn: DecodedInstruction) throws(X86Interruption) {
        let op = insn.operation
        let packed = op == .rcpps || op == .rsqrtps
        let root = op == .rsqrtps || op == .rsqrtss
        let b = try floatSource(insn)
        let a = try readVector(insn.destination, insn)
        let env = FloatEnvironment(format: .single, rounding: .nearest, flushToZero: true)
        let one = SoftFloat.unpack(single: 0x3f80_0000)
        var results: [UInt64] = []
        for i in 0..<(packed ? 4 : 1) {
            var x = SoftFloat.unpack(single: UInt32(truncatingIfNeeded: element(b, i, bits: 32)), denormalsAreZero: true)
            let bits: UInt128
            if x.isNaN {
                bits = SoftFloat.nanBits(x.quieted, .single)
            } else if x.kind == .zero {
                bits = SoftFloat.infinityBits(x.sign, .single)
            } else if root && x.sign {
                bits = SoftFloat.defaultNaNBits(.single)
            } else if x.kind == .infinity {
                bits = SoftFloat.zeroBits(x.sign, .single)
            } else if root {
                x = SoftFloat.unpack(extended: Float80Bits(bits: SoftFloat.squareRoot(x, FloatEnvironment(format: .extended, rounding: .nearest)).bits))
                bits = SoftFloat.divide(one, x, env).bits
            } else {
                bits = SoftFloat.divide(one, x, env).bits
            }
            results.append(UInt64(truncatingIfNeeded: bits))
        }
        try writeVector(insn.destination, insn, merge(a, results, bits: 32))
    }

    /// COMISS/COMISD/UCOMISS/UCOMISD: ZF, PF, CF = 111 unordered, 000 greater, 001 less, 100
    /// equal; OF, SF, AF cleared. COMIS* raise invalid for QNaNs too.
    private func executeFloatCompareFlags(_ insn: DecodedInstruction) throws(X86Interruption) {
        let format: FloatFormat = insn.operation == .comiss || insn.operation == .ucomiss ? .single : .double
        let bits = format == .single ? 32 : 64
        let y = element(try floatSource(insn), 0, bits: bits)
        let x = element(try readVector(insn.destination, insn), 0, bits: bits)
        let a = unpackElement(x, format), b = unpackElement(y, format)
        let unordered = a.isNaN || b.isNaN
        var flags: FloatExceptions = []
        let signaling = insn.operation == .comiss || insn.operation == .comisd
        if a.isSignalingNaN || b.isSignalingNaN || (signaling && unordered) { flags.insert(.invalid) }
        if !unordered { flags.formUnion(denormalFlag(a, b)) }
        try commitSIMDExceptions(insn, pre: flags, post: [])
        let zf: UInt64 = 1 << 6, pf: UInt64 = 1 << 2, cf: UInt64 = 1
        var result: UInt64
        if unordered {
            result = zf | pf | cf
        } else {
            let c = SoftFloat.compare(a, b)
            result = c == 0 ? zf : c < 0 ? cf : 0
        }
        let status: UInt64 = 0x8d5  // OF SF ZF AF PF CF
        cpu.rflags = (cpu.rflags & ~status) | result
    }

    // MARK: Conversions

    private func executeFloatConversion(_ insn: DecodedInstruction) throws(X86Interruption) {
        let op = insn.operation
        var pre: FloatExceptions = [], post: FloatExceptions = []
        func note(_ e: FloatExceptions) {
            pre.formUnion(e.intersection(.preComputation))
            post.formUnion(e.subtracting(.preComputation))
        }
        switch op {
        case .cvtsi2ss, .cvtsi2sd:
            let format: FloatFormat = op == .cvtsi2ss ? .single : .double
            let size = insn.operandSize == 8 ? 8 : 4
            let raw = try read(insn.source, insn) & Self.mask(UInt8(size))
            let r = integerToFloat(raw, bits: size * 8, format)
            note(r.exceptions)
            let a = try readVector(insn.destination, insn)
            try commitSIMDExceptions(insn, pre: pre, post: post)
            try writeVector(insn.destination, insn, merge(a, [r.bits], bits: format == .single ? 32 : 64))
        case .cvtpi2ps, .cvtdq2ps:
            let count = op == .cvtpi2ps ? 2 : 4
            let b = op == .cvtpi2ps ? try readVector(insn.source, insn) : try floatSource(insn)
            let a = try readVector(insn.destination, insn)
            var results: [UInt64] = []
            for i in 0..<count {
                let r = integerToFloat(element(b, i, bits: 32), bits: 32, .single)
                note(r.exceptions)
                results.append(r.bits)
            }
            try commitSIMDExceptions(insn, pre: pre, post: post)
            try writeVector(insn.destination, insn, merge(a, results, bits: 32))
        case .cvtpi2pd, .cvtdq2pd:
            let b = try readVector(insn.source, insn)
            let results = (0..<2).map { integerToFloat(element(b, $0, bits: 32), bits: 32, .double).bits }
            try writeVector(insn.destination, insn, merge(0, results, bits: 64))
        case .cvtss2si, .cvttss2si, .cvtsd2si, .cvttsd2si:
            let format: FloatFormat = op == .cvtss2si || op == .cvttss2si ? .single : .double
            let truncate = op == .cvttss2si || op == .cvttsd2si
            let x = element(try readVector(insn.source, insn), 0, bits: format == .single ? 32 : 64)
            let size = insn.operandSize == 8 ? 8 : 4
            let r = floatToInteger(x, format, bits: size * 8, truncate: truncate)
            note(r.exceptions)
            try commitSIMDExceptions(insn, pre: pre, post: post)
            try write(insn.destination, insn, r.bits)
        case .cvtps2pi, .cvttps2pi, .cvtps2dq, .cvttps2dq, .cvtpd2pi, .cvttpd2pi, .cvtpd2dq, .cvttpd2dq:
            let format: FloatFormat = [.cvtps2pi, .cvttps2pi, .cvtps2dq, .cvttps2dq].contains(op) ? .single : .double
            let truncate = [.cvttps2pi, .cvttps2dq, .cvttpd2pi, .cvttpd2dq].contains(op)
            let count = op == .cvtps2dq || op == .cvttps2dq ? 4 : 2
            let bits = format == .single ? 32 : 64
            let b = try floatSource(insn)
            var results: [UInt64] = []
            for i in 0..<count {
                let r = floatToInteger(element(b, i, bits: bits), format, bits: 32, truncate: truncate)
                note(r.exceptions)
                results.append(r.bits)
            }
            try commitSIMDExceptions(insn, pre: pre, post: post)
            // The XMM forms of the double conversions zero the upper half.
            try writeVector(insn.destination, insn, merge(0, results, bits: 32))
        case .cvtps2pd, .cvtss2sd:
            let count = op == .cvtps2pd ? 2 : 1
            let b = try readVector(insn.source, insn)
            let a = try readVector(insn.destination, insn)
            var results: [UInt64] = []
            for i in 0..<count {
                let r = convertFloat(element(b, i, bits: 32), from: .single, to: .double)
                note(r.exceptions)
                results.append(r.bits)
            }
            try commitSIMDExceptions(insn, pre: pre, post: post)
            try writeVector(insn.destination, insn, merge(op == .cvtps2pd ? 0 : a, results, bits: 64))
        default:  // .cvtpd2ps, .cvtsd2ss
            let count = op == .cvtpd2ps ? 2 : 1
            let b = op == .cvtpd2ps ? try floatSource(insn) : try readVector(insn.source, insn)
            let a = try readVector(insn.destination, insn)
            var results: [UInt64] = []
            for i in 0..<count {
                let r = convertFloat(element(b, i, bits: 64), from: .double, to: .single)
                note(r.exceptions)
                results.append(r.bits)
            }
            try commitSIMDExceptions(insn, pre: pre, post: post)
            try writeVector(insn.destination, insn, merge(op == .cvtpd2ps ? 0 : a, results, bits: 32))
        }
    }

    /// A signed integer of `bits` bits to `format`, rounded by MXCSR.
    func integerToFloat(_ raw: UInt64, bits: Int, _ format: FloatFormat) -> ElementResult {
        let negative = raw >> UInt64(bits - 1) & 1 == 1
        let value = bits == 64 ? raw : raw & ((1 << UInt64(bits)) - 1)
        let magnitude = negative ? (0 &- value) & (bits == 64 ? .max : (1 << UInt64(bits)) - 1) : value
        let v = SoftFloat.value(fromInteger: magnitude, negative: negative)
        if v.kind == .zero { return ElementResult(bits: 0, exceptions: []) }
        return element(SoftFloat.encode(v, sseEnvironment(format)))
    }

    /// A float element to a signed integer of `bits` bits: rounded by MXCSR or truncated; NaNs
    /// and values out of range give the integer indefinite (only the sign bit set) and invalid.
    func floatToInteger(_ x: UInt64, _ format: FloatFormat, bits: Int, truncate: Bool) -> ElementResult {
        let indefinite: UInt64 = 1 << UInt64(bits - 1)
        let a = unpackElement(x, format)
        switch a.kind {
        case .zero: return ElementResult(bits: 0, exceptions: [])
        case .finite: break
        default: return ElementResult(bits: indefinite, exceptions: .invalid)
        }
        let (magnitude, inexact) = SoftFloat.roundToInteger(a, truncate ? .towardZero : mxcsrRounding)
        guard let m = magnitude, m <= (a.sign ? indefinite : indefinite - 1) else {
            return ElementResult(bits: indefinite, exceptions: .invalid)
        }
        let value = a.sign ? 0 &- m : m
        return ElementResult(bits: bits == 64 ? value : value & ((1 << UInt64(bits)) - 1),
                             exceptions: inexact ? .inexact : [])
    }

    /// CVTSS2SD / CVTSD2SS of one element: NaNs keep their (truncated or extended) payload and
    /// become quiet; denormal operands raise denormal.
    func convertFloat(_ x: UInt64, from: FloatFormat, to: FloatFormat) -> ElementResult {
        let a = unpackElement(x, from)
        if a.isNaN {
            return ElementResult(bits: UInt64(truncatingIfNeeded: SoftFloat.nanBits(a.quieted, to)),
                                 exceptions: a.isSignalingNaN ? .invalid : [])
        }
        let r = element(SoftFloat.encode(a, sseEnvironment(to)))
        return addFlags(r, a.denormal ? .denormal : [])
    }

    // MARK: Moves and shuffles

    private func executeFloatMove(_ insn: DecodedInstruction) throws(X86Interruption) {
        let op = insn.operation
        switch op {
        case .movss, .movsd:
            let bits = op == .movss ? 32 : 64
            let value = element(try readVector(insn.source, insn), 0, bits: bits)
            if insn.destination.kind == .xmm {
                // A load zeroes the rest of the register; a register source merges.
                let base = insn.source.kind == .memory ? 0 : try readVector(insn.destination, insn)
                try writeVector(insn.destination, insn, merge(base, [value], bits: bits))
            } else {
                try writeVector(insn.destination, insn, UInt128(value))
            }
        case .movlp, .movhp:
            let high = op == .movhp
            if insn.destination.kind == .xmm {
                let value = UInt64(truncatingIfNeeded: try readVector(insn.source, insn))
                let a = try readVector(insn.destination, insn)
                try writeVector(insn.destination, insn, merge(a, high ? [element(a, 0, bits: 64), value] : [value], bits: 64))
            } else {
                let v = try readVector(insn.source, insn)
                try writeVector(insn.destination, insn, UInt128(element(v, high ? 1 : 0, bits: 64)))
            }
        case .movhlps, .movlhps:
            let b = try readVector(insn.source, insn)
            let a = try readVector(insn.destination, insn)
            let r = op == .movhlps ? merge(a, [element(b, 1, bits: 64)], bits: 64)
                : merge(a, [element(a, 0, bits: 64), element(b, 0, bits: 64)], bits: 64)
            try writeVector(insn.destination, insn, r)
        case .shufps:
            let b = try floatSource(insn)
            let a = try readVector(insn.destination, insn)
            let order = Int(insn.immediate & 0xff)
            let r = VectorLanes.make(count: 4, bits: 32) { i in
                element(i < 2 ? a : b, (order >> (2 * i)) & 3, bits: 32)
            }
            try writeVector(insn.destination, insn, r)
        case .shufpd:
            let b = try floatSource(insn)
            let a = try readVector(insn.destination, insn)
            let order = Int(insn.immediate & 3)
            try writeVector(insn.destination, insn, merge(0, [element(a, order & 1, bits: 64), element(b, order >> 1, bits: 64)], bits: 64))
        case .movsldup, .movshdup:
            let b = try floatSource(insn)
            let odd = op == .movshdup ? 1 : 0
            try writeVector(insn.destination, insn, VectorLanes.make(count: 4, bits: 32) { element(b, ($0 & ~1) + odd, bits: 32) })
        case .movddup:
            let low = element(try readVector(insn.source, insn), 0, bits: 64)
            try writeVector(insn.destination, insn, UInt128(low) << 64 | UInt128(low))
        default:  // .movmskps, .movmskpd
            let bits = op == .movmskps ? 32 : 64
            let b = try readVector(insn.source, insn)
            var mask: UInt64 = 0
            for i in 0..<(128 / bits) { mask |= (element(b, i, bits: bits) >> UInt64(bits - 1)) << UInt64(i) }
            try write(insn.destination, insn, mask)
        }
    }
}
