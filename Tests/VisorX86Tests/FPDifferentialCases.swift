// Case generators for the x87/MMX/SSE differential tests: every instruction as a template
// (opcode, mandatory prefix, what its ModRM.reg and r/m hold, immediate, element type), random
// registers and memory operands, and values biased to what breaks implementations: zeros,
// denormals, infinities, quiet and signalling NaNs with payloads, the largest and smallest
// normals, values with short significands (exact and halfway results), integers and integer
// boundaries, and for the x87 unnormals, pseudo-denormals, pseudo-infinities and pseudo-NaNs.
// Control words, MXCSR, rounding modes, precision control, masks, DAZ and FTZ are random too.

import VisorX86

/// Special-biased random floating-point encodings.
enum FPValues {
    static func single(_ rng: inout SplitMix64) -> UInt32 {
        let sign: UInt32 = rng.bool() ? 1 << 31 : 0
        let fraction = UInt32(truncatingIfNeeded: rng.next()) & 0x7f_ffff
        switch rng.below(18) {
        case 0: return sign
        case 1: return sign | max(fraction, 1)
        case 2: return sign | rng.pick([1, 0x7f_ffff, 0x40_0000, 2])
        case 3: return sign | 0x7f80_0000
        case 4: return sign | 0x7fc0_0000 | fraction
        case 5: return sign | 0x7f80_0000 | max(fraction & 0x3f_ffff, 1)
        case 6: return sign | 0x3f80_0000
        case 7: return sign | UInt32(rng.below(3) + 1) << 23 | fraction
        case 8: return sign | UInt32(rng.below(2) + 0xfd) << 23 | fraction
        case 9: return sign | UInt32(rng.below(54) + 100) << 23 | (fraction & ~(0x7f_ffff >> UInt32(rng.below(23))))
        case 10:
            // Small integers and halves.
            let v = Float(rng.below(200)) / (rng.bool() ? 1 : 2) - 50
            return v.bitPattern
        case 11:
            // Around the int32 and int64 limits.
            return sign | rng.pick([0x4f00_0000, 0x4eff_ffff, 0x5f00_0000, 0x5eff_ffff, 0x4f00_0001])
        default: return sign | UInt32(rng.below(254) + 1) << 23 | fraction
        }
    }

    static func double(_ rng: inout SplitMix64) -> UInt64 {
        let sign: UInt64 = rng.bool() ? 1 << 63 : 0
        let fraction = rng.next() & 0xf_ffff_ffff_ffff
        switch rng.below(18) {
        case 0: return sign
        case 1: return sign | max(fraction, 1)
        case 2: return sign | rng.pick([1, 0xf_ffff_ffff_ffff, 0x8_0000_0000_0000])
        case 3: return sign | 0x7ff0_0000_0000_0000
        case 4: return sign | 0x7ff8_0000_0000_0000 | fraction
        case 5: return sign | 0x7ff0_0000_0000_0000 | max(fraction & 0x7_ffff_ffff_ffff, 1)
        case 6: return sign | 0x3ff0_0000_0000_0000
        case 7: return sign | UInt64(rng.below(3) + 1) << 52 | fraction
        case 8: return sign | UInt64(rng.below(2) + 0x7fd) << 52 | fraction
        case 9: return sign | UInt64(rng.below(100) + 975) << 52 | (fraction & ~(0xf_ffff_ffff_ffff >> UInt64(rng.below(52))))
        case 10:
            let v = Double(rng.below(2000)) / Double(rng.pick([1, 2, 4])) - 500
            return v.bitPattern
        case 11:
            return sign | rng.pick([0x41e0_0000_0000_0000, 0x41df_ffff_ffff_ffff, 0x41df_ffff_ffe0_0000,
                                    0x41df_ffff_fff0_0000, 0x43e0_0000_0000_0000, 0x43df_ffff_ffff_ffff,
                                    0x41e0_0000_0010_0000])
        case 12:
            // A single-precision value widened (conversions back are exact or tie).
            let s = single(&rng)
            let f = Float(bitPattern: s)
            return f.isNaN ? sign | 0x7ff8_0000_0000_0000 : Double(f).bitPattern
        default: return sign | UInt64(rng.below(2046) + 1) << 52 | fraction
        }
    }

    static func extended(_ rng: inout SplitMix64) -> Float80Bits {
        let sign: UInt16 = rng.bool() ? 0x8000 : 0
        let fraction = rng.next() & ~(1 << 63)
        let integer: UInt64 = 1 << 63
        func v(_ e: Int, _ s: UInt64) -> Float80Bits { Float80Bits(significand: s, signExponent: sign | UInt16(e & 0x7fff)) }
        switch rng.below(24) {
        case 0: return v(0, 0)
        case 1: return v(0, max(fraction, 1))                              // denormal
        case 2: return v(0, integer | fraction)                            // pseudo-denormal
        case 3: return v(0x7fff, integer)                                  // infinity
        case 4: return v(0x7fff, integer | 1 << 62 | fraction)             // QNaN
        case 5: return v(0x7fff, integer | max(fraction & ~(1 << 62), 1))  // SNaN
        case 6: return v(0x7fff, 0xc000_0000_0000_0000)                    // indefinite
        case 7: return v(rng.below(0x7ffe) + 1, fraction)                  // unnormal
        case 8: return v(0x7fff, rng.bool() ? 0 : max(fraction, 1))        // pseudo-infinity, pseudo-NaN
        case 9: return v(0x3fff, integer)                                  // 1.0
        case 10: return v(rng.below(3) + 1, integer | fraction)            // near the smallest normal
        case 11: return v(0x7ffe - rng.below(3), integer | fraction)       // near the largest
        case 12:
            // Short significands: exact results and ties in the precisions.
            let keep = rng.pick([1, 2, 23, 24, 25, 52, 53, 54, 63])
            return v(0x3fff + rng.below(80) - 40, (integer | fraction) & ~(UInt64.max >> UInt64(keep)))
        case 13:
            // Integers and halves (FIST, FRNDINT), around the int16/32/64 limits too.
            let e = 0x3fff + rng.pick([0, 1, 5, 14, 15, 16, 30, 31, 32, 62, 63, 64])
            return v(e, (integer | fraction) & ~(UInt64.max >> UInt64(min(64, e - 0x3fff + 2))))
        case 14:
            // A double or single widened.
            let d = Double(bitPattern: double(&rng))
            guard d.isFinite && d != 0 else { return v(0x3fff, integer | fraction) }
            let m = d.significandBitPattern, e = Int(d.exponentBitPattern)
            if e == 0 { return v(0x3fff - 1023 - 51, m << 11) }
            return v(e - 1023 + 0x3fff, integer | m << 11)
        case 15: return v(0x3fff + rng.below(128) - 64, integer | fraction)
        case 16: return v(0x3fff + rng.below(32768) - 16384 & 0x7fff, integer | fraction)
        case 17: return v(rng.below(64) + 0x3c01 - 32, integer | fraction)   // near the double range's bottom
        case 18: return v(rng.below(64) + 0x43fe - 32, integer | fraction)   // near its top
        case 19: return v(rng.below(64) + 0x3f81 - 32, integer | fraction)   // the single range's
        default: return v(rng.below(0x7ffe) + 1, integer | fraction)
        }
    }

    /// An integer value biased to edges, as `bits` bits.
    static func integer(_ rng: inout SplitMix64, bits: Int) -> UInt64 {
        let v = rng.interesting()
        return bits == 64 ? v : v & ((1 << UInt64(bits)) - 1)
    }

    /// 128 bits of lanes of `kind`.
    static func lanes(_ kind: ValueKind, _ rng: inout SplitMix64) -> UInt128 {
        switch kind {
        case .integer: return UInt128(rng.interesting()) << 64 | UInt128(rng.interesting())
        case .int32:
            var r: UInt128 = 0
            for i in 0..<4 { r |= UInt128(integer(&rng, bits: 32)) << UInt128(32 * i) }
            return r
        case .single:
            var r: UInt128 = 0
            for i in 0..<4 { r |= UInt128(single(&rng)) << UInt128(32 * i) }
            return r
        case .double:
            return UInt128(double(&rng)) << 64 | UInt128(double(&rng))
        }
    }

    enum ValueKind { case integer, int32, single, double }
}

/// Where an operand lives, for the encoder.
enum FPSlot {
    case xmm, mmx, gpr
    /// ModRM.r/m: a register of the kind or `size` bytes of memory (16-byte ones aligned unless stated).
    case xmmOrMemory(Int), mmxOrMemory(Int), gprOrMemory
    /// Memory only / register only.
    case memory(Int), xmmRegister, mmxRegister
    /// PINSRW's r32 or m16.
    case gprOrWord
}

/// One SIMD instruction form.
struct SIMDTemplate {
    var name: String
    var prefix: UInt8?
    var opcode: UInt8
    /// ModRM.reg's operand (nil: the field is `digit`).
    var reg: FPSlot?
    var rm: FPSlot
    var digit: UInt8 = 0
    var immediate = false
    var values: FPValues.ValueKind = .integer
    /// 16-byte memory operands may be misaligned (MOVUPS, MOVDQU): no #GP expected.
    var unaligned = false
    var approximate = false
    /// The shift instructions: make the count small most of the time.
    var shiftCount = false
    var undefinedFlags: UInt64 = 0
}

struct FPCaseGenerator {
    let rig: FPRig

    static let simdIntegerFamilies = ["mmxInteger", "sseInteger", "simdShiftShuffle", "simdMove"]
    static let sseFloatFamilies = ["sseArithmetic", "sseCompare", "sseConvert", "sseFloatMove", "sseBoundaries"]
    static let x87Families = ["x87Load", "x87Store", "x87Arithmetic", "x87Compare", "x87Misc", "x87Control",
                              "x87Pending", "x87Transcendental", "x87Boundaries"]
    static let stateFamilies = ["fxsave", "mxcsr"]

    // MARK: Templates

    static let integerOps: [(String, UInt8)] = [
        ("packsswb", 0x63), ("pcmpgtb", 0x64), ("pcmpgtw", 0x65), ("pcmpgtd", 0x66), ("packuswb", 0x67),
        ("punpckhbw", 0x68), ("punpckhwd", 0x69), ("punpckhdq", 0x6a), ("packssdw", 0x6b), ("pcmpeqb", 0x74),
        ("pcmpeqw", 0x75), ("pcmpeqd", 0x76), ("paddq", 0xd4), ("pmullw", 0xd5), ("psubusb", 0xd8),
        ("psubusw", 0xd9), ("pminub", 0xda), ("pand", 0xdb), ("paddusb", 0xdc), ("paddusw", 0xdd),
        ("pmaxub", 0xde), ("pandn", 0xdf), ("pavgb", 0xe0), ("pavgw", 0xe3), ("pmulhuw", 0xe4), ("pmulhw", 0xe5),
        ("psubsb", 0xe8), ("psubsw", 0xe9), ("pminsw", 0xea), ("por", 0xeb), ("paddsb", 0xec), ("paddsw", 0xed),
        ("pmaxsw", 0xee), ("pxor", 0xef), ("pmuludq", 0xf4), ("pmaddwd", 0xf5), ("psadbw", 0xf6),
        ("psubb", 0xf8), ("psubw", 0xf9), ("psubd", 0xfa), ("psubq", 0xfb), ("paddb", 0xfc), ("paddw", 0xfd),
        ("paddd", 0xfe),
    ]
    static let lowUnpacks: [(String, UInt8)] = [("punpcklbw", 0x60), ("punpcklwd", 0x61), ("punpckldq", 0x62)]
    static let shiftsByRegister: [(String, UInt8)] = [
        ("psrlw", 0xd1), ("psrld", 0xd2), ("psrlq", 0xd3), ("psraw", 0xe1), ("psrad", 0xe2), ("psllw", 0xf1),
        ("pslld", 0xf2), ("psllq", 0xf3),
    ]

    static let mmxTemplates: [SIMDTemplate] =
        integerOps.map { SIMDTemplate(name: $0.0 + " mm", opcode: $0.1, reg: .mmx, rm: .mmxOrMemory(8)) }
        + lowUnpacks.map { SIMDTemplate(name: $0.0 + " mm", opcode: $0.1, reg: .mmx, rm: .mmxOrMemory(4)) }
        + [SIMDTemplate(name: "emms", opcode: 0x77, reg: nil, rm: .mmxRegister)]

    static let xmmTemplates: [SIMDTemplate] =
        (integerOps + lowUnpacks + [("punpcklqdq", 0x6c), ("punpckhqdq", 0x6d)]).map {
            SIMDTemplate(name: $0.0, prefix: 0x66, opcode: $0.1, reg: .xmm, rm: .xmmOrMemory(16))
        }

    static let shiftShuffleTemplates: [SIMDTemplate] = {
        var t: [SIMDTemplate] = []
        for (name, op) in shiftsByRegister {
            t.append(SIMDTemplate(name: name + " mm", opcode: op, reg: .mmx, rm: .mmxOrMemory(8), shiftCount: true))
            t.append(SIMDTemplate(name: name, prefix: 0x66, opcode: op, reg: .xmm, rm: .xmmOrMemory(16), shiftCount: true))
        }
        let groups: [(String, UInt8, UInt8, Bool)] = [
            ("psrlw", 0x71, 2, true), ("psraw", 0x71, 4, true), ("psllw", 0x71, 6, true),
            ("psrld", 0x72, 2, true), ("psrad", 0x72, 4, true), ("pslld", 0x72, 6, true),
            ("psrlq", 0x73, 2, true), ("psrldq", 0x73, 3, false), ("psllq", 0x73, 6, true), ("pslldq", 0x73, 7, false),
        ]
        for (name, op, digit, mmx) in groups {
            if mmx { t.append(SIMDTemplate(name: name + " mm,ib", opcode: op, reg: nil, rm: .mmxRegister, digit: digit, immediate: true)) }
            t.append(SIMDTemplate(name: name + " ib", prefix: 0x66, opcode: op, reg: nil, rm: .xmmRegister, digit: digit, immediate: true))
        }
        t += [
            SIMDTemplate(name: "pshufw", opcode: 0x70, reg: .mmx, rm: .mmxOrMemory(8), immediate: true),
            SIMDTemplate(name: "pshufd", prefix: 0x66, opcode: 0x70, reg: .xmm, rm: .xmmOrMemory(16), immediate: true),
            SIMDTemplate(name: "pshufhw", prefix: 0xf3, opcode: 0x70, reg: .xmm, rm: .xmmOrMemory(16), immediate: true),
            SIMDTemplate(name: "pshuflw", prefix: 0xf2, opcode: 0x70, reg: .xmm, rm: .xmmOrMemory(16), immediate: true),
            SIMDTemplate(name: "pinsrw mm", opcode: 0xc4, reg: .mmx, rm: .gprOrWord, immediate: true),
            SIMDTemplate(name: "pinsrw", prefix: 0x66, opcode: 0xc4, reg: .xmm, rm: .gprOrWord, immediate: true),
            SIMDTemplate(name: "pextrw mm", opcode: 0xc5, reg: .gpr, rm: .mmxRegister, immediate: true),
            SIMDTemplate(name: "pextrw", prefix: 0x66, opcode: 0xc5, reg: .gpr, rm: .xmmRegister, immediate: true),
            SIMDTemplate(name: "pmovmskb mm", opcode: 0xd7, reg: .gpr, rm: .mmxRegister),
            SIMDTemplate(name: "pmovmskb", prefix: 0x66, opcode: 0xd7, reg: .gpr, rm: .xmmRegister),
        ]
        return t
    }()

    /// Moves; `reg` is the destination unless the name says store (then ModRM.reg is the source).
    static let moveTemplates: [SIMDTemplate] = [
        SIMDTemplate(name: "movd/movq mm,r/m", opcode: 0x6e, reg: .mmx, rm: .gprOrMemory),
        SIMDTemplate(name: "movd/movq xmm,r/m", prefix: 0x66, opcode: 0x6e, reg: .xmm, rm: .gprOrMemory),
        SIMDTemplate(name: "movd/movq r/m,mm store", opcode: 0x7e, reg: .mmx, rm: .gprOrMemory),
        SIMDTemplate(name: "movd/movq r/m,xmm store", prefix: 0x66, opcode: 0x7e, reg: .xmm, rm: .gprOrMemory),
        SIMDTemplate(name: "movq xmm,xmm/m64", prefix: 0xf3, opcode: 0x7e, reg: .xmm, rm: .xmmOrMemory(8)),
        SIMDTemplate(name: "movq mm,mm/m64", opcode: 0x6f, reg: .mmx, rm: .mmxOrMemory(8)),
        SIMDTemplate(name: "movq mm/m64,mm store", opcode: 0x7f, reg: .mmx, rm: .mmxOrMemory(8)),
        SIMDTemplate(name: "movdqa", prefix: 0x66, opcode: 0x6f, reg: .xmm, rm: .xmmOrMemory(16)),
        SIMDTemplate(name: "movdqa store", prefix: 0x66, opcode: 0x7f, reg: .xmm, rm: .xmmOrMemory(16)),
        SIMDTemplate(name: "movdqu", prefix: 0xf3, opcode: 0x6f, reg: .xmm, rm: .xmmOrMemory(16), unaligned: true),
        SIMDTemplate(name: "movdqu store", prefix: 0xf3, opcode: 0x7f, reg: .xmm, rm: .xmmOrMemory(16), unaligned: true),
        SIMDTemplate(name: "movq xmm/m64,xmm store", prefix: 0x66, opcode: 0xd6, reg: .xmm, rm: .xmmOrMemory(8)),
        SIMDTemplate(name: "movq2dq", prefix: 0xf3, opcode: 0xd6, reg: .xmm, rm: .mmxRegister),
        SIMDTemplate(name: "movdq2q", prefix: 0xf2, opcode: 0xd6, reg: .mmx, rm: .xmmRegister),
        SIMDTemplate(name: "movntq store", opcode: 0xe7, reg: .mmx, rm: .memory(8)),
        SIMDTemplate(name: "movntdq store", prefix: 0x66, opcode: 0xe7, reg: .xmm, rm: .memory(16)),
        SIMDTemplate(name: "movnti store", opcode: 0xc3, reg: .gpr, rm: .memory(0)),
        SIMDTemplate(name: "movntps store", opcode: 0x2b, reg: .xmm, rm: .memory(16)),
        SIMDTemplate(name: "movntpd store", prefix: 0x66, opcode: 0x2b, reg: .xmm, rm: .memory(16)),
        SIMDTemplate(name: "movups", opcode: 0x10, reg: .xmm, rm: .xmmOrMemory(16), unaligned: true),
        SIMDTemplate(name: "movupd store", prefix: 0x66, opcode: 0x11, reg: .xmm, rm: .xmmOrMemory(16), unaligned: true),
        SIMDTemplate(name: "movaps", opcode: 0x28, reg: .xmm, rm: .xmmOrMemory(16)),
        SIMDTemplate(name: "movapd store", prefix: 0x66, opcode: 0x29, reg: .xmm, rm: .xmmOrMemory(16)),
        SIMDTemplate(name: "maskmovq", opcode: 0xf7, reg: .mmx, rm: .mmxRegister),
        SIMDTemplate(name: "maskmovdqu", prefix: 0x66, opcode: 0xf7, reg: .xmm, rm: .xmmRegister),
    ]

    static let arithmeticTemplates: [SIMDTemplate] = {
        var t: [SIMDTemplate] = []
        for (name, op) in [("add", UInt8(0x58)), ("mul", 0x59), ("sub", 0x5c), ("min", 0x5d), ("div", 0x5e), ("max", 0x5f),
                           ("sqrt", 0x51)] {
            t.append(SIMDTemplate(name: name + "ps", opcode: op, reg: .xmm, rm: .xmmOrMemory(16), values: .single))
            t.append(SIMDTemplate(name: name + "pd", prefix: 0x66, opcode: op, reg: .xmm, rm: .xmmOrMemory(16), values: .double))
            t.append(SIMDTemplate(name: name + "ss", prefix: 0xf3, opcode: op, reg: .xmm, rm: .xmmOrMemory(4), values: .single))
            t.append(SIMDTemplate(name: name + "sd", prefix: 0xf2, opcode: op, reg: .xmm, rm: .xmmOrMemory(8), values: .double))
        }
        t += [
            // SSE3
            SIMDTemplate(name: "addsubps", prefix: 0xf2, opcode: 0xd0, reg: .xmm, rm: .xmmOrMemory(16), values: .single),
            SIMDTemplate(name: "addsubpd", prefix: 0x66, opcode: 0xd0, reg: .xmm, rm: .xmmOrMemory(16), values: .double),
            SIMDTemplate(name: "haddps", prefix: 0xf2, opcode: 0x7c, reg: .xmm, rm: .xmmOrMemory(16), values: .single),
            SIMDTemplate(name: "haddpd", prefix: 0x66, opcode: 0x7c, reg: .xmm, rm: .xmmOrMemory(16), values: .double),
            SIMDTemplate(name: "hsubps", prefix: 0xf2, opcode: 0x7d, reg: .xmm, rm: .xmmOrMemory(16), values: .single),
            SIMDTemplate(name: "hsubpd", prefix: 0x66, opcode: 0x7d, reg: .xmm, rm: .xmmOrMemory(16), values: .double),
            SIMDTemplate(name: "rcpps", opcode: 0x53, reg: .xmm, rm: .xmmOrMemory(16), values: .single, approximate: true),
            SIMDTemplate(name: "rcpss", prefix: 0xf3, opcode: 0x53, reg: .xmm, rm: .xmmOrMemory(4), values: .single, approximate: true),
            SIMDTemplate(name: "rsqrtps", opcode: 0x52, reg: .xmm, rm: .xmmOrMemory(16), values: .single, approximate: true),
            SIMDTemplate(name: "rsqrtss", prefix: 0xf3, opcode: 0x52, reg: .xmm, rm: .xmmOrMemory(4), values: .single, approximate: true),
        ]
        return t
    }()

    static let compareTemplates: [SIMDTemplate] = [
        SIMDTemplate(name: "cmpps", opcode: 0xc2, reg: .xmm, rm: .xmmOrMemory(16), immediate: true, values: .single),
        SIMDTemplate(name: "cmppd", prefix: 0x66, opcode: 0xc2, reg: .xmm, rm: .xmmOrMemory(16), immediate: true, values: .double),
        SIMDTemplate(name: "cmpss", prefix: 0xf3, opcode: 0xc2, reg: .xmm, rm: .xmmOrMemory(4), immediate: true, values: .single),
        SIMDTemplate(name: "cmpsd", prefix: 0xf2, opcode: 0xc2, reg: .xmm, rm: .xmmOrMemory(8), immediate: true, values: .double),
        SIMDTemplate(name: "ucomiss", opcode: 0x2e, reg: .xmm, rm: .xmmOrMemory(4), values: .single),
        SIMDTemplate(name: "ucomisd", prefix: 0x66, opcode: 0x2e, reg: .xmm, rm: .xmmOrMemory(8), values: .double),
        SIMDTemplate(name: "comiss", opcode: 0x2f, reg: .xmm, rm: .xmmOrMemory(4), values: .single),
        SIMDTemplate(name: "comisd", prefix: 0x66, opcode: 0x2f, reg: .xmm, rm: .xmmOrMemory(8), values: .double),
        SIMDTemplate(name: "movmskps", opcode: 0x50, reg: .gpr, rm: .xmmRegister, values: .single),
        SIMDTemplate(name: "movmskpd", prefix: 0x66, opcode: 0x50, reg: .gpr, rm: .xmmRegister, values: .double),
        SIMDTemplate(name: "andps", opcode: 0x54, reg: .xmm, rm: .xmmOrMemory(16), values: .single),
        SIMDTemplate(name: "andnpd", prefix: 0x66, opcode: 0x55, reg: .xmm, rm: .xmmOrMemory(16), values: .double),
        SIMDTemplate(name: "orps", opcode: 0x56, reg: .xmm, rm: .xmmOrMemory(16), values: .single),
        SIMDTemplate(name: "xorpd", prefix: 0x66, opcode: 0x57, reg: .xmm, rm: .xmmOrMemory(16), values: .double),
    ]

    static let conversionTemplates: [SIMDTemplate] = [
        SIMDTemplate(name: "cvtpi2ps", opcode: 0x2a, reg: .xmm, rm: .mmxOrMemory(8), values: .int32),
        SIMDTemplate(name: "cvtpi2pd", prefix: 0x66, opcode: 0x2a, reg: .xmm, rm: .mmxOrMemory(8), values: .int32),
        SIMDTemplate(name: "cvtsi2ss", prefix: 0xf3, opcode: 0x2a, reg: .xmm, rm: .gprOrMemory, values: .integer),
        SIMDTemplate(name: "cvtsi2sd", prefix: 0xf2, opcode: 0x2a, reg: .xmm, rm: .gprOrMemory, values: .integer),
        SIMDTemplate(name: "cvttps2pi", opcode: 0x2c, reg: .mmx, rm: .xmmOrMemory(8), values: .single),
        SIMDTemplate(name: "cvttpd2pi", prefix: 0x66, opcode: 0x2c, reg: .mmx, rm: .xmmOrMemory(16), values: .double),
        SIMDTemplate(name: "cvttss2si", prefix: 0xf3, opcode: 0x2c, reg: .gpr, rm: .xmmOrMemory(4), values: .single),
        SIMDTemplate(name: "cvttsd2si", prefix: 0xf2, opcode: 0x2c, reg: .gpr, rm: .xmmOrMemory(8), values: .double),
        SIMDTemplate(name: "cvtps2pi", opcode: 0x2d, reg: .mmx, rm: .xmmOrMemory(8), values: .single),
        SIMDTemplate(name: "cvtpd2pi", prefix: 0x66, opcode: 0x2d, reg: .mmx, rm: .xmmOrMemory(16), values: .double),
        SIMDTemplate(name: "cvtss2si", prefix: 0xf3, opcode: 0x2d, reg: .gpr, rm: .xmmOrMemory(4), values: .single),
        SIMDTemplate(name: "cvtsd2si", prefix: 0xf2, opcode: 0x2d, reg: .gpr, rm: .xmmOrMemory(8), values: .double),
        SIMDTemplate(name: "cvtps2pd", opcode: 0x5a, reg: .xmm, rm: .xmmOrMemory(8), values: .single),
        SIMDTemplate(name: "cvtpd2ps", prefix: 0x66, opcode: 0x5a, reg: .xmm, rm: .xmmOrMemory(16), values: .double),
        SIMDTemplate(name: "cvtss2sd", prefix: 0xf3, opcode: 0x5a, reg: .xmm, rm: .xmmOrMemory(4), values: .single),
        SIMDTemplate(name: "cvtsd2ss", prefix: 0xf2, opcode: 0x5a, reg: .xmm, rm: .xmmOrMemory(8), values: .double),
        SIMDTemplate(name: "cvtdq2ps", opcode: 0x5b, reg: .xmm, rm: .xmmOrMemory(16), values: .int32),
        SIMDTemplate(name: "cvtps2dq", prefix: 0x66, opcode: 0x5b, reg: .xmm, rm: .xmmOrMemory(16), values: .single),
        SIMDTemplate(name: "cvttps2dq", prefix: 0xf3, opcode: 0x5b, reg: .xmm, rm: .xmmOrMemory(16), values: .single),
        SIMDTemplate(name: "cvttpd2dq", prefix: 0x66, opcode: 0xe6, reg: .xmm, rm: .xmmOrMemory(16), values: .double),
        SIMDTemplate(name: "cvtdq2pd", prefix: 0xf3, opcode: 0xe6, reg: .xmm, rm: .xmmOrMemory(8), values: .int32),
        SIMDTemplate(name: "cvtpd2dq", prefix: 0xf2, opcode: 0xe6, reg: .xmm, rm: .xmmOrMemory(16), values: .double),
    ]

    static let floatMoveTemplates: [SIMDTemplate] = [
        SIMDTemplate(name: "movss", prefix: 0xf3, opcode: 0x10, reg: .xmm, rm: .xmmOrMemory(4), values: .single),
        SIMDTemplate(name: "movss store", prefix: 0xf3, opcode: 0x11, reg: .xmm, rm: .xmmOrMemory(4), values: .single),
        SIMDTemplate(name: "movsd", prefix: 0xf2, opcode: 0x10, reg: .xmm, rm: .xmmOrMemory(8), values: .double),
        SIMDTemplate(name: "movsd store", prefix: 0xf2, opcode: 0x11, reg: .xmm, rm: .xmmOrMemory(8), values: .double),
        SIMDTemplate(name: "movlps/movhlps", opcode: 0x12, reg: .xmm, rm: .xmmOrMemory(8), values: .single),
        SIMDTemplate(name: "movlpd", prefix: 0x66, opcode: 0x12, reg: .xmm, rm: .memory(8), values: .double),
        SIMDTemplate(name: "movlps store", opcode: 0x13, reg: .xmm, rm: .memory(8), values: .single),
        SIMDTemplate(name: "movhps/movlhps", opcode: 0x16, reg: .xmm, rm: .xmmOrMemory(8), values: .single),
        SIMDTemplate(name: "movhpd", prefix: 0x66, opcode: 0x16, reg: .xmm, rm: .memory(8), values: .double),
        SIMDTemplate(name: "movhpd store", prefix: 0x66, opcode: 0x17, reg: .xmm, rm: .memory(8), values: .double),
        SIMDTemplate(name: "unpcklps", opcode: 0x14, reg: .xmm, rm: .xmmOrMemory(16), values: .single),
        SIMDTemplate(name: "unpckhpd", prefix: 0x66, opcode: 0x15, reg: .xmm, rm: .xmmOrMemory(16), values: .double),
        SIMDTemplate(name: "shufps", opcode: 0xc6, reg: .xmm, rm: .xmmOrMemory(16), immediate: true, values: .single),
        SIMDTemplate(name: "shufpd", prefix: 0x66, opcode: 0xc6, reg: .xmm, rm: .xmmOrMemory(16), immediate: true, values: .double),
        // SSE3
        SIMDTemplate(name: "movsldup", prefix: 0xf3, opcode: 0x12, reg: .xmm, rm: .xmmOrMemory(16), values: .single),
        SIMDTemplate(name: "movshdup", prefix: 0xf3, opcode: 0x16, reg: .xmm, rm: .xmmOrMemory(16), values: .single),
        SIMDTemplate(name: "movddup", prefix: 0xf2, opcode: 0x12, reg: .xmm, rm: .xmmOrMemory(8), values: .double),
        SIMDTemplate(name: "lddqu", prefix: 0xf2, opcode: 0xf0, reg: .xmm, rm: .memory(16), values: .integer, unaligned: true),
    ]

    // MARK: State

    func registers(_ rng: inout SplitMix64) -> [UInt64] {
        var r = (0..<16).map { _ in rng.interesting() }
        r[4] = rig.rig.layout.stackTop - 0x80
        return r
    }

    func flags(_ rng: inout SplitMix64) -> UInt64 { (rng.next() & F.status) | 0x2 }

    static func mxcsr(_ rng: inout SplitMix64) -> UInt32 {
        var m: UInt32 = rng.below(4) == 0 ? UInt32(rng.below(64)) : 0
        m |= rng.below(10) < 7 ? 0x1f80 : UInt32(rng.below(64)) << 7
        m |= UInt32(rng.below(4)) << 13
        if rng.below(4) == 0 { m |= 0x40 }
        if rng.below(4) == 0 { m |= 0x8000 }
        return m
    }

    static func fcw(_ rng: inout SplitMix64) -> UInt16 {
        let masks: UInt16 = rng.below(10) < 7 ? 0x3f : UInt16(rng.below(64))
        let pc: UInt16 = rng.pick([0, 2, 3, 3, 3, 1])
        return masks | 0x40 | pc << 8 | UInt16(rng.below(4)) << 10
    }

    /// A status word: TOP and condition codes random, a few flags; ES and B follow the flags the
    /// control word leaves unmasked (`pendingChance` of the time, else no flags are pending).
    static func fsw(_ rng: inout SplitMix64, fcw: UInt16, pendingChance: Int) -> UInt16 {
        var s = UInt16(rng.below(8)) << 11 | UInt16(truncatingIfNeeded: rng.next()) & 0x4700
        if rng.below(4) == 0 { s |= UInt16(rng.below(64)) }
        let unmasked = s & 0x3f & ~fcw
        if unmasked != 0 {
            if rng.below(100) < pendingChance { s |= 0x8080 } else { s &= ~unmasked }
        }
        return s
    }

    /// A random image: x87 registers with special values, control words, tags, XMM of `values`.
    func image(_ rng: inout SplitMix64, values: FPValues.ValueKind, pendingChance: Int = 5) -> FXImage {
        var fx = FXImage()
        fx.fcw = Self.fcw(&rng)
        fx.fsw = Self.fsw(&rng, fcw: fx.fcw, pendingChance: pendingChance)
        fx.ftw = rng.below(2) == 0 ? 0xff : UInt8(truncatingIfNeeded: rng.next())
        fx.mxcsr = Self.mxcsr(&rng)
        for i in 0..<8 { fx.setST(i, FPValues.extended(&rng)) }
        for i in 0..<16 {
            var v = FPValues.lanes(values, &rng)
            if i > 0 && rng.below(6) == 0 {
                // Nearly equal to another register: cancellation, equal compares.
                v = UInt128(fx.xmm(i - 1).high) << 64 | UInt128(fx.xmm(i - 1).low)
                if rng.bool() { v ^= UInt128(rng.below(4)) << UInt128(rng.pick([0, 32, 64, 96])) }
            }
            fx.setXMM(i, (UInt64(truncatingIfNeeded: v), UInt64(truncatingIfNeeded: v >> 64)))
        }
        return fx
    }

    /// A memory operand near the middle of the data window; `alignment` 16 aligns it (mostly).
    func memory(_ rng: inout SplitMix64, _ chooser: inout RegisterChooser, _ regs: inout [UInt64],
                alignment: Int) -> (RMOperand, UInt64) {
        let base = chooser.pickAddress(&rng)
        var index: UInt8? = nil
        var scale: UInt8 = 1
        if rng.below(3) == 0 {
            let i = chooser.pickAddress(&rng)
            index = i
            scale = rng.pick([1, 2, 4, 8])
            regs[Int(i)] = UInt64(rng.below(16))
        }
        let displacement: Int32 = rng.below(4) == 0 ? 0 : Int32(rng.below(0x100)) - 0x80
        var address = rig.rig.layout.hotCenter &+ UInt64(rng.below(0x100)) &- 0x80
        if alignment > 1 && rng.below(12) != 0 { address &= ~UInt64(alignment - 1) }
        let scaled = (index.map { regs[Int($0)] } ?? 0) &* UInt64(scale)
        regs[Int(base)] = address &- scaled &- UInt64(bitPattern: Int64(displacement))
        return (.memory(base: base, index: index, scale: scale, displacement: displacement), address)
    }

    /// The bytes of a `kind` value of `size` bytes, for a memory operand.
    static func memoryValue(_ kind: FPValues.ValueKind, size: Int, _ rng: inout SplitMix64) -> [UInt8] {
        let v = FPValues.lanes(kind, &rng)
        var bytes: [UInt8] = []
        for i in 0..<size { bytes.append(UInt8(truncatingIfNeeded: v >> UInt128(8 * i))) }
        return bytes
    }

    // MARK: Cases

    mutating func make(_ family: String, _ rng: inout SplitMix64) -> FPCase? {
        switch family {
        case "mmxInteger": return simd(rng.pick(Self.mmxTemplates), family, &rng)
        case "sseInteger": return simd(rng.pick(Self.xmmTemplates), family, &rng)
        case "simdShiftShuffle": return simd(rng.pick(Self.shiftShuffleTemplates), family, &rng)
        case "simdMove": return simd(rng.pick(Self.moveTemplates), family, &rng)
        case "sseArithmetic": return simd(rng.pick(Self.arithmeticTemplates), family, &rng)
        case "sseCompare": return simd(rng.pick(Self.compareTemplates), family, &rng)
        case "sseConvert": return simd(rng.pick(Self.conversionTemplates), family, &rng)
        case "sseFloatMove": return simd(rng.pick(Self.floatMoveTemplates), family, &rng)
        case "sseBoundaries": return sseBoundary(&rng)
        case "x87Boundaries": return x87Boundary(&rng)
        case "fxsave", "mxcsr": return state(family, &rng)
        default: return x87(family, &rng)
        }
    }

    /// A SIMD case from a template.
    func simd(_ t: SIMDTemplate, _ family: String, _ rng: inout SplitMix64) -> FPCase? {
        var regs = registers(&rng)
        var chooser = RegisterChooser(legacyByte: false)
        chooser.taken.insert(7)  // rDI: MASKMOVQ's destination
        regs[7] = rig.rig.layout.hotCenter &+ UInt64(rng.below(0x100)) &- 0x80
        var fx = image(&rng, values: t.values, pendingChance: 10)
        var patches: [(address: UInt64, bytes: [UInt8])] = []
        let rexW = rng.bool()
        func register(_ slot: FPSlot) -> UInt8 {
            switch slot {
            case .xmm, .xmmRegister, .xmmOrMemory: return UInt8(rng.below(16))
            case .mmx, .mmxRegister, .mmxOrMemory: return UInt8(rng.below(8)) | (rng.below(8) == 0 ? 8 : 0)
            default: return chooser.pick(&rng)
            }
        }
        var rm: RMOperand
        switch t.rm {
        case .xmmRegister, .mmxRegister:
            rm = .register(register(t.rm))
        case .memory(let size):
            let (operand, address) = memory(&rng, &chooser, &regs, alignment: size == 16 && !t.unaligned ? 16 : 1)
            rm = operand
            patches.append((address, Self.memoryValue(t.values, size: max(size, 8), &rng)))
        case .xmmOrMemory(let size), .mmxOrMemory(let size):
            if rng.bool() {
                rm = .register(register(t.rm))
            } else {
                let (operand, address) = memory(&rng, &chooser, &regs, alignment: size == 16 && !t.unaligned ? 16 : 1)
                rm = operand
                patches.append((address, Self.memoryValue(t.values, size: size, &rng)))
            }
        case .gprOrMemory, .gprOrWord:
            if rng.bool() {
                rm = .register(chooser.pick(&rng))
            } else {
                let (operand, address) = memory(&rng, &chooser, &regs, alignment: 1)
                rm = operand
                patches.append((address, Self.memoryValue(.integer, size: 8, &rng)))
            }
        default:
            rm = .register(register(t.rm))
        }
        let regField: UInt8 = t.reg.map { register($0) } ?? t.digit
        var e = Encoding(legacyPrefixes: t.prefix.map { [$0] } ?? [], opcode: [0x0f, t.opcode], regField: regField, rm: rm)
        if case .gprOrMemory = t.rm { e.rexW = rexW }
        if case .gpr = t.reg { e.rexW = rexW }
        if t.immediate {
            let imm: UInt8 = t.shiftCount || t.digit != 0 ? UInt8(rng.below(3) == 0 ? rng.below(256) : rng.below(70))
                : UInt8(truncatingIfNeeded: rng.next())
            e.immediate = [imm]
        }
        if t.shiftCount && rng.below(3) != 0 {
            // A count register (or memory) holding a small count.
            let count = UInt64(rng.below(70))
            switch rm {
            case .register(let r):
                if case .xmmOrMemory = t.rm { fx.setXMM(Int(r & 15), (count, fx.xmm(Int(r & 15)).high)) }
                else { fx.setST((Int(r & 7) - fx.top) & 7, Float80Bits(significand: count, signExponent: 0xffff)) }
            case .memory:
                if let last = patches.indices.last { patches[last].bytes.replaceSubrange(0..<8, with: littleEndian(count, 8)) }
            }
        }
        let code = t.opcode == 0x77 ? [0x0f, 0x77] : e.bytes  // EMMS has no ModRM
        return FPCase(family: family, name: t.name, code: code, registers: regs, flags: flags(&rng), fx: fx,
                      patches: patches, undefinedFlags: t.undefinedFlags, approximateSingles: t.approximate)
    }

    // MARK: Directed boundaries
    //
    // Operands whose results land next to the edges rounding decides: just below the smallest
    // normal (tininess before and after rounding differ there, and FTZ with it), ties, and the
    // largest finite values; every rounding mode, with FTZ, DAZ and the underflow, overflow and
    // inexact masks random.

    /// A significand (fraction bits of `bits`) of ones down to a random position, or a single
    /// low one, or all ones: values just below or above a power of two.
    static func edgeFraction(_ bits: Int, _ rng: inout SplitMix64) -> UInt64 {
        let all: UInt64 = (1 << UInt64(bits)) - 1
        switch rng.below(4) {
        case 0: return all
        case 1: return all & ~((1 << UInt64(rng.below(bits))) - 1)
        case 2: return 1 << UInt64(rng.below(bits))
        default: return 0
        }
    }

    func sseBoundary(_ rng: inout SplitMix64) -> FPCase? {
        let double = rng.bool()
        let (fractionBits, exponentBits): (Int, Int) = double ? (52, 11) : (23, 8)
        let maxBiased = (1 << exponentBits) - 1
        func value(_ biased: Int, _ fraction: UInt64, negative: Bool) -> UInt64 {
            (negative ? 1 << UInt64(fractionBits + exponentBits) : 0) | UInt64(biased) << UInt64(fractionBits) | fraction
        }
        // x near the smallest normal (or the largest), y near 1 or 2 (or 1/2): x·y and x/y cross the edge.
        let low = rng.below(4) != 0
        let xBiased = low ? rng.below(3) : maxBiased - 1 - rng.below(2)
        let bias = (1 << (exponentBits - 1)) - 1
        let yBiased = bias + rng.pick([-1, 0, 0, 1])
        var x = value(xBiased, Self.edgeFraction(fractionBits, &rng), negative: rng.bool())
        var y = value(yBiased, Self.edgeFraction(fractionBits, &rng), negative: rng.below(4) == 0)
        let ops: [(String, UInt8)] = [("mul", 0x59), ("div", 0x5e), ("add", 0x58), ("sub", 0x5c)]
        var (name, opcode) = rng.pick(ops)
        if rng.below(3) == 0 {
            // Significands X, Y of p bits (values X, Y / 2^(p−1) in [1, 2)) whose product lies in
            // (2 − 2^-p, 2): x = X at the smallest normal exponent times y = Y/2 is below the
            // smallest normal before rounding and rounds to it (to nearest): tiny before
            // rounding, not after.
            let p = UInt64(fractionBits + 1)
            for _ in 0..<64 {
                let X = 1 << (p - 1) | rng.next() & ((1 << (p - 1)) - 1)
                let high = UInt128(1) << UInt128(2 * p - 1)
                let low = high - (UInt128(1) << UInt128(p - 2)) + 1
                let Y = (low + UInt128(X) - 1) / UInt128(X)
                guard Y < UInt128(1) << UInt128(p), UInt128(X) * Y < high else { continue }
                let negative = rng.bool()
                x = value(1, X & ((1 << (p - 1)) - 1), negative: negative)
                y = value(bias - 1, UInt64(Y) & ((1 << (p - 1)) - 1), negative: false)
                (name, opcode) = ("mul", 0x59)
                break
            }
        }
        var fx = image(&rng, values: double ? .double : .single)
        fx.mxcsr = (fx.mxcsr & ~0x1f80) | (rng.bool() ? 0x1f80 : 0x1f80 & ~UInt32(rng.pick([1 << 10, 1 << 11, 1 << 12, 3 << 11])))
        let d = UInt8(rng.below(16)), sr = UInt8(rng.below(16))
        let lanes = double ? 2 : 4
        func fill(_ a: UInt64, _ b: UInt64) -> (UInt64, UInt64) {
            lanes == 2 ? (a, b) : (a | b << 32, a | b << 32)
        }
        // The second operand of an add or subtract is another small value.
        let second = opcode == 0x58 || opcode == 0x5c
            ? value(rng.below(3), Self.edgeFraction(fractionBits, &rng), negative: rng.bool()) : y
        fx.setXMM(Int(d), fill(x, x))
        fx.setXMM(Int(sr), rng.bool() ? fill(second, second) : fill(second, x))
        if d == sr { fx.setXMM(Int(d), fill(x, second)) }
        let packed = rng.bool()
        let prefix: [UInt8] = packed ? (double ? [0x66] : []) : [double ? 0xf2 : 0xf3]
        let e = Encoding(legacyPrefixes: prefix, opcode: [0x0f, opcode], regField: d, rm: .register(sr))
        return FPCase(family: "sseBoundaries", name: name + (packed ? "p" : "s") + (double ? "d" : "s"), code: e.bytes,
                      registers: registers(&rng), flags: flags(&rng), fx: fx)
    }

    func x87Boundary(_ rng: inout SplitMix64) -> FPCase? {
        var fx = image(&rng, values: .integer, pendingChance: 0)
        fx.fcw = (fx.fcw & ~0x3f) | (rng.bool() ? 0x3f : 0x3f & ~UInt16(rng.pick([0x08, 0x10, 0x20, 0x30])))
        fx.ftw = 0xff
        // The edges of the extended range and of the single and double ranges FST rounds to.
        let edge = rng.pick([1, 0x3f81, 0x3c01, 0x7ffe, 0x407e, 0x43fe])
        let significand = 1 << 63 | Self.edgeFraction(63, &rng)
        let x = Float80Bits(significand: significand, signExponent: UInt16(edge - rng.below(3) + (edge < 0x3000 ? 2 : 0))
            | (rng.bool() ? 0x8000 : 0))
        let y = Float80Bits(significand: 1 << 63 | Self.edgeFraction(63, &rng), signExponent: UInt16(0x3fff + rng.pick([-1, 0, 0, 1])))
        fx.setST(0, x)
        fx.setST(1, y)
        var regs = registers(&rng)
        var chooser = RegisterChooser(legacyByte: false)
        let (operand, _) = memory(&rng, &chooser, &regs, alignment: 1)
        let forms: [(String, Encoding)] = [
            ("fmul st0,st1", Encoding(opcode: [0xd8], regField: 1, rm: .register(1))),
            ("fdiv st0,st1", Encoding(opcode: [0xd8], regField: 6, rm: .register(1))),
            ("fst m32", Encoding(opcode: [0xd9], regField: 2, rm: operand)),
            ("fst m64", Encoding(opcode: [0xdd], regField: 2, rm: operand)),
            ("fistp m64", Encoding(opcode: [0xdf], regField: 7, rm: operand)),
            ("fsqrt", Encoding(opcode: [0xd9], regField: 7, rm: .register(2))),
        ]
        let (name, e) = rng.pick(forms)
        return FPCase(family: "x87Boundaries", name: name, code: e.bytes, registers: regs, flags: flags(&rng), fx: fx,
                      undefinedFSW: Self.c023)
    }

    // MARK: FXSAVE, FXRSTOR, LDMXCSR, STMXCSR

    func state(_ family: String, _ rng: inout SplitMix64) -> FPCase? {
        var regs = registers(&rng)
        var chooser = RegisterChooser(legacyByte: false)
        var fx = image(&rng, values: rng.pick([.integer, .single, .double]), pendingChance: 30)
        var patches: [(address: UInt64, bytes: [UInt8])] = []
        let (operand, address) = memory(&rng, &chooser, &regs, alignment: 16)
        var e: Encoding
        let name: String
        if family == "fxsave" {
            let restore = rng.bool()
            e = Encoding(opcode: [0x0f, 0xae], regField: restore ? 1 : 0, rm: operand)
            e.rexW = rng.bool()
            name = (restore ? "fxrstor" : "fxsave") + (e.rexW ? "64" : "")
            if restore {
                var source = image(&rng, values: rng.pick([.integer, .single, .double]), pendingChance: 30)
                // A reserved bit: #GP (not bit 17, which this AMD host accepts: its MXCSR_MASK is 0x2FFFF).
                if rng.below(10) == 0 { source.mxcsr |= 1 << UInt32(rng.pick([16, 18, 20, 24, 31])) }
                patches.append((address, Array(source.bytes.prefix(416))))
            }
        } else {
            let load = rng.bool()
            e = Encoding(opcode: [0x0f, 0xae], regField: load ? 2 : 3, rm: operand)
            name = load ? "ldmxcsr" : "stmxcsr"
            var value = Self.mxcsr(&rng)
            if rng.below(8) == 0 { value |= 1 << UInt32(rng.pick([16, 18, 20, 24, 31])) }
            patches.append((address, littleEndian(UInt64(value), 4)))
            if rng.below(4) == 0 { fx.mxcsr = Self.mxcsr(&rng) }
        }
        return FPCase(family: family, name: name, code: e.bytes, registers: regs, flags: flags(&rng), fx: fx,
                      patches: patches, fxsaveArea: name.hasPrefix("fxsave") ? address : nil)
    }

    // MARK: x87

    /// The condition codes each x87 instruction leaves undefined (SDM Vol. 2 "FPU Flags Affected").
    static let c023: UInt16 = 0x4500, c0123: UInt16 = 0x4700

    struct X87Template {
        var name: String
        var opcode: UInt8
        var digit: UInt8
        /// Memory operand: size and value kind; nil for a register form (ModRM.rm = ST(i), or a fixed rm).
        var memory: (size: Int, kind: X87MemoryKind)?
        /// Register forms: a fixed ModRM.rm (D9 E0 ...); nil for ST(i) with i random.
        var fixedRM: UInt8? = nil
        var undefinedFSW: UInt16 = 0
        var undefinedFlags: UInt64 = 0
        /// Where ST(0) (and ST(1)) are taken from, for instructions with a restricted domain.
        var domain: X87Domain = .any
        /// Results may differ from the host's by this many ulps (transcendentals).
        var tolerance: UInt64 = 0
    }

    enum X87Domain { case any, trigonometric, unit, small, logarithm }

    enum X87MemoryKind { case single, double, extended, integer, bcd, word, environment, state }

    static let x87LoadTemplates: [X87Template] = [
        X87Template(name: "fld m32", opcode: 0xd9, digit: 0, memory: (4, .single), undefinedFSW: c023),
        X87Template(name: "fld m64", opcode: 0xdd, digit: 0, memory: (8, .double), undefinedFSW: c023),
        X87Template(name: "fld m80", opcode: 0xdb, digit: 5, memory: (10, .extended), undefinedFSW: c023),
        X87Template(name: "fild m16", opcode: 0xdf, digit: 0, memory: (2, .integer), undefinedFSW: c023),
        X87Template(name: "fild m32", opcode: 0xdb, digit: 0, memory: (4, .integer), undefinedFSW: c023),
        X87Template(name: "fild m64", opcode: 0xdf, digit: 5, memory: (8, .integer), undefinedFSW: c023),
        X87Template(name: "fbld", opcode: 0xdf, digit: 4, memory: (10, .bcd), undefinedFSW: c023),
        X87Template(name: "fld st(i)", opcode: 0xd9, digit: 0, memory: nil, undefinedFSW: c023),
    ] + [
        ("fld1", 0xe8), ("fldl2t", 0xe9), ("fldl2e", 0xea), ("fldpi", 0xeb), ("fldlg2", 0xec), ("fldln2", 0xed), ("fldz", 0xee),
    ].map { X87Template(name: $0.0, opcode: 0xd9, digit: 5, memory: nil, fixedRM: UInt8($0.1 & 7), undefinedFSW: c023) }

    static let x87StoreTemplates: [X87Template] = [
        X87Template(name: "fst m32", opcode: 0xd9, digit: 2, memory: (4, .single), undefinedFSW: c023),
        X87Template(name: "fstp m32", opcode: 0xd9, digit: 3, memory: (4, .single), undefinedFSW: c023),
        X87Template(name: "fst m64", opcode: 0xdd, digit: 2, memory: (8, .double), undefinedFSW: c023),
        X87Template(name: "fstp m64", opcode: 0xdd, digit: 3, memory: (8, .double), undefinedFSW: c023),
        X87Template(name: "fstp m80", opcode: 0xdb, digit: 7, memory: (10, .extended), undefinedFSW: c023),
        X87Template(name: "fist m16", opcode: 0xdf, digit: 2, memory: (2, .integer), undefinedFSW: c023),
        X87Template(name: "fistp m16", opcode: 0xdf, digit: 3, memory: (2, .integer), undefinedFSW: c023),
        X87Template(name: "fist m32", opcode: 0xdb, digit: 2, memory: (4, .integer), undefinedFSW: c023),
        X87Template(name: "fistp m32", opcode: 0xdb, digit: 3, memory: (4, .integer), undefinedFSW: c023),
        X87Template(name: "fistp m64", opcode: 0xdf, digit: 7, memory: (8, .integer), undefinedFSW: c023),
        X87Template(name: "fbstp", opcode: 0xdf, digit: 6, memory: (10, .bcd), undefinedFSW: c023),
        X87Template(name: "fisttp m16", opcode: 0xdf, digit: 1, memory: (2, .integer), undefinedFSW: c023),
        X87Template(name: "fisttp m32", opcode: 0xdb, digit: 1, memory: (4, .integer), undefinedFSW: c023),
        X87Template(name: "fisttp m64", opcode: 0xdd, digit: 1, memory: (8, .integer), undefinedFSW: c023),
        X87Template(name: "fst st(i)", opcode: 0xdd, digit: 2, memory: nil, undefinedFSW: c023),
        X87Template(name: "fstp st(i)", opcode: 0xdd, digit: 3, memory: nil, undefinedFSW: c023),
        X87Template(name: "fstp1 st(i) (D9 D8+i)", opcode: 0xd9, digit: 3, memory: nil, undefinedFSW: c023),
        X87Template(name: "fstp8 st(i) (DF D0+i)", opcode: 0xdf, digit: 2, memory: nil, undefinedFSW: c023),
        X87Template(name: "fstp9 st(i) (DF D8+i)", opcode: 0xdf, digit: 3, memory: nil, undefinedFSW: c023),
        X87Template(name: "fxch", opcode: 0xd9, digit: 1, memory: nil, undefinedFSW: c023),
        X87Template(name: "fxch4 (DD C8+i)", opcode: 0xdd, digit: 1, memory: nil, undefinedFSW: c023),
        X87Template(name: "fxch7 (DF C8+i)", opcode: 0xdf, digit: 1, memory: nil, undefinedFSW: c023),
    ] + (0..<8).map { d in
        X87Template(name: "fcmov \(["b", "e", "be", "u", "nb", "ne", "nbe", "nu"][d])", opcode: d < 4 ? 0xda : 0xdb,
                    digit: UInt8(d % 4), memory: nil, undefinedFSW: c023)
    }

    static let x87ArithmeticTemplates: [X87Template] = {
        var t: [X87Template] = []
        let names = ["fadd", "fmul", "fcom", "fcomp", "fsub", "fsubr", "fdiv", "fdivr"]
        for d in [0, 1, 4, 5, 6, 7] {
            t.append(X87Template(name: names[d] + " m32", opcode: 0xd8, digit: UInt8(d), memory: (4, .single), undefinedFSW: c023))
            t.append(X87Template(name: names[d] + " m64", opcode: 0xdc, digit: UInt8(d), memory: (8, .double), undefinedFSW: c023))
            t.append(X87Template(name: "fi" + names[d].dropFirst() + " m32", opcode: 0xda, digit: UInt8(d), memory: (4, .integer), undefinedFSW: c023))
            t.append(X87Template(name: "fi" + names[d].dropFirst() + " m16", opcode: 0xde, digit: UInt8(d), memory: (2, .integer), undefinedFSW: c023))
            t.append(X87Template(name: names[d] + " st0,st(i)", opcode: 0xd8, digit: UInt8(d), memory: nil, undefinedFSW: c023))
            t.append(X87Template(name: "DC /\(d) st(i),st0", opcode: 0xdc, digit: UInt8(d), memory: nil, undefinedFSW: c023))
            t.append(X87Template(name: "DE /\(d) pop", opcode: 0xde, digit: UInt8(d), memory: nil, undefinedFSW: c023))
        }
        t += [
            X87Template(name: "fsqrt", opcode: 0xd9, digit: 7, memory: nil, fixedRM: 2, undefinedFSW: c023),
            X87Template(name: "frndint", opcode: 0xd9, digit: 7, memory: nil, fixedRM: 4, undefinedFSW: c023),
            X87Template(name: "fscale", opcode: 0xd9, digit: 7, memory: nil, fixedRM: 5, undefinedFSW: c023),
            X87Template(name: "fxtract", opcode: 0xd9, digit: 6, memory: nil, fixedRM: 4, undefinedFSW: c023),
            X87Template(name: "fprem", opcode: 0xd9, digit: 7, memory: nil, fixedRM: 0),
            X87Template(name: "fprem1", opcode: 0xd9, digit: 6, memory: nil, fixedRM: 5),
        ]
        return t
    }()

    static let x87CompareTemplates: [X87Template] = [
        X87Template(name: "fcom m32", opcode: 0xd8, digit: 2, memory: (4, .single)),
        X87Template(name: "fcomp m64", opcode: 0xdc, digit: 3, memory: (8, .double)),
        X87Template(name: "ficom m16", opcode: 0xde, digit: 2, memory: (2, .integer)),
        X87Template(name: "ficomp m32", opcode: 0xda, digit: 3, memory: (4, .integer)),
        X87Template(name: "fcom st(i)", opcode: 0xd8, digit: 2, memory: nil),
        X87Template(name: "fcomp st(i)", opcode: 0xd8, digit: 3, memory: nil),
        X87Template(name: "fcom2 (DC D0+i)", opcode: 0xdc, digit: 2, memory: nil),
        X87Template(name: "fcomp3 (DC D8+i)", opcode: 0xdc, digit: 3, memory: nil),
        X87Template(name: "fcomp5 (DE D0+i)", opcode: 0xde, digit: 2, memory: nil),
        X87Template(name: "fcompp", opcode: 0xde, digit: 3, memory: nil, fixedRM: 1),
        X87Template(name: "fucom", opcode: 0xdd, digit: 4, memory: nil),
        X87Template(name: "fucomp", opcode: 0xdd, digit: 5, memory: nil),
        X87Template(name: "fucompp", opcode: 0xda, digit: 5, memory: nil, fixedRM: 1),
        X87Template(name: "fucomi", opcode: 0xdb, digit: 5, memory: nil),
        X87Template(name: "fcomi", opcode: 0xdb, digit: 6, memory: nil),
        X87Template(name: "fucomip", opcode: 0xdf, digit: 5, memory: nil),
        X87Template(name: "fcomip", opcode: 0xdf, digit: 6, memory: nil),
        X87Template(name: "ftst", opcode: 0xd9, digit: 4, memory: nil, fixedRM: 4),
        X87Template(name: "fxam", opcode: 0xd9, digit: 4, memory: nil, fixedRM: 5),
    ]

    static let x87MiscTemplates: [X87Template] = [
        X87Template(name: "fchs", opcode: 0xd9, digit: 4, memory: nil, fixedRM: 0, undefinedFSW: c023),
        X87Template(name: "fabs", opcode: 0xd9, digit: 4, memory: nil, fixedRM: 1, undefinedFSW: c023),
        X87Template(name: "fnop", opcode: 0xd9, digit: 2, memory: nil, fixedRM: 0, undefinedFSW: c0123),
        X87Template(name: "fdecstp", opcode: 0xd9, digit: 6, memory: nil, fixedRM: 6, undefinedFSW: c023),
        X87Template(name: "fincstp", opcode: 0xd9, digit: 6, memory: nil, fixedRM: 7, undefinedFSW: c023),
        X87Template(name: "ffree", opcode: 0xdd, digit: 0, memory: nil, undefinedFSW: c0123),
        X87Template(name: "ffreep", opcode: 0xdf, digit: 0, memory: nil, undefinedFSW: c0123),
        X87Template(name: "fneni (DB E0)", opcode: 0xdb, digit: 4, memory: nil, fixedRM: 0, undefinedFSW: c0123),
        X87Template(name: "fndisi (DB E1)", opcode: 0xdb, digit: 4, memory: nil, fixedRM: 1, undefinedFSW: c0123),
        X87Template(name: "fnsetpm (DB E4)", opcode: 0xdb, digit: 4, memory: nil, fixedRM: 4, undefinedFSW: c0123),
    ]

    static let x87TranscendentalTemplates: [X87Template] = [
        X87Template(name: "fsin", opcode: 0xd9, digit: 7, memory: nil, fixedRM: 6, undefinedFSW: 0x4100,
                    domain: .trigonometric, tolerance: 1),
        X87Template(name: "fcos", opcode: 0xd9, digit: 7, memory: nil, fixedRM: 7, undefinedFSW: 0x4100,
                    domain: .trigonometric, tolerance: 1),
        X87Template(name: "fsincos", opcode: 0xd9, digit: 7, memory: nil, fixedRM: 3, undefinedFSW: 0x4100,
                    domain: .trigonometric, tolerance: 1),
        X87Template(name: "fptan", opcode: 0xd9, digit: 6, memory: nil, fixedRM: 2, undefinedFSW: 0x4100,
                    domain: .trigonometric, tolerance: 1),
        X87Template(name: "f2xm1", opcode: 0xd9, digit: 6, memory: nil, fixedRM: 0, undefinedFSW: c023,
                    domain: .unit, tolerance: 1),
        X87Template(name: "fyl2x", opcode: 0xd9, digit: 6, memory: nil, fixedRM: 1, undefinedFSW: c023,
                    domain: .logarithm, tolerance: 1),
        X87Template(name: "fyl2xp1", opcode: 0xd9, digit: 7, memory: nil, fixedRM: 1, undefinedFSW: c023,
                    domain: .small, tolerance: 1),
        X87Template(name: "fpatan", opcode: 0xd9, digit: 6, memory: nil, fixedRM: 3, undefinedFSW: c023,
                    tolerance: 1),
    ]

    /// A value for ST(0) in `domain` (special values a quarter of the time).
    static func x87Operand(_ domain: X87Domain, _ rng: inout SplitMix64) -> Float80Bits {
        if domain == .any || rng.below(4) == 0 { return FPValues.extended(&rng) }
        let sign: UInt16 = rng.bool() ? 0x8000 : 0
        let significand = rng.next() | 1 << 63
        switch domain {
        case .trigonometric:
            // Up to 2^64 (beyond 2^63: out of range), mostly moderate.
            let e = rng.below(3) == 0 ? rng.below(66) : rng.below(8)
            return Float80Bits(significand: significand, signExponent: sign | UInt16(0x3fff + e - 2))
        case .unit:
            return Float80Bits(significand: significand, signExponent: sign | UInt16(0x3fff - 1 - rng.below(rng.bool() ? 70 : 8)))
        case .small:
            return Float80Bits(significand: significand, signExponent: sign | UInt16(0x3fff - 3 - rng.below(rng.bool() ? 70 : 8)))
        default:  // .logarithm: positive, any magnitude, often near 1
            if rng.bool() { return Float80Bits(significand: significand, signExponent: UInt16(0x3fff - rng.below(2))) }
            return Float80Bits(significand: significand, signExponent: UInt16(rng.below(0x7ffe) + 1))
        }
    }

    static let x87ControlTemplates: [X87Template] = [
        X87Template(name: "fnstsw m16", opcode: 0xdd, digit: 7, memory: (2, .word), undefinedFSW: c0123),
        X87Template(name: "fnstsw ax", opcode: 0xdf, digit: 4, memory: nil, fixedRM: 0, undefinedFSW: c0123),
        X87Template(name: "fnstcw", opcode: 0xd9, digit: 7, memory: (2, .word), undefinedFSW: c0123),
        X87Template(name: "fldcw", opcode: 0xd9, digit: 5, memory: (2, .word), undefinedFSW: c0123),
        X87Template(name: "fnclex", opcode: 0xdb, digit: 4, memory: nil, fixedRM: 2, undefinedFSW: c0123),
        X87Template(name: "fninit", opcode: 0xdb, digit: 4, memory: nil, fixedRM: 3),
        X87Template(name: "fnstenv", opcode: 0xd9, digit: 6, memory: (28, .environment), undefinedFSW: c0123),
        X87Template(name: "fldenv", opcode: 0xd9, digit: 4, memory: (28, .environment)),
        X87Template(name: "fnsave", opcode: 0xdd, digit: 6, memory: (108, .state)),
        X87Template(name: "frstor", opcode: 0xdd, digit: 4, memory: (108, .state)),
    ]

    /// An x87 memory operand's bytes.
    static func x87Memory(_ kind: X87MemoryKind, size: Int, _ rng: inout SplitMix64, fcw: UInt16) -> [UInt8] {
        switch kind {
        case .single: return littleEndian(UInt64(FPValues.single(&rng)), 4)
        case .double: return littleEndian(FPValues.double(&rng), 8)
        case .extended:
            let v = FPValues.extended(&rng)
            return littleEndian(v.significand, 8) + littleEndian(UInt64(v.signExponent), 2)
        case .integer: return littleEndian(FPValues.integer(&rng, bits: size * 8), size)
        case .bcd:
            var digits = rng.next() & 0x0999_9999_9999_9999
            if rng.below(8) == 0 { digits = rng.next() }  // invalid digits too
            let high = UInt64((rng.below(10) << 4) | rng.below(10)) | (rng.bool() ? 0x8000 : 0)
            return littleEndian(digits, 8) + littleEndian(high, 2)
        case .word: return littleEndian(UInt64(Self.fcw(&rng)), 2)
        case .environment, .state:
            // A plausible environment: control, status and tag words with random contents.
            var b: [UInt8] = []
            let cw = Self.fcw(&rng)
            b += littleEndian(UInt64(cw), 2) + littleEndian(rng.next(), 2)
            b += littleEndian(UInt64(Self.fsw(&rng, fcw: cw, pendingChance: 20)), 2) + littleEndian(rng.next(), 2)
            b += littleEndian(rng.below(2) == 0 ? 0 : rng.next(), 2) + littleEndian(rng.next(), 2)
            for _ in 0..<4 { b += littleEndian(rng.next(), 4) }
            for _ in 0..<(size - 28) / 10 {
                let v = FPValues.extended(&rng)
                b += littleEndian(v.significand, 8) + littleEndian(UInt64(v.signExponent), 2)
            }
            return b
        }
    }

    func x87(_ family: String, _ rng: inout SplitMix64) -> FPCase? {
        let templates: [X87Template]
        switch family {
        case "x87Load": templates = Self.x87LoadTemplates
        case "x87Store": templates = Self.x87StoreTemplates
        case "x87Arithmetic", "x87Pending": templates = Self.x87ArithmeticTemplates
        case "x87Compare": templates = Self.x87CompareTemplates
        case "x87Misc": templates = Self.x87MiscTemplates
        case "x87Transcendental": templates = Self.x87TranscendentalTemplates
        default: templates = Self.x87ControlTemplates
        }
        let t = rng.pick(templates)
        var regs = registers(&rng)
        var chooser = RegisterChooser(legacyByte: false)
        var fx = image(&rng, values: .integer, pendingChance: family == "x87Pending" ? 0 : 8)
        if family == "x87Pending" {
            // Some exceptions unmasked, so that the instruction may leave one pending for the FWAIT.
            fx.fcw = fx.fcw & ~0x3f | UInt16(rng.below(64))
        }
        if t.domain != .any {
            fx.setST(0, Self.x87Operand(t.domain, &rng))
            if rng.below(3) != 0 { fx.ftw |= 1 << UInt8(fx.top) }  // ST(0) mostly valid
        }
        var patches: [(address: UInt64, bytes: [UInt8])] = []
        var e: Encoding
        if let memory = t.memory {
            let (operand, address) = self.memory(&rng, &chooser, &regs, alignment: 1)
            e = Encoding(opcode: [t.opcode], regField: t.digit, rm: operand)
            patches.append((address, Self.x87Memory(memory.kind, size: memory.size, &rng, fcw: fx.fcw)))
            if memory.kind == .environment || memory.kind == .state, rng.below(3) == 0 {
                e.legacyPrefixes = [0x66]  // the 16-bit formats
            }
        } else {
            e = Encoding(opcode: [t.opcode], regField: t.digit, rm: .register(t.fixedRM ?? UInt8(rng.below(8))))
        }
        var code = e.bytes
        var instructions = 1
        if family == "x87Pending" || rng.below(6) == 0 {
            // FWAIT, or another waiting instruction, delivers what the first left pending.
            code += rng.bool() ? [0x9b] : [0xd9, 0xd0]  // fwait / fnop
            instructions = 2
        }
        return FPCase(family: family, name: t.name + (instructions == 2 ? " + wait" : ""), code: code,
                      instructions: instructions, registers: regs, flags: flags(&rng), fx: fx, patches: patches,
                      undefinedFSW: instructions == 2 ? t.undefinedFSW | Self.c0123 : t.undefinedFSW,
                      undefinedFlags: t.undefinedFlags, x87Tolerance: t.tolerance, compare: family == "x87Compare")
    }
}
