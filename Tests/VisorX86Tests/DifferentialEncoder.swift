// A tiny x86-64 encoder for the differential tests: it produces the bytes the host CPU runs
// and, from the same choices, the DecodedInstruction the interpreter runs (following the
// decoder's conventions in Decoder.swift), so the two sides cannot drift apart silently. A
// separate test checks both against `Decoder.decode`.

import VisorX86Decode

/// SplitMix64: small, seedable, good enough for test inputs.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func bool() -> Bool { next() & 1 == 0 }
    mutating func pick<T>(_ values: [T]) -> T { values[below(values.count)] }

    /// Operand values biased to the edges: 0, ±1, sign boundaries, powers of two, all ones.
    mutating func interesting() -> UInt64 {
        switch below(10) {
        case 0: return pick([0, 1, .max, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff, 0x7fff_ffff, 0x8000_0000,
                             0xffff_ffff, 0x7fff_ffff_ffff_ffff, 0x8000_0000_0000_0000, 0x1_0000_0000, 0x100])
        case 1: return 1 << UInt64(below(64))
        case 2: return (1 << UInt64(below(64))) &- 1
        case 3: return UInt64(below(256))
        case 4: return 0 &- UInt64(below(256))
        case 5: return ~(1 << UInt64(below(64)))
        default: return next()
        }
    }
}

/// The r/m side of a ModRM.
enum RMOperand {
    case register(UInt8)
    /// [base + index * scale + displacement]; `index` nil for none.
    case memory(base: UInt8, index: UInt8?, scale: UInt8, displacement: Int32)
}

/// One instruction to encode. Fields mirror the encoding, not the semantics.
struct Encoding {
    var legacyPrefixes: [UInt8] = []
    var rexW = false
    var forceREX = false
    var opcode: [UInt8]
    /// ModRM.reg (0-15; a register or a /digit); nil with `rm` nil means no ModRM.
    var regField: UInt8 = 0
    var rm: RMOperand? = nil
    /// For +r opcodes (BSWAP, PUSH r, POP r): the register folded into the last opcode byte.
    var opcodeRegister: UInt8? = nil
    var immediate: [UInt8] = []

    /// The REX byte this encoding needs (0 for none).
    var rex: UInt8 {
        var bits: UInt8 = rexW ? 8 : 0
        if regField >= 8 { bits |= 4 }
        if case .memory(let base, let index, _, _)? = rm {
            if let index, index >= 8 { bits |= 2 }
            if base >= 8 { bits |= 1 }
        }
        if case .register(let r)? = rm, r >= 8 { bits |= 1 }
        if let r = opcodeRegister, r >= 8 { bits |= 1 }
        return bits != 0 || forceREX ? 0x40 | bits : 0
    }

    var memoryOperand: MemoryOperand {
        guard case .memory(let base, let index, let scale, let displacement)? = rm else { return MemoryOperand() }
        return MemoryOperand(segment: base == 4 || base == 5 ? 2 : 3, base: base,
                             index: index ?? MemoryOperand.noRegister, scale: scale,
                             displacement: Int64(displacement))
    }

    var bytes: [UInt8] {
        var out = legacyPrefixes
        let rex = self.rex
        if rex != 0 { out.append(rex) }
        var op = opcode
        if let r = opcodeRegister { op[op.count - 1] |= r & 7 }
        out += op
        switch rm {
        case .register(let r)?:
            out.append(0xc0 | ((regField & 7) << 3) | (r & 7))
        case .memory(let base, let index, let scale, let displacement)?:
            let needsSIB = index != nil || base & 7 == 4
            let mod: UInt8
            if displacement == 0 && base & 7 != 5 { mod = 0 } else if Int32(Int8(truncatingIfNeeded: displacement)) == displacement { mod = 1 } else { mod = 2 }
            out.append((mod << 6) | ((regField & 7) << 3) | (needsSIB ? 4 : base & 7))
            if needsSIB {
                let ss: UInt8 = scale == 8 ? 3 : scale == 4 ? 2 : scale == 2 ? 1 : 0
                out.append((ss << 6) | ((index.map { $0 & 7 } ?? 4) << 3) | (base & 7))
            }
            if mod == 1 { out.append(UInt8(truncatingIfNeeded: displacement)) }
            if mod == 2 { for i in 0..<4 { out.append(UInt8(truncatingIfNeeded: displacement >> (8 * i))) } }
        case nil:
            break
        }
        return out + immediate
    }

    /// A general-purpose register operand as the decoder describes it under this encoding's REX.
    func gpr(_ index: UInt8, size: UInt8) -> Operand {
        if size == 1 && rex == 0 && index >= 4 && index < 8 { return Operand(.highByte, index: index - 4, size: 1) }
        return .register(index, size: size)
    }

    /// The r/m operand at `size`.
    func rmOperand(size: UInt8) -> Operand {
        switch rm {
        case .register(let r)?: return gpr(r, size: size)
        default: return .memory(size: size)
        }
    }

    /// The DecodedInstruction for these bytes, with operands filled in by the caller.
    func instruction(_ operation: Operation, operandSize: UInt8, destination: Operand = .none,
                     source: Operand = .none, source2: Operand = .none, immediate: UInt64 = 0,
                     condition: UInt8 = 0, repetition: Prefixes.Repeat = .none) -> DecodedInstruction {
        var prefixes = Prefixes()
        prefixes.rex = rex
        prefixes.repetition = repetition
        return DecodedInstruction(operation: operation, length: UInt8(bytes.count), operandSize: operandSize,
                                  addressSize: legacyPrefixes.contains(0x67) ? 4 : 8, condition: condition,
                                  destination: destination, source: source, source2: source2,
                                  memory: memoryOperand, immediate: immediate, prefixes: prefixes)
    }
}

/// Little-endian bytes of the low `count` bytes of `value`.
func littleEndian(_ value: UInt64, _ count: Int) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
}

/// Hex for failure messages.
func hex(_ bytes: [UInt8]) -> String { bytes.map { String($0, radix: 16).leftPadded(2) }.joined(separator: " ") }

extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
