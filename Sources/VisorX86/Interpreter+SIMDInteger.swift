// MMX and SSE2 integer SIMD: moves, logic, lane arithmetic (wrapping and saturating),
// multiplies, averages, minimum and maximum, compares, shifts, packs, interleaves, shuffles,
// PINSRW/PEXTRW, PMOVMSKB and the masked stores. One handler per operation serves the MMX
// (64-bit, `.mmx` operands) and the XMM (128-bit) form: values are carried as UInt128 and the
// lane count follows the destination's width. Memory operands of the XMM forms are 16 bytes
// and must be aligned, except in MOVDQU/MOVUPS and the 4- and 8-byte ones.

import VisorX86Decode

/// Lane arithmetic on vectors held in UInt128 (MMX values in the low 64 bits).
enum VectorLanes {
    /// Lane `i` of `bits` bits.
    @inline(__always)
    static func lane(_ v: UInt128, _ i: Int, bits: Int) -> UInt64 {
        let x = UInt64(truncatingIfNeeded: v >> UInt128(i * bits))
        return bits == 64 ? x : x & ((1 << UInt64(bits)) - 1)
    }

    /// Lane `i` sign-extended.
    @inline(__always)
    static func signedLane(_ v: UInt128, _ i: Int, bits: Int) -> Int64 {
        let x = lane(v, i, bits: bits)
        let unused = UInt64(64 - bits)
        return Int64(bitPattern: x << unused) >> Int64(unused)
    }

    /// A vector of `count` lanes of `bits` bits from `f(i)` (truncated to the lane).
    @inline(__always)
    static func make(count: Int, bits: Int, _ f: (Int) -> UInt64) -> UInt128 {
        var r: UInt128 = 0
        let mask: UInt64 = bits == 64 ? .max : (1 << UInt64(bits)) - 1
        for i in 0..<count { r |= UInt128(f(i) & mask) << UInt128(i * bits) }
        return r
    }

    /// `op` applied lane by lane.
    @inline(__always)
    static func map(_ a: UInt128, _ b: UInt128, count: Int, bits: Int, _ op: (UInt64, UInt64) -> UInt64) -> UInt128 {
        make(count: count, bits: bits) { op(lane(a, $0, bits: bits), lane(b, $0, bits: bits)) }
    }

    /// `op` on sign-extended lanes.
    @inline(__always)
    static func mapSigned(_ a: UInt128, _ b: UInt128, count: Int, bits: Int, _ op: (Int64, Int64) -> Int64) -> UInt128 {
        make(count: count, bits: bits) {
            UInt64(bitPattern: op(signedLane(a, $0, bits: bits), signedLane(b, $0, bits: bits)))
        }
    }

    static func saturateSigned(_ v: Int64, bits: Int) -> Int64 {
        let high = (Int64(1) << Int64(bits - 1)) - 1
        return min(max(v, -high - 1), high)
    }

    static func saturateUnsigned(_ v: Int64, bits: Int) -> Int64 {
        min(max(v, 0), (Int64(1) << Int64(bits)) - 1)
    }

    // Byte operations on 64 bits at once, for what string functions run in their loops.

    /// 0xFF in each byte where `a` and `b` have equal bytes, else 0.
    @inline(__always)
    static func equalBytes(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let low7: UInt64 = 0x7f7f_7f7f_7f7f_7f7f
        let x = a ^ b
        // Bit 7 of each byte of t: the byte of x is nonzero.
        let t = ((x & low7) &+ low7) | x
        return ((~t & 0x8080_8080_8080_8080) >> 7) &* 0xff
    }

    /// 0xFF in each byte where `a`'s byte is below `b`'s (unsigned), else 0: each byte of
    /// (a | 0x80) − (b & 0x7f) borrows from nothing, and its top bit says whether the low seven
    /// bits of a are at least those of b.
    @inline(__always)
    static func lessBytes(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let top: UInt64 = 0x8080_8080_8080_8080
        let x = (a | top) &- (b & ~top)
        let less = ((~a & b) | (~(a ^ b) & ~x)) & top
        return (less >> 7) &* 0xff
    }

    /// The top bit of each byte, gathered into 8 bits (byte i → bit i).
    @inline(__always)
    static func byteSignBits(_ v: UInt64) -> UInt64 {
        (((v & 0x8080_8080_8080_8080) >> 7) &* 0x0102_0408_1020_4080) >> 56
    }
}

extension X86Machine {
    /// Executes an integer SIMD instruction; false if `insn` is not one.
    func executeSIMDInteger(_ insn: DecodedInstruction) throws(X86Interruption) -> Bool {
        typealias L = VectorLanes
        let op = insn.operation
        switch op {
        case .movUnaligned128, .movAligned128, .movdq, .maskmov:
            try checkVectorInstruction(insn, sse: false)
            try executeVectorMove(insn)
            return true
        case .pxor, .por, .pand, .pandn, .paddb, .paddw, .paddd, .paddq, .psubb, .psubw, .psubd, .psubq,
             .paddsb, .paddsw, .paddusb, .paddusw, .psubsb, .psubsw, .psubusb, .psubusw,
             .pmullw, .pmulhw, .pmulhuw, .pmuludq, .pmaddwd, .psadbw, .pavgb, .pavgw,
             .pminub, .pmaxub, .pminsw, .pmaxsw, .pcmpeqb, .pcmpeqw, .pcmpeqd, .pcmpgtb, .pcmpgtw, .pcmpgtd,
             .packsswb, .packssdw, .packuswb,
             .punpcklbw, .punpcklwd, .punpckldq, .punpcklqdq, .punpckhbw, .punpckhwd, .punpckhdq, .punpckhqdq:
            break
        case .psllw, .pslld, .psllq, .psrlw, .psrld, .psrlq, .psraw, .psrad, .pslldq, .psrldq:
            try checkVectorInstruction(insn, sse: false)
            try executeVectorShift(insn)
            return true
        case .pshufd, .pshufhw, .pshuflw, .pshufw, .pinsrw, .pextrw, .pmovmskb:
            try checkVectorInstruction(insn, sse: false)
            try executeVectorShuffle(insn)
            return true
        default:
            return false
        }
        // Two-operand lane operations: destination ← destination op source.
        try checkVectorInstruction(insn, sse: false)
        let wide = insn.destination.kind == .xmm
        let bytes = wide ? 16 : 8
        let b = try readVector(insn.source, insn, aligned: true)
        let a = try readVector(insn.destination, insn)
        func n(_ bits: Int) -> Int { bytes * 8 / bits }
        let r: UInt128
        switch op {
        case .pxor: r = a ^ b
        case .por: r = a | b
        case .pand: r = a & b
        case .pandn: r = ~a & b
        case .paddb: r = L.map(a, b, count: n(8), bits: 8) { $0 &+ $1 }
        case .paddw: r = L.map(a, b, count: n(16), bits: 16) { $0 &+ $1 }
        case .paddd: r = L.map(a, b, count: n(32), bits: 32) { $0 &+ $1 }
        case .paddq: r = L.map(a, b, count: n(64), bits: 64) { $0 &+ $1 }
        case .psubb: r = L.map(a, b, count: n(8), bits: 8) { $0 &- $1 }
        case .psubw: r = L.map(a, b, count: n(16), bits: 16) { $0 &- $1 }
        case .psubd: r = L.map(a, b, count: n(32), bits: 32) { $0 &- $1 }
        case .psubq: r = L.map(a, b, count: n(64), bits: 64) { $0 &- $1 }
        case .paddsb: r = L.mapSigned(a, b, count: n(8), bits: 8) { L.saturateSigned($0 + $1, bits: 8) }
        case .paddsw: r = L.mapSigned(a, b, count: n(16), bits: 16) { L.saturateSigned($0 + $1, bits: 16) }
        case .psubsb: r = L.mapSigned(a, b, count: n(8), bits: 8) { L.saturateSigned($0 - $1, bits: 8) }
        case .psubsw: r = L.mapSigned(a, b, count: n(16), bits: 16) { L.saturateSigned($0 - $1, bits: 16) }
        case .paddusb: r = L.map(a, b, count: n(8), bits: 8) { min($0 + $1, 0xff) }
        case .paddusw: r = L.map(a, b, count: n(16), bits: 16) { min($0 + $1, 0xffff) }
        case .psubusb: r = L.map(a, b, count: n(8), bits: 8) { $0 > $1 ? $0 - $1 : 0 }
        case .psubusw: r = L.map(a, b, count: n(16), bits: 16) { $0 > $1 ? $0 - $1 : 0 }
        case .pmullw: r = L.mapSigned(a, b, count: n(16), bits: 16) { $0 * $1 }
        case .pmulhw: r = L.mapSigned(a, b, count: n(16), bits: 16) { ($0 * $1) >> 16 }
        case .pmulhuw: r = L.map(a, b, count: n(16), bits: 16) { ($0 * $1) >> 16 }
        case .pmuludq: r = L.map(a, b, count: n(64), bits: 64) { ($0 & 0xffff_ffff) &* ($1 & 0xffff_ffff) }
        case .pmaddwd:
            r = L.make(count: n(32), bits: 32) { i in
                let sum = L.signedLane(a, 2 * i, bits: 16) * L.signedLane(b, 2 * i, bits: 16)
                    + L.signedLane(a, 2 * i + 1, bits: 16) * L.signedLane(b, 2 * i + 1, bits: 16)
                return UInt64(bitPattern: sum)
            }
        case .psadbw:
            r = L.make(count: n(64), bits: 64) { q in
                var sum: UInt64 = 0
                for i in 8 * q..<8 * q + 8 {
                    let x = L.lane(a, i, bits: 8), y = L.lane(b, i, bits: 8)
                    sum += x > y ? x - y : y - x
                }
                return sum
            }
        case .pavgb: r = L.map(a, b, count: n(8), bits: 8) { ($0 + $1 + 1) >> 1 }
        case .pavgw: r = L.map(a, b, count: n(16), bits: 16) { ($0 + $1 + 1) >> 1 }
        case .pminub, .pmaxub:
            func pick(_ x: UInt64, _ y: UInt64) -> UInt64 {
                let less = L.lessBytes(x, y)
                return op == .pminub ? (x & less) | (y & ~less) : (y & less) | (x & ~less)
            }
            let low = pick(UInt64(truncatingIfNeeded: a), UInt64(truncatingIfNeeded: b))
            let high = pick(UInt64(truncatingIfNeeded: a >> 64), UInt64(truncatingIfNeeded: b >> 64))
            r = wide ? UInt128(high) << 64 | UInt128(low) : UInt128(low)
        case .pminsw: r = L.mapSigned(a, b, count: n(16), bits: 16) { min($0, $1) }
        case .pmaxsw: r = L.mapSigned(a, b, count: n(16), bits: 16) { max($0, $1) }
        case .pcmpeqb:
            let low = L.equalBytes(UInt64(truncatingIfNeeded: a), UInt64(truncatingIfNeeded: b))
            let high = L.equalBytes(UInt64(truncatingIfNeeded: a >> 64), UInt64(truncatingIfNeeded: b >> 64))
            r = wide ? UInt128(high) << 64 | UInt128(low) : UInt128(low)
        case .pcmpeqw: r = L.map(a, b, count: n(16), bits: 16) { $0 == $1 ? .max : 0 }
        case .pcmpeqd: r = L.map(a, b, count: n(32), bits: 32) { $0 == $1 ? .max : 0 }
        case .pcmpgtb: r = L.mapSigned(a, b, count: n(8), bits: 8) { $0 > $1 ? -1 : 0 }
        case .pcmpgtw: r = L.mapSigned(a, b, count: n(16), bits: 16) { $0 > $1 ? -1 : 0 }
        case .pcmpgtd: r = L.mapSigned(a, b, count: n(32), bits: 32) { $0 > $1 ? -1 : 0 }
        case .packsswb, .packssdw, .packuswb:
            // Source lanes of twice the width, saturated: the destination's into the low half.
            let bits = op == .packssdw ? 16 : 8
            let half = n(bits) / 2
            r = L.make(count: n(bits), bits: bits) { i in
                let v = i < half ? L.signedLane(a, i, bits: 2 * bits) : L.signedLane(b, i - half, bits: 2 * bits)
                let s = op == .packuswb ? L.saturateUnsigned(v, bits: bits) : L.saturateSigned(v, bits: bits)
                return UInt64(bitPattern: s)
            }
        default:
            // Interleaves: lanes of the low (or high) halves, alternately from each operand.
            let bits: Int
            switch op {
            case .punpcklbw, .punpckhbw: bits = 8
            case .punpcklwd, .punpckhwd: bits = 16
            case .punpckldq, .punpckhdq: bits = 32
            default: bits = 64
            }
            let high = op == .punpckhbw || op == .punpckhwd || op == .punpckhdq || op == .punpckhqdq
            let base = high ? n(bits) / 2 : 0
            r = L.make(count: n(bits), bits: bits) { i in
                L.lane(i & 1 == 0 ? a : b, base + i / 2, bits: bits)
            }
        }
        try writeVector(insn.destination, insn, r)
        return true
    }

    /// MOVDQA/MOVDQU/MOVAPS/..., MOVD/MOVQ in all their forms, MASKMOVQ/MASKMOVDQU.
    private func executeVectorMove(_ insn: DecodedInstruction) throws(X86Interruption) {
        switch insn.operation {
        case .movUnaligned128, .movAligned128:
            let aligned = insn.operation == .movAligned128
            try write128(insn.destination, insn, try read128(insn.source, insn, aligned: aligned), aligned: aligned)
        case .movdq:
            // The low 4 or 8 bytes of the source; zero-extended into a vector register.
            let size = insn.operandSize == 4 ? 4 : 8
            let value = try readVector(insn.source, insn) & UInt128(Self.mask(UInt8(size)))
            try writeVector(insn.destination, insn, value)
        default:
            // MASKMOVQ / MASKMOVDQU: bytes of the destination register whose mask byte has its top
            // bit set go to DS:rDI (a segment override applies). Every byte's page is checked first.
            let data = try readVector(insn.destination, insn)
            let mask = try readVector(insn.source, insn)
            let count = insn.destination.kind == .xmm ? 16 : 8
            let segment = insn.prefixes.segmentOverride ?? 3
            let offset = cpu.gpr[7] & Self.mask(insn.addressSize)
            var selected: [Int] = []
            for i in 0..<count where VectorLanes.lane(mask, i, bits: 8) & 0x80 != 0 { selected.append(i) }
            guard !selected.isEmpty else { return }
            let linear = try linearAddress(segment: segment, offset: offset, size: count)
            for i in selected { _ = try translate(linear &+ UInt64(i), .write) }
            for i in selected {
                try writeLinear(linear &+ UInt64(i), size: 1, value: VectorLanes.lane(data, i, bits: 8))
            }
        }
    }

    /// Shifts by a count in a vector register or memory (its low 64 bits) or an immediate.
    private func executeVectorShift(_ insn: DecodedInstruction) throws(X86Interruption) {
        typealias L = VectorLanes
        let wide = insn.destination.kind == .xmm
        let bytes = wide ? 16 : 8
        let count: UInt64
        if insn.source.kind == .immediate {
            count = insn.immediate & 0xff
        } else {
            count = UInt64(truncatingIfNeeded: try readVector(insn.source, insn, aligned: true))
        }
        let a = try readVector(insn.destination, insn)
        let r: UInt128
        switch insn.operation {
        case .pslldq, .psrldq:
            let shift = UInt128(min(count, 16) * 8)
            r = insn.operation == .pslldq ? (count > 15 ? 0 : a << shift) : (count > 15 ? 0 : a >> shift)
        default:
            let bits: Int
            switch insn.operation {
            case .psllw, .psrlw, .psraw: bits = 16
            case .pslld, .psrld, .psrad: bits = 32
            default: bits = 64
            }
            let n = bytes * 8 / bits
            switch insn.operation {
            case .psllw, .pslld, .psllq:
                r = count >= UInt64(bits) ? 0 : L.make(count: n, bits: bits) { L.lane(a, $0, bits: bits) << count }
            case .psrlw, .psrld, .psrlq:
                r = count >= UInt64(bits) ? 0 : L.make(count: n, bits: bits) { L.lane(a, $0, bits: bits) >> count }
            default:
                let s = Int64(min(count, UInt64(bits - 1)))
                r = L.make(count: n, bits: bits) { UInt64(bitPattern: L.signedLane(a, $0, bits: bits) >> s) }
            }
        }
        try writeVector(insn.destination, insn, r)
    }

    /// PSHUFD/PSHUFHW/PSHUFLW/PSHUFW, PINSRW, PEXTRW, PMOVMSKB.
    private func executeVectorShuffle(_ insn: DecodedInstruction) throws(X86Interruption) {
        typealias L = VectorLanes
        let order = Int(insn.immediate & 0xff)
        switch insn.operation {
        case .pshufd:
            let b = try readVector(insn.source, insn, aligned: true)
            try writeVector(insn.destination, insn, L.make(count: 4, bits: 32) { L.lane(b, (order >> (2 * $0)) & 3, bits: 32) })
        case .pshufw:
            let b = try readVector(insn.source, insn)
            try writeVector(insn.destination, insn, L.make(count: 4, bits: 16) { L.lane(b, (order >> (2 * $0)) & 3, bits: 16) })
        case .pshufhw, .pshuflw:
            let b = try readVector(insn.source, insn, aligned: true)
            let base = insn.operation == .pshufhw ? 4 : 0
            try writeVector(insn.destination, insn, L.make(count: 8, bits: 16) { i in
                guard i >= base && i < base + 4 else { return L.lane(b, i, bits: 16) }
                return L.lane(b, base + (order >> (2 * (i - base))) & 3, bits: 16)
            })
        case .pinsrw:
            let words = insn.destination.kind == .xmm ? 8 : 4
            let value = UInt64(truncatingIfNeeded: try readVector(insn.source, insn)) & 0xffff
            let a = try readVector(insn.destination, insn)
            let index = order & (words - 1)
            try writeVector(insn.destination, insn, L.make(count: words, bits: 16) { $0 == index ? value : L.lane(a, $0, bits: 16) })
        case .pextrw:
            let words = insn.source.kind == .xmm ? 8 : 4
            let b = try readVector(insn.source, insn)
            try write(insn.destination, insn, L.lane(b, order & (words - 1), bits: 16))
        default:  // .pmovmskb
            let b = try readVector(insn.source, insn)
            var mask = L.byteSignBits(UInt64(truncatingIfNeeded: b))
            if insn.source.kind == .xmm { mask |= L.byteSignBits(UInt64(truncatingIfNeeded: b >> 64)) << 8 }
            try write(insn.destination, insn, mask)
        }
    }
}
