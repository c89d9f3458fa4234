// The x87 FPU: the register stack, exception signalling, the data-movement and constant
// instructions, and the dispatch of the rest (`X87Environment.swift`, `X87Arithmetic.swift`,
// `X87Transcendental.swift`). Intel SDM Vol. 1 ch. 8 and the instruction pages.
//
// - The eight registers are 80-bit values (`Float80Bits`), addressed as ST(i) = R[(TOP + i) mod 8];
//   the tag word is kept abridged (valid or empty), and the full tag word FNSTENV/FNSAVE store is
//   computed from the contents. Arithmetic is exact (`SoftFloat`), rounded by the control word's
//   RC, and by its PC for FADD/FSUB/FMUL/FDIV (and their P, R and I forms) and FSQRT. PC = 01
//   (reserved) rounds as 64 bits.
// - Exceptions: each sets its flag in the status word; an unmasked one also sets ES and B, and
//   the next waiting x87 instruction raises #MF. An unmasked invalid, denormal or divide-by-zero
//   leaves the destination and the stack unchanged; an unmasked overflow or underflow with a
//   register destination stores the result with its exponent adjusted by 24576, and with a memory
//   destination stores nothing. Stack underflow (an empty operand) and overflow (pushing onto a
//   valid register) are invalid operations with SF set and C1 0 or 1; masked, they produce the
//   indefinite QNaN. Unsupported encodings (unnormals, pseudo-infinities, pseudo-NaNs) are
//   invalid operands.
// - NaNs: an SNaN operand raises invalid and is made quiet; with two NaN operands the result is
//   the QNaN if one is signalling, else the one with the larger significand.
// - Condition codes the SDM leaves undefined for an instruction are left unchanged.
// - Every instruction but the control ones (FNINIT, FNCLEX, FLDCW, FNSTCW, FNSTSW, FNSTENV,
//   FLDENV, FNSAVE, FRSTOR, FWAIT) records FOP, FCS:FIP and, with a memory operand, FDS:FDP.

import VisorX86Decode

extension X86Machine {
    /// The QNaN "real indefinite".
    static let x87Indefinite = Float80Bits(significand: 0xc000_0000_0000_0000, signExponent: 0xffff)
    static let fswC0: UInt16 = 1 << 8, fswC1: UInt16 = 1 << 9, fswC2: UInt16 = 1 << 10, fswC3: UInt16 = 1 << 14
    static let fswConditionCodes: UInt16 = fswC0 | fswC1 | fswC2 | fswC3
    static let fswStackFault: UInt16 = 1 << 6
    static let fswErrorSummary: UInt16 = 1 << 7 | 1 << 15

    // MARK: The register stack

    var x87Top: Int { Int(cpu.fsw >> 11) & 7 }

    func setX87Top(_ top: Int) {
        cpu.fsw = (cpu.fsw & ~0x3800) | UInt16(top & 7) << 11
    }

    /// The physical register of ST(i).
    @inline(__always)
    func physicalRegister(_ i: Int) -> Int { (x87Top + i) & 7 }

    func isEmpty(st i: Int) -> Bool { cpu.ftw & (1 << UInt8(physicalRegister(i))) == 0 }

    func st(_ i: Int) -> Float80Bits { cpu.fpr[physicalRegister(i)] }

    /// Writes ST(i) and tags it valid.
    func setST(_ i: Int, _ value: Float80Bits) {
        let p = physicalRegister(i)
        cpu.fpr[p] = value
        cpu.ftw |= 1 << UInt8(p)
    }

    /// Pushes `value` (TOP − 1; the caller has checked for overflow).
    func x87Push(_ value: Float80Bits) {
        setX87Top(x87Top - 1)
        setST(0, value)
    }

    /// Marks ST(0) empty and increments TOP.
    func x87Pop() {
        cpu.ftw &= ~(1 << UInt8(physicalRegister(0)))
        setX87Top(x87Top + 1)
    }

    func setC1(_ on: Bool) {
        cpu.fsw = on ? cpu.fsw | Self.fswC1 : cpu.fsw & ~Self.fswC1
    }

    func setConditionCodes(c3: Bool, c2: Bool, c1: Bool, c0: Bool) {
        var codes: UInt16 = 0
        if c0 { codes |= Self.fswC0 }
        if c1 { codes |= Self.fswC1 }
        if c2 { codes |= Self.fswC2 }
        if c3 { codes |= Self.fswC3 }
        cpu.fsw = (cpu.fsw & ~Self.fswConditionCodes) | codes
    }

    // MARK: Exceptions and rounding

    var x87Masks: FloatExceptions { FloatExceptions(rawValue: UInt8(truncatingIfNeeded: cpu.fcw)) }

    /// Sets the flags of `exceptions` (and SF); returns true when one of them is unmasked (ES and B
    /// are then set: #MF waits for the next waiting instruction).
    @discardableResult
    func x87Signal(_ exceptions: FloatExceptions, stackFault: Bool = false) -> Bool {
        cpu.fsw |= UInt16(exceptions.rawValue)
        if stackFault { cpu.fsw |= Self.fswStackFault }
        updateErrorSummary()
        return !exceptions.subtracting(x87Masks).isEmpty
    }

    /// A pre-computation exception (invalid, divide by zero, denormal): signalled; when unmasked
    /// the instruction stops with C1 cleared, and true is returned.
    func x87Abort(_ exceptions: FloatExceptions) -> Bool {
        guard x87Signal(exceptions) else { return false }
        setC1(false)
        return true
    }

    /// A stack underflow: invalid with SF, C1 = 0. True when unmasked (nothing may change).
    func x87StackUnderflow() -> Bool {
        setC1(false)
        return x87Signal(.invalid, stackFault: true)
    }

    /// A stack overflow: invalid with SF, C1 = 1.
    func x87StackOverflow() -> Bool {
        setC1(true)
        return x87Signal(.invalid, stackFault: true)
    }

    var x87Rounding: FloatRounding { FloatRounding(rawValue: UInt8(truncatingIfNeeded: cpu.fcw >> 10) & 3) ?? .nearest }

    /// Extended-format rounding by RC, to the precision PC selects when `precisionControl`.
    func x87Environment(precisionControl: Bool = false) -> FloatEnvironment {
        var precision = 64
        if precisionControl {
            switch (cpu.fcw >> 8) & 3 {
            case 0: precision = 24
            case 2: precision = 53
            default: precision = 64
            }
        }
        return FloatEnvironment(format: .extended, rounding: x87Rounding, precision: precision)
    }

    /// Stores a rounded finite result in ST(`index`) with the x87's overflow and underflow rules;
    /// false when an unmasked exception left nothing to store (never for register destinations).
    /// Rounds a result for a register destination with the x87's overflow and underflow rules,
    /// sets C1 and signals the exceptions; the value to store (always stored).
    func x87Deliver(_ w: WideFloat, precisionControl: Bool) -> Float80Bits {
        let env = x87Environment(precisionControl: precisionControl)
        var r = SoftFloat.roundPack(w, env)
        let masks = x87Masks
        var exceptions = r.exceptions
        if r.overflowed && !masks.contains(.overflow) {
            r = SoftFloat.roundBiasAdjusted(sign: w.sign, exponent: w.exponent, significand: w.significand, env)
            exceptions = r.exceptions.union(.overflow)
        } else if r.tiny && !masks.contains(.underflow) {
            r = SoftFloat.roundBiasAdjusted(sign: w.sign, exponent: w.exponent, significand: w.significand, env)
            exceptions = r.exceptions.union(.underflow)
        }
        setC1(r.roundedUp)
        x87Signal(exceptions)
        return Float80Bits(bits: r.bits)
    }

    /// The x87 NaN rule for one or two operands (at least one a NaN): the result, quiet.
    func x87PropagateNaN(_ a: FloatValue, _ b: FloatValue?) -> Float80Bits {
        var pick = a
        if let b, b.isNaN {
            if !a.isNaN {
                pick = b
            } else if a.kind != b.kind {
                pick = a.kind == .quietNaN ? a : b
            } else if b.significand > a.significand || (b.significand == a.significand && !b.sign && a.sign) {
                pick = b
            }
        }
        return Float80Bits(bits: SoftFloat.nanBits(pick.quieted, .extended))
    }

    // MARK: Pointers

    /// Records FOP, FCS:FIP and, for a memory operand, FDS:FDP (SDM 8.1.8, 8.1.9).
    func x87NoteInstruction(_ insn: DecodedInstruction) {
        cpu.fop = UInt16(truncatingIfNeeded: insn.immediate2) & 0x7ff
        cpu.fip = cpu.rip
        cpu.fcs = cpu.segments[X86CPU.cs].selector
        if insn.destination.kind == .memory || insn.source.kind == .memory {
            cpu.fdp = effectiveAddress(insn)
            cpu.fds = cpu.segments[Int(insn.memory.segment % 6)].selector
        }
    }

    // MARK: Memory operands

    /// Reads `count` bytes (up to 16) of the instruction's memory operand, little-endian.
    func readMemoryBytes(_ insn: DecodedInstruction, count: Int) throws(X86Interruption) -> UInt128 {
        let linear = try linearAddress(segment: insn.memory.segment, offset: effectiveAddress(insn), size: count)
        var value: UInt128 = 0
        var i = 0
        while i < count {
            let n = count - i >= 8 ? 8 : count - i >= 4 ? 4 : count - i >= 2 ? 2 : 1
            value |= UInt128(try readLinear(linear &+ UInt64(i), size: n)) << UInt128(8 * i)
            i += n
        }
        return value
    }

    /// Writes `count` bytes of `value` to the memory operand; every page is checked first.
    func writeMemoryBytes(_ insn: DecodedInstruction, count: Int, _ value: UInt128) throws(X86Interruption) {
        let linear = try linearAddress(segment: insn.memory.segment, offset: effectiveAddress(insn), size: count)
        _ = try translate(linear, .write)
        if (linear & 0xfff) + UInt64(count) > 0x1000 { _ = try translate(linear &+ UInt64(count - 1), .write) }
        var i = 0
        while i < count {
            let n = count - i >= 8 ? 8 : count - i >= 4 ? 4 : count - i >= 2 ? 2 : 1
            try writeLinear(linear &+ UInt64(i), size: n, value: UInt64(truncatingIfNeeded: value >> UInt128(8 * i)))
            i += n
        }
    }

    /// A real or integer memory operand as a value: m32fp, m64fp (denormals flagged), m80fp,
    /// m16int, m32int, m64int.
    func readX87Operand(_ insn: DecodedInstruction, integer: Bool) throws(X86Interruption) -> FloatValue {
        let size = Int(insn.source.size)
        let raw = try readMemoryBytes(insn, count: size)
        if integer {
            let bits = size * 8
            let v = UInt64(truncatingIfNeeded: raw)
            let negative = v >> UInt64(bits - 1) & 1 == 1
            let extended = negative && bits < 64 ? v | ~((1 << UInt64(bits)) - 1) : v
            return SoftFloat.value(fromInteger: negative ? 0 &- extended : extended, negative: negative)
        }
        switch size {
        case 4: return SoftFloat.unpack(single: UInt32(truncatingIfNeeded: raw))
        case 8: return SoftFloat.unpack(double: UInt64(truncatingIfNeeded: raw))
        default: return SoftFloat.unpack(extended: Float80Bits(bits: raw))
        }
    }

    // MARK: Dispatch

    func executeX87(_ insn: DecodedInstruction) throws(X86Interruption) {
        switch insn.operation {
        case .fninit, .fnclex, .fnstcw, .fnstsw, .fnstenv, .fnsave, .fnIgnored:
            try checkX87()
            try executeX87Control(insn)
        case .fldcw, .fldenv, .frstor, .fwait:
            if insn.operation == .fwait {
                // FWAIT checks only MP and TS for #NM.
                if cpu.cr0 & (Self.cr0MonitorCoprocessor | Self.cr0TaskSwitched)
                    == Self.cr0MonitorCoprocessor | Self.cr0TaskSwitched { throw .fault(.deviceNotAvailableFault) }
                if x87ExceptionPending { throw .fault(.x87FloatingPoint) }
            } else {
                try checkX87Waiting()
                try executeX87Control(insn)
            }
        case .fld, .fild, .fbld, .fst, .fstp, .fstpnce, .fist, .fistp, .fisttp, .fbstp, .fxch, .fcmovcc, .ffree, .ffreep,
             .fld1, .fldl2t, .fldl2e, .fldpi, .fldlg2, .fldln2, .fldz, .fdecstp, .fincstp, .fnop, .fchs, .fabs:
            try checkX87Waiting()
            try executeX87Movement(insn)
        default:
            try checkX87Waiting()
            try executeX87Arithmetic(insn)
        }
        retire(insn)
    }

    // MARK: Data movement

    private func executeX87Movement(_ insn: DecodedInstruction) throws(X86Interruption) {
        let op = insn.operation
        switch op {
        case .fld, .fild, .fbld:
            var value: FloatValue? = nil
            var raw80: Float80Bits? = nil
            if insn.source.kind == .memory {
                if op == .fbld {
                    raw80 = Self.packedBCDToExtended(try readMemoryBytes(insn, count: 10))
                } else if op == .fld && insn.source.size == 10 {
                    raw80 = Float80Bits(bits: try readMemoryBytes(insn, count: 10))
                } else {
                    value = try readX87Operand(insn, integer: op == .fild)
                }
            }
            x87NoteInstruction(insn)
            var result: Float80Bits
            if insn.source.kind == .x87 {
                let i = Int(insn.source.index & 7)
                if isEmpty(st: i) {
                    // Underflow, not overflow as well: the indefinite is pushed over whatever is there.
                    if x87StackUnderflow() { return }
                    x87Push(Self.x87Indefinite)
                    return
                }
                result = st(i)
            } else if let raw80 {
                result = raw80
            } else if let value {
                result = Self.x87Load(value)
            } else {
                result = Self.x87Indefinite
            }
            if !isEmpty(st: 7) {
                if x87StackOverflow() { return }
                result = Self.x87Indefinite
            } else {
                setC1(false)
                if let value {
                    // m32fp/m64fp: an SNaN raises invalid (unmasked, nothing is loaded); a denormal
                    // raises denormal, and is loaded (normalized) even when that is unmasked.
                    if value.isSignalingNaN && x87Abort(.invalid) { return }
                    if value.denormal { x87Signal(.denormal) }
                }
            }
            x87Push(result)
        case .fst, .fstp:
            x87NoteInstruction(insn)
            if insn.destination.kind == .x87 {
                let i = Int(insn.destination.index & 7)
                var value = st(0)
                if isEmpty(st: 0) {
                    if x87StackUnderflow() { return }
                    value = Self.x87Indefinite
                } else {
                    setC1(false)
                }
                setST(i, value)
            } else {
                let size = Int(insn.destination.size)
                var image: UInt128
                if isEmpty(st: 0) {
                    if x87StackUnderflow() { return }
                    image = size == 10 ? Self.x87Indefinite.bits : SoftFloat.defaultNaNBits(size == 4 ? .single : .double)
                } else if size == 10 {
                    setC1(false)
                    image = st(0).bits
                } else {
                    guard let stored = x87StoreReal(st(0), format: size == 4 ? .single : .double) else { return }
                    image = stored
                }
                try writeMemoryBytes(insn, count: size, image)
            }
            if op == .fstp { x87Pop() }
        case .fstpnce:
            // D9 D8+i: FSTP without the stack check: an empty ST(0) is popped without an
            // exception and nothing is stored (as this host's processors do).
            x87NoteInstruction(insn)
            setC1(false)
            if !isEmpty(st: 0) { setST(Int(insn.destination.index & 7), st(0)) }
            x87Pop()
        case .fist, .fistp, .fisttp:
            x87NoteInstruction(insn)
            let size = Int(insn.destination.size)
            let indefinite = UInt128(1) << UInt128(size * 8 - 1)
            var image = indefinite
            if isEmpty(st: 0) {
                if x87StackUnderflow() { return }
            } else {
                guard let stored = x87StoreInteger(st(0), bits: size * 8, truncate: op == .fisttp) else { return }
                image = stored
            }
            try writeMemoryBytes(insn, count: size, image)
            if op != .fist { x87Pop() }
        case .fbstp:
            x87NoteInstruction(insn)
            var image = Self.bcdIndefinite
            if isEmpty(st: 0) {
                if x87StackUnderflow() { return }
            } else {
                guard let stored = x87StoreBCD(st(0)) else { return }
                image = stored
            }
            try writeMemoryBytes(insn, count: 10, image)
            x87Pop()
        case .fxch:
            x87NoteInstruction(insn)
            let i = Int(insn.destination.index & 7)
            var a = st(0), b = st(i)
            if isEmpty(st: 0) || isEmpty(st: i) {
                if x87StackUnderflow() { return }
                if isEmpty(st: 0) { a = Self.x87Indefinite }
                if isEmpty(st: i) { b = Self.x87Indefinite }
            } else {
                setC1(false)
            }
            setST(0, b)
            setST(i, a)
        case .fcmovcc:
            x87NoteInstruction(insn)
            let i = Int(insn.source.index & 7)
            if isEmpty(st: 0) || isEmpty(st: i) {
                if x87StackUnderflow() { return }
                setST(0, Self.x87Indefinite)
                return
            }
            if conditionHolds(insn.condition) { setST(0, st(i)) }
        case .ffree, .ffreep:
            x87NoteInstruction(insn)
            cpu.ftw &= ~(1 << UInt8(physicalRegister(Int(insn.destination.index & 7))))
            if op == .ffreep { x87Pop() }
        case .fdecstp, .fincstp:
            x87NoteInstruction(insn)
            setC1(false)
            setX87Top(x87Top + (op == .fincstp ? 1 : -1))
        case .fnop:
            x87NoteInstruction(insn)
        case .fchs, .fabs:
            x87NoteInstruction(insn)
            if isEmpty(st: 0) {
                if x87StackUnderflow() { return }
                setST(0, Self.x87Indefinite)
                return
            }
            setC1(false)
            var v = st(0)
            v.signExponent = op == .fchs ? v.signExponent ^ 0x8000 : v.signExponent & 0x7fff
            setST(0, v)
        default:  // the constants
            x87NoteInstruction(insn)
            if !isEmpty(st: 7) {
                if x87StackOverflow() { return }
                x87Push(Self.x87Indefinite)
                return
            }
            setC1(false)
            x87Push(x87Constant(op))
        }
    }

    /// A value read from memory (m32fp, m64fp, an integer) as an 80-bit register: exact; SNaNs
    /// become quiet.
    static func x87Load(_ v: FloatValue) -> Float80Bits {
        switch v.kind {
        case .zero: return Float80Bits(bits: SoftFloat.zeroBits(v.sign, .extended))
        case .infinity: return Float80Bits(bits: SoftFloat.infinityBits(v.sign, .extended))
        case .quietNaN, .signalingNaN, .unsupported: return Float80Bits(bits: SoftFloat.nanBits(v.quieted, .extended))
        case .finite:
            return Float80Bits(significand: v.significand,
                               signExponent: (v.sign ? 0x8000 : 0) | UInt16(truncatingIfNeeded: v.exponent + 16383) & 0x7fff)
        }
    }

    /// FST/FSTP m32fp/m64fp: the register rounded to the format by RC; nil when an unmasked
    /// exception prevents the store (the stack is then not popped either).
    func x87StoreReal(_ r: Float80Bits, format: FloatFormat) -> UInt128? {
        let v = SoftFloat.unpack(extended: r)
        switch v.kind {
        case .unsupported:
            if x87Abort(.invalid) { return nil }
            setC1(false)
            return SoftFloat.defaultNaNBits(format)
        case .quietNaN, .signalingNaN:
            if v.isSignalingNaN && x87Abort(.invalid) { return nil }
            setC1(false)
            return SoftFloat.nanBits(v.quieted, format)
        case .zero, .infinity:
            setC1(false)
            return SoftFloat.encode(v, FloatEnvironment(format: format, rounding: x87Rounding)).bits
        case .finite:
            let r = SoftFloat.roundPack(sign: v.sign, exponent: v.exponent, significand: v.wide,
                                        FloatEnvironment(format: format, rounding: x87Rounding))
            var exceptions = r.exceptions
            let masks = x87Masks
            if r.overflowed && !masks.contains(.overflow) {
                exceptions = [.overflow]
            } else if r.tiny && !masks.contains(.underflow) {
                exceptions = [.underflow]
            }
            if x87Signal(exceptions) && !exceptions.subtracting(masks).subtracting(.inexact).isEmpty {
                setC1(false)
                return nil
            }
            setC1(r.roundedUp)
            return r.bits
        }
    }

    /// FIST/FISTP/FISTTP: the register as a signed integer of `bits` bits, rounded by RC or
    /// truncated; NaNs, infinities and values out of range are invalid (the integer indefinite).
    func x87StoreInteger(_ r: Float80Bits, bits: Int, truncate: Bool) -> UInt128? {
        let v = SoftFloat.unpack(extended: r)
        let indefinite = UInt64(1) << UInt64(bits - 1)
        let mask: UInt64 = bits == 64 ? .max : (1 << UInt64(bits)) - 1
        switch v.kind {
        case .zero:
            setC1(false)
            return 0
        case .finite:
            let (magnitude, inexact) = SoftFloat.roundToInteger(v, truncate ? .towardZero : x87Rounding)
            guard let m = magnitude, m <= (v.sign ? indefinite : indefinite - 1) else {
                if x87Abort(.invalid) { return nil }
                setC1(false)
                return UInt128(indefinite)
            }
            // C1: the magnitude was rounded up.
            let truncated = SoftFloat.roundToInteger(v, .towardZero).magnitude ?? 0
            setC1(inexact && m > truncated)
            if inexact { x87Signal(.inexact) }
            return UInt128((v.sign ? 0 &- m : m) & mask)
        default:
            if x87Abort(.invalid) { return nil }
            setC1(false)
            return UInt128(indefinite)
        }
    }

    // MARK: Constants

    /// FLD1 ... FLDZ: the constant rounded to 64 bits by RC (from 128-bit approximations).
    func x87Constant(_ op: Operation) -> Float80Bits {
        let (exponent, significand): (Int32, UInt128)
        switch op {
        case .fld1: return Float80Bits(significand: 1 << 63, signExponent: 0x3fff)
        case .fldz: return Float80Bits()
        case .fldl2t: (exponent, significand) = (1, 0xd49a_784b_cd1b_8afe_492b_f6ff_4daf_db4c)
        case .fldl2e: (exponent, significand) = (0, 0xb8aa_3b29_5c17_f0bb_be87_fed0_691d_3e88)
        case .fldpi: (exponent, significand) = (1, 0xc90f_daa2_2168_c234_c4c6_628b_80dc_1cd1)
        case .fldlg2: (exponent, significand) = (-2, 0x9a20_9a84_fbcf_f798_8f89_59ac_0b7c_9178)
        default: (exponent, significand) = (-1, 0xb172_17f7_d1cf_79ab_c9e3_b398_03f2_f6af)  // .fldln2
        }
        let r = SoftFloat.roundPack(sign: false, exponent: exponent, significand: significand | 1,
                                    FloatEnvironment(format: .extended, rounding: x87Rounding))
        return Float80Bits(bits: r.bits)
    }

    // MARK: Packed BCD

    /// The indefinite packed BCD value (FBSTP of a NaN or out-of-range value).
    static let bcdIndefinite: UInt128 = 0xffff_c000_0000_0000_0000

    /// FBLD: 18 BCD digits and a sign byte to an exact register value (invalid digits are
    /// taken at face value, as hardware does).
    static func packedBCDToExtended(_ raw: UInt128) -> Float80Bits {
        var value: UInt64 = 0
        for digit in (0..<18).reversed() {
            value = value &* 10 &+ UInt64(truncatingIfNeeded: raw >> UInt128(4 * digit)) & 0xf
        }
        let negative = raw >> 79 & 1 == 1
        return x87Load(SoftFloat.value(fromInteger: value, negative: negative)).withSign(negative)
    }

    /// FBSTP: the register rounded to an integer by RC as 18 BCD digits; NaNs, infinities and
    /// magnitudes of 10^18 or more are invalid (the BCD indefinite).
    func x87StoreBCD(_ r: Float80Bits) -> UInt128? {
        let v = SoftFloat.unpack(extended: r)
        var magnitude: UInt64 = 0
        switch v.kind {
        case .zero:
            setC1(false)
        case .finite:
            let (m, inexact) = SoftFloat.roundToInteger(v, x87Rounding)
            guard let m, m < 1_000_000_000_000_000_000 else {
                if x87Abort(.invalid) { return nil }
                setC1(false)
                return Self.bcdIndefinite
            }
            let truncated = SoftFloat.roundToInteger(v, .towardZero).magnitude ?? 0
            setC1(inexact && m > truncated)
            if inexact { x87Signal(.inexact) }
            magnitude = m
        default:
            if x87Abort(.invalid) { return nil }
            setC1(false)
            return Self.bcdIndefinite
        }
        var image: UInt128 = v.sign ? 1 << 79 : 0
        for digit in 0..<18 {
            image |= UInt128(magnitude % 10) << UInt128(4 * digit)
            magnitude /= 10
        }
        return image
    }
}

extension Float80Bits {
    func withSign(_ negative: Bool) -> Float80Bits {
        Float80Bits(significand: significand, signExponent: negative ? signExponent | 0x8000 : signExponent & 0x7fff)
    }
}
