// Case generators for the differential tests, one per instruction family. Each picks an
// operand size, registers (distinct, never rSP unless the family is about the stack), an
// optional memory operand into the rig's data window, edge-biased values and random status
// flags, and says which flags the SDM leaves undefined for that instance.

import VisorX86Decode

/// Picks distinct full registers. In "legacy byte" mode (no REX) byte operands 4-7 are AH-BH,
/// whose full register is 0-3.
struct RegisterChooser {
    var taken: Set<UInt8> = [4]
    let legacyByte: Bool

    /// A register operand index (0-15, or 0-7 in legacy byte mode).
    mutating func pick(_ rng: inout SplitMix64) -> UInt8 {
        while true {
            let candidate = UInt8(rng.below(legacyByte ? 8 : 16))
            let full = legacyByte && candidate >= 4 ? candidate - 4 : candidate
            if !taken.contains(full) { taken.insert(full); return candidate }
        }
    }

    /// A full register for addressing (not rSP).
    mutating func pickAddress(_ rng: inout SplitMix64) -> UInt8 {
        while true {
            let candidate = UInt8(rng.below(legacyByte ? 8 : 16))
            if !taken.contains(candidate) { taken.insert(candidate); return candidate }
        }
    }
}

struct CaseGenerator {
    let layout: DifferentialLayout

    static let families = [
        "alu", "aluImmediate", "unary", "multiply", "divide", "imul", "shift", "doubleShift", "bitTest",
        "bitScan", "bswap", "extend", "cmov", "setcc", "exchange", "accumulator", "lea", "flagOps", "stack",
        "string", "cmpxchgDouble", "sse",
    ]

    static let aluOperations: [Operation] = [.add, .or, .adc, .sbb, .and, .sub, .xor, .cmp]

    func registers(_ rng: inout SplitMix64) -> [UInt64] {
        var r = (0..<16).map { _ in rng.interesting() }
        r[4] = layout.stackTop - 0x80
        return r
    }

    func flags(_ rng: inout SplitMix64) -> UInt64 { (rng.next() & F.status) | 0x2 }

    /// A memory operand in the hot window; sets the address registers.
    func memory(_ rng: inout SplitMix64, _ chooser: inout RegisterChooser, _ regs: inout [UInt64]) -> RMOperand {
        let base = chooser.pickAddress(&rng)
        var index: UInt8? = nil
        var scale: UInt8 = 1
        if rng.below(3) == 0 {
            let i = chooser.pickAddress(&rng)
            index = i
            scale = rng.pick([1, 2, 4, 8])
            regs[Int(i)] = UInt64(rng.below(16))
        }
        regs[Int(base)] = layout.hotCenter &+ UInt64(rng.below(0x100)) &- 0x80
        let displacement: Int32 = rng.below(4) == 0 ? 0 : Int32(rng.below(0x100)) - 0x80
        return .memory(base: base, index: index, scale: scale, displacement: displacement)
    }

    /// Operand-size prefixes for `size` (66 / REX.W / a forced REX for byte registers).
    func sized(_ e: inout Encoding, _ size: UInt8, legacyByte: Bool) {
        if size == 2 { e.legacyPrefixes.append(0x66) }
        if size == 8 { e.rexW = true }
        if size == 1 && !legacyByte { e.forceREX = true }
    }

    mutating func make(_ family: String, _ rng: inout SplitMix64) -> DifferentialCase? {
        var regs = registers(&rng)
        let size: UInt8 = rng.pick([1, 2, 4, 8])
        let legacy = size == 1 && rng.bool()
        var chooser = RegisterChooser(legacyByte: legacy)
        let useMemory = rng.bool()
        func rmOperand(_ rng: inout SplitMix64, _ chooser: inout RegisterChooser) -> RMOperand {
            useMemory ? memory(&rng, &chooser, &regs) : .register(chooser.pick(&rng))
        }
        var undefined: UInt64 = 0
        var patches: [(address: UInt64, bytes: [UInt8])] = []
        var e: Encoding
        var insn: DecodedInstruction
        let flagsIn = flags(&rng)

        switch family {
        case "alu":
            let n = rng.below(9)
            let r = chooser.pick(&rng)
            let rm = rmOperand(&rng, &chooser)
            let reverse = n != 8 && useMemory && rng.bool()
            let opcode: UInt8 = (n == 8 ? 0x84 : UInt8(n * 8)) + (reverse ? 2 : 0) + (size == 1 ? 0 : 1)
            e = Encoding(opcode: [opcode], regField: r, rm: rm)
            sized(&e, size, legacyByte: legacy)
            let g = e.gpr(r, size: size), m = e.rmOperand(size: size)
            let op = n == 8 ? Operation.test : Self.aluOperations[n]
            insn = e.instruction(op, operandSize: size, destination: reverse ? g : m, source: reverse ? m : g)
            if [.and, .or, .xor, .test].contains(op) { undefined = F.af }
        case "aluImmediate":
            let n = rng.below(9)  // 8 = TEST
            let rm = rmOperand(&rng, &chooser)
            let value = rng.interesting()
            var immediate: UInt64
            var immBytes: [UInt8]
            var opcode: UInt8
            var immediateSize = size
            if size == 1 {
                opcode = n == 8 ? 0xf6 : 0x80
                immBytes = littleEndian(value, 1); immediate = value & 0xff
            } else if n != 8 && rng.bool() {
                opcode = 0x83
                immBytes = littleEndian(value, 1)
                immediate = UInt64(bitPattern: Int64(Int8(truncatingIfNeeded: value)))
            } else {
                opcode = n == 8 ? 0xf7 : 0x81
                let count = size == 2 ? 2 : 4
                immBytes = littleEndian(value, count)
                immediate = size == 8 ? UInt64(bitPattern: Int64(Int32(truncatingIfNeeded: value)))
                    : value & X86MachineMask.of(UInt8(count))
            }
            if size == 1 { immediateSize = 1 }
            e = Encoding(opcode: [opcode], regField: n == 8 ? 0 : UInt8(n), rm: rm, immediate: immBytes)
            sized(&e, size, legacyByte: legacy)
            let op = n == 8 ? Operation.test : Self.aluOperations[n]
            insn = e.instruction(op, operandSize: size, destination: e.rmOperand(size: size),
                                 source: .immediate(size: immediateSize), immediate: immediate)
            if [.and, .or, .xor, .test].contains(op) { undefined = F.af }
        case "unary":
            let which = rng.below(4)  // inc dec not neg
            let rm = rmOperand(&rng, &chooser)
            let opcode: UInt8 = which < 2 ? (size == 1 ? 0xfe : 0xff) : (size == 1 ? 0xf6 : 0xf7)
            let digit: UInt8 = which < 2 ? UInt8(which) : UInt8(which)
            e = Encoding(opcode: [opcode], regField: digit, rm: rm)
            sized(&e, size, legacyByte: legacy)
            insn = e.instruction([Operation.inc, .dec, .not, .neg][which], operandSize: size,
                                 destination: e.rmOperand(size: size))
        case "multiply", "divide":
            chooser.taken.insert(0); chooser.taken.insert(2)
            let rm = rmOperand(&rng, &chooser)
            let divide = family == "divide"
            let signed = rng.bool()
            let digit: UInt8 = divide ? (signed ? 7 : 6) : (signed ? 5 : 4)
            e = Encoding(opcode: [size == 1 ? 0xf6 : 0xf7], regField: digit, rm: rm)
            sized(&e, size, legacyByte: legacy)
            let op: Operation = divide ? (signed ? .idiv : .div) : (signed ? .imulWide : .mul)
            insn = e.instruction(op, operandSize: size, source: e.rmOperand(size: size))
            undefined = divide ? F.status : F.sf | F.zf | F.af | F.pf
            if divide && rng.below(3) != 0 {
                // Make most dividends fit: the high half a sign/zero extension or small.
                let bits = UInt64(size) * 8
                let low = regs[0] & X86MachineMask.of(size)
                let negative = low >> (bits - 1) & 1 == 1
                let highHalf: UInt64 = signed ? (negative ? X86MachineMask.of(size) : 0) : UInt64(rng.below(3))
                if size == 1 {
                    regs[0] = (regs[0] & ~0xffff) | (highHalf & 0xff) << 8 | low
                } else {
                    regs[2] = (regs[2] & ~X86MachineMask.of(size)) | highHalf
                }
            }
        case "imul":
            let s: UInt8 = rng.pick([2, 4, 8])
            var c = RegisterChooser(legacyByte: false)
            let r = c.pick(&rng)
            let rm = useMemory ? memory(&rng, &c, &regs) : .register(c.pick(&rng))
            let form = rng.below(3)
            let value = rng.interesting()
            switch form {
            case 0:
                e = Encoding(opcode: [0x0f, 0xaf], regField: r, rm: rm)
                sized(&e, s, legacyByte: false)
                let g = e.gpr(r, size: s)
                insn = e.instruction(.imul, operandSize: s, destination: g, source: e.rmOperand(size: s), source2: g)
            case 1:
                let count = s == 2 ? 2 : 4
                e = Encoding(opcode: [0x69], regField: r, rm: rm, immediate: littleEndian(value, count))
                sized(&e, s, legacyByte: false)
                let imm = s == 8 ? UInt64(bitPattern: Int64(Int32(truncatingIfNeeded: value))) : value & X86MachineMask.of(UInt8(count))
                insn = e.instruction(.imul, operandSize: s, destination: e.gpr(r, size: s),
                                     source: e.rmOperand(size: s), source2: .immediate(size: s), immediate: imm)
            default:
                e = Encoding(opcode: [0x6b], regField: r, rm: rm, immediate: littleEndian(value, 1))
                sized(&e, s, legacyByte: false)
                insn = e.instruction(.imul, operandSize: s, destination: e.gpr(r, size: s),
                                     source: e.rmOperand(size: s), source2: .immediate(size: s),
                                     immediate: UInt64(bitPattern: Int64(Int8(truncatingIfNeeded: value))))
            }
            undefined = F.sf | F.zf | F.af | F.pf
        case "shift":
            let digit = UInt8(rng.pick([0, 1, 2, 3, 4, 5, 7]))
            let op: Operation = [.rol, .ror, .rcl, .rcr, .shl, .shr, .shl, .sar][Int(digit)]
            chooser.taken.insert(1)  // CL
            let rm = rmOperand(&rng, &chooser)
            let countMask: UInt64 = size == 8 ? 63 : 31
            let count: UInt64
            let form = rng.below(3)
            switch form {
            case 0:
                count = 1
                e = Encoding(opcode: [size == 1 ? 0xd0 : 0xd1], regField: digit, rm: rm)
            case 1:
                count = rng.below(4) == 0 ? UInt64(rng.below(256)) : UInt64(rng.pick([0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65]))
                regs[1] = (regs[1] & ~0xff) | count
                e = Encoding(opcode: [size == 1 ? 0xd2 : 0xd3], regField: digit, rm: rm)
            default:
                count = UInt64(rng.below(4) == 0 ? rng.below(256) : rng.pick([0, 1, 2, 7, 8, 9, 16, 17, 31, 32, 63]))
                e = Encoding(opcode: [size == 1 ? 0xc0 : 0xc1], regField: digit, rm: rm, immediate: [UInt8(count)])
            }
            sized(&e, size, legacyByte: legacy)
            let source: Operand = form == 1 ? .register(1, size: 1) : .immediate(size: 1)
            insn = e.instruction(op, operandSize: size, destination: e.rmOperand(size: size), source: source,
                                 immediate: form == 1 ? 0 : count)
            let masked = count & countMask
            let bits = UInt64(size) * 8
            if masked != 0 {
                if masked != 1 { undefined |= F.of }
                if [.shl, .shr, .sar].contains(op) { undefined |= F.af }
                if (op == .shl || op == .shr) && masked >= bits { undefined |= F.cf }
            }
        case "doubleShift":
            let s: UInt8 = rng.pick([2, 4, 8])
            var c = RegisterChooser(legacyByte: false)
            c.taken.insert(1)
            let r = c.pick(&rng)
            let rm = useMemory ? memory(&rng, &c, &regs) : .register(c.pick(&rng))
            let right = rng.bool()
            let byCL = rng.bool()
            let limit = s == 2 ? 17 : (s == 8 ? 64 : 32)
            let count = UInt64(rng.below(4) == 0 ? rng.below(limit) : rng.pick([0, 1, 2, Int(s) * 8 - 1, Int(s) * 4]))
            let countField = count | (s == 8 ? 0 : UInt64(rng.below(2)) << 5)  // bit 5 is masked off for 16/32
            let opcode: UInt8 = (right ? 0xac : 0xa4) + (byCL ? 1 : 0)
            if byCL { regs[1] = (regs[1] & ~0xff) | countField }
            e = Encoding(opcode: [0x0f, opcode], regField: r, rm: rm, immediate: byCL ? [] : [UInt8(countField)])
            sized(&e, s, legacyByte: false)
            insn = e.instruction(right ? .shrd : .shld, operandSize: s, destination: e.rmOperand(size: s),
                                 source: e.gpr(r, size: s),
                                 source2: byCL ? .register(1, size: 1) : .immediate(size: 1),
                                 immediate: byCL ? 0 : countField)
            if count > 0 {
                undefined = F.af
                if count != 1 { undefined |= F.of }
            }
        case "bitTest":
            let s: UInt8 = rng.pick([2, 4, 8])
            var c = RegisterChooser(legacyByte: false)
            let which = rng.below(4)  // bt bts btr btc
            let op = [Operation.bt, .bts, .btr, .btc][which]
            let rm = useMemory ? memory(&rng, &c, &regs) : .register(c.pick(&rng))
            if rng.bool() {
                let r = c.pick(&rng)
                // Keep memory bit offsets within ±2 KiB bits... of the window.
                regs[Int(r)] = useMemory ? UInt64(bitPattern: Int64(rng.below(0x800)) - 0x400) : rng.interesting()
                e = Encoding(opcode: [0x0f, [0xa3, 0xab, 0xb3, 0xbb][which]], regField: r, rm: rm)
                sized(&e, s, legacyByte: false)
                insn = e.instruction(op, operandSize: s, destination: e.rmOperand(size: s), source: e.gpr(r, size: s))
            } else {
                let bit = UInt64(rng.below(256))
                e = Encoding(opcode: [0x0f, 0xba], regField: UInt8(4 + which), rm: rm, immediate: [UInt8(bit)])
                sized(&e, s, legacyByte: false)
                insn = e.instruction(op, operandSize: s, destination: e.rmOperand(size: s), source: .immediate(size: 1),
                                     immediate: bit)
            }
            undefined = F.of | F.sf | F.af | F.pf
        case "bitScan":
            let s: UInt8 = rng.pick([2, 4, 8])
            var c = RegisterChooser(legacyByte: false)
            let r = c.pick(&rng)
            let rm = useMemory ? memory(&rng, &c, &regs) : .register(c.pick(&rng))
            let which = rng.below(5)  // bsf bsr tzcnt lzcnt popcnt
            let op = [Operation.bsf, .bsr, .tzcnt, .lzcnt, .popcnt][which]
            e = Encoding(opcode: [0x0f, [0xbc, 0xbd, 0xbc, 0xbd, 0xb8][which]], regField: r, rm: rm)
            if which >= 2 { e.legacyPrefixes.append(0xf3) }
            if s == 2 { e.legacyPrefixes.insert(0x66, at: 0) }
            if s == 8 { e.rexW = true }
            if case .register(let m) = rm, rng.below(4) == 0 { regs[Int(m)] = 0 }
            insn = e.instruction(op, operandSize: s, destination: e.gpr(r, size: s), source: e.rmOperand(size: s))
            switch op {
            case .bsf, .bsr: undefined = F.cf | F.of | F.sf | F.af | F.pf
            case .tzcnt, .lzcnt: undefined = F.of | F.sf | F.af | F.pf
            default: break
            }
        case "bswap":
            let s: UInt8 = rng.pick([4, 8])
            var c = RegisterChooser(legacyByte: false)
            let r = c.pick(&rng)
            e = Encoding(opcode: [0x0f, 0xc8], opcodeRegister: r)
            e.rexW = s == 8
            insn = e.instruction(.bswap, operandSize: s, destination: .register(r, size: s))
        case "extend":
            // MOVZX/MOVSX Gv, Eb/Ew; MOVSXD Gv, Ed.
            let which = rng.below(5)
            let s: UInt8 = which == 4 ? rng.pick([4, 8]) : rng.pick(which % 2 == 0 ? [2, 4, 8] : [4, 8])
            let sourceSize: UInt8 = which == 4 ? (s == 8 ? 4 : 4) : (which % 2 == 0 ? 1 : 2)
            let legacySource = sourceSize == 1 && rng.bool()
            var c = RegisterChooser(legacyByte: legacySource && s != 8)
            // The destination is a full register: in legacy byte mode 0-7 without rSP.
            let r = c.legacyByte ? UInt8(rng.pick([0, 1, 2, 3, 5, 6, 7])) : c.pick(&rng)
            if c.legacyByte { c.taken.insert(r) }
            let rm = useMemory ? memory(&rng, &c, &regs) : .register(c.pick(&rng))
            let opcode: [UInt8] = which == 4 ? [0x63] : [0x0f, [0xb6, 0xb7, 0xbe, 0xbf][[0, 1, 2, 3][which]]]
            e = Encoding(opcode: opcode, regField: r, rm: rm)
            if s == 2 { e.legacyPrefixes.append(0x66) }
            if s == 8 { e.rexW = true }
            if sourceSize == 1 && !(legacySource && s != 8) { e.forceREX = true }
            let op: Operation = which == 4 || which >= 2 ? .movsx : .movzx
            insn = e.instruction(op, operandSize: s, destination: e.gpr(r, size: s),
                                 source: e.rmOperand(size: which == 4 ? (s == 8 ? 4 : s) : sourceSize))
        case "cmov":
            let s: UInt8 = rng.pick([2, 4, 8])
            var c = RegisterChooser(legacyByte: false)
            let r = c.pick(&rng)
            let rm = useMemory ? memory(&rng, &c, &regs) : .register(c.pick(&rng))
            let cc = UInt8(rng.below(16))
            e = Encoding(opcode: [0x0f, 0x40 | cc], regField: r, rm: rm)
            sized(&e, s, legacyByte: false)
            insn = e.instruction(.cmovcc, operandSize: s, destination: e.gpr(r, size: s), source: e.rmOperand(size: s),
                                 condition: cc)
        case "setcc":
            let rm = rmOperand(&rng, &chooser)
            let cc = UInt8(rng.below(16))
            e = Encoding(opcode: [0x0f, 0x90 | cc], regField: 0, rm: rm)
            if !legacy { e.forceREX = true }
            insn = e.instruction(.setcc, operandSize: 1, destination: e.rmOperand(size: 1), condition: cc)
        case "exchange":
            let which = rng.below(3)  // xchg xadd cmpxchg
            if which == 2 { chooser.taken.insert(0) }
            let r = chooser.pick(&rng)
            let rm = rmOperand(&rng, &chooser)
            let opcode: [UInt8] = which == 0 ? [size == 1 ? 0x86 : 0x87]
                : [0x0f, (which == 1 ? 0xc0 : 0xb0) + (size == 1 ? 0 : 1)]
            e = Encoding(opcode: opcode, regField: r, rm: rm)
            sized(&e, size, legacyByte: legacy)
            // Make CMPXCHG succeed about half the time.
            if which == 2 && rng.bool() {
                switch rm {
                case .register(let m):
                    if !(legacy && m >= 4) { regs[0] = regs[Int(m)] }
                case .memory:
                    patches.append((address(of: rm, regs), littleEndian(regs[0], Int(size))))
                }
            }
            insn = e.instruction([Operation.xchg, .xadd, .cmpxchg][which], operandSize: size,
                                 destination: e.rmOperand(size: size), source: e.gpr(r, size: size))
        case "accumulator":
            let cdq = rng.bool()
            let s: UInt8 = rng.pick([2, 4, 8])
            e = Encoding(opcode: [cdq ? 0x99 : 0x98])
            sized(&e, s, legacyByte: false)
            insn = e.instruction(cdq ? .signExtendIntoDX : .signExtendAccumulator, operandSize: s)
        case "lea":
            let s: UInt8 = rng.pick([2, 4, 8])
            var c = RegisterChooser(legacyByte: false)
            let r = c.pick(&rng)
            let base = c.pickAddress(&rng)
            let index: UInt8? = rng.bool() ? c.pickAddress(&rng) : nil
            let displacement = Int32(truncatingIfNeeded: rng.interesting())
            e = Encoding(opcode: [0x8d], regField: r,
                         rm: .memory(base: base, index: index, scale: index == nil ? 1 : rng.pick([1, 2, 4, 8]),
                                     displacement: displacement))
            sized(&e, s, legacyByte: false)
            if rng.below(4) == 0 { e.legacyPrefixes.append(0x67) }
            insn = e.instruction(.lea, operandSize: s, destination: e.gpr(r, size: s), source: .memory(size: 0))
        case "flagOps":
            let which = rng.below(5)
            e = Encoding(opcode: [[0xf8, 0xf9, 0xf5, 0x9e, 0x9f][which]])
            insn = e.instruction([Operation.clc, .stc, .cmc, .sahf, .lahf][which], operandSize: 4)
            if which >= 3 { insn.operandSize = 4 }
        case "stack":
            let which = rng.below(8)  // push r, pop r, push imm8, push imm32, push/pop m, [rsp] forms, popf, xlat
            var c = RegisterChooser(legacyByte: false)
            let s: UInt8 = rng.below(5) == 0 ? 2 : 8
            switch which {
            case 5:
                // push/pop [rsp + disp8]: POP computes the address after incrementing rSP.
                let push = rng.bool()
                let displacement = Int32(rng.below(16) * 8) - 0x40
                e = Encoding(opcode: [push ? 0xff : 0x8f], regField: push ? 6 : 0,
                             rm: .memory(base: 4, index: nil, scale: 1, displacement: displacement))
                if s == 2 { e.legacyPrefixes.append(0x66) }
                insn = push ? e.instruction(.push, operandSize: s, source: .memory(size: s))
                    : e.instruction(.pop, operandSize: s, destination: .memory(size: s))
            case 6:
                // POPF of status flags and DF (CPL 3: IF/IOPL would be kept anyway).
                let image = (rng.next() & (F.status | F.df)) | 0x2
                patches.append((regs[4], littleEndian(image, 8)))
                e = Encoding(opcode: [0x9d])
                insn = e.instruction(.popf, operandSize: 8)
            case 7:
                regs[3] = layout.hotCenter - 0x80
                e = Encoding(opcode: [0xd7])
                insn = e.instruction(.xlat, operandSize: 1, destination: .register(0, size: 1))
                insn.memory = MemoryOperand(segment: 3, base: 3)
            case 0, 1:
                let r = c.pick(&rng)
                e = Encoding(opcode: [which == 0 ? 0x50 : 0x58], opcodeRegister: r)
                if s == 2 { e.legacyPrefixes.append(0x66) }
                insn = which == 0
                    ? e.instruction(.push, operandSize: s, source: .register(r, size: s))
                    : e.instruction(.pop, operandSize: s, destination: .register(r, size: s))
            case 2, 3:
                let value = rng.interesting()
                let count = which == 2 ? 1 : (s == 2 ? 2 : 4)
                e = Encoding(opcode: [which == 2 ? 0x6a : 0x68], immediate: littleEndian(value, count))
                if s == 2 { e.legacyPrefixes.append(0x66) }
                let imm: UInt64 = which == 2 ? UInt64(bitPattern: Int64(Int8(truncatingIfNeeded: value)))
                    : (s == 2 ? value & 0xffff : UInt64(bitPattern: Int64(Int32(truncatingIfNeeded: value))))
                insn = e.instruction(.push, operandSize: s, source: .immediate(size: s), immediate: imm)
            default:
                let push = rng.bool()
                let rm = memory(&rng, &c, &regs)
                e = Encoding(opcode: [push ? 0xff : 0x8f], regField: push ? 6 : 0, rm: rm)
                if s == 2 { e.legacyPrefixes.append(0x66) }
                insn = push ? e.instruction(.push, operandSize: s, source: .memory(size: s))
                    : e.instruction(.pop, operandSize: s, destination: .memory(size: s))
            }
        case "string":
            let which = rng.below(5)  // movs cmps stos lods scas
            let op = [Operation.movs, .cmps, .stos, .lods, .scas][which]
            let opcode: UInt8 = [0xa4, 0xa6, 0xaa, 0xac, 0xae][which] + (size == 1 ? 0 : 1)
            let rep = rng.below(3)  // none, F3, F2
            e = Encoding(opcode: [opcode])
            if rep == 1 { e.legacyPrefixes.append(0xf3) }
            if rep == 2 { e.legacyPrefixes.append(0xf2) }
            if size == 2 { e.legacyPrefixes.append(0x66) }
            if size == 8 { e.rexW = true }
            let backward = rng.bool()
            let flagsWithDirection = backward ? flagsIn | F.df : flagsIn
            regs[6] = layout.hotCenter - 0x100 + UInt64(rng.below(0x40))
            regs[7] = layout.hotCenter + 0x100 + UInt64(rng.below(0x40))
            regs[1] = UInt64(rng.below(12))
            if which == 1 || which == 4, rng.bool() {
                // Mostly-equal data so REPE runs a while.
                regs[0] = 0
            }
            insn = e.instruction(op, operandSize: size,
                                 repetition: rep == 0 ? .none : (rep == 1 ? .repeatWhileEqual : .repeatWhileNotEqual))
            // STOS and SCAS have only the ES:rDI operand; the decoder names ES as their segment.
            if op == .stos || op == .scas { insn.memory.segment = 0 }
            return DifferentialCase(family: family, encoding: e, instruction: insn, registers: regs,
                                    flags: flagsWithDirection, undefinedFlags: 0)
        case "cmpxchgDouble":
            let wide = rng.bool()
            var c = RegisterChooser(legacyByte: false)
            for r: UInt8 in [0, 1, 2, 3] { c.taken.insert(r) }
            let rm = memory(&rng, &c, &regs)
            if case .memory(let base, let index, let scale, let displacement) = rm {
                // Align the address (16-byte form needs it), then sometimes make the compare succeed.
                let offset = Int64(displacement) + Int64(index.map { regs[Int($0)] } ?? 0) * Int64(scale)
                let address = (regs[Int(base)] &+ UInt64(bitPattern: offset)) & ~15
                regs[Int(base)] = address &- UInt64(bitPattern: offset)
                if rng.bool() {
                    let expected = wide ? littleEndian(regs[0], 8) + littleEndian(regs[2], 8)
                        : littleEndian(regs[0], 4) + littleEndian(regs[2], 4)
                    patches.append((address, expected))
                }
                if wide && rng.below(8) == 0 { regs[Int(base)] &+= 8 }  // misaligned → #GP
            }
            e = Encoding(opcode: [0x0f, 0xc7], regField: 1, rm: rm)
            e.rexW = wide
            insn = e.instruction(.cmpxchgDouble, operandSize: wide ? 16 : 8, destination: .memory(size: wide ? 16 : 8))
        default:  // "sse"
            var c = RegisterChooser(legacyByte: false)
            let d = UInt8(rng.below(16))
            let which = rng.below(9)
            let rm: RMOperand = useMemory ? memory(&rng, &c, &regs) : .register(UInt8(rng.below(16)))
            var xmm = (0..<16).map { _ in (low: rng.interesting(), high: rng.interesting()) }
            if useMemory, case .memory(let base, let index, let scale, let displacement) = rm, which != 1, which != 6, which != 7, which != 8 {
                let offset = Int64(displacement) + Int64(index.map { regs[Int($0)] } ?? 0) * Int64(scale)
                let address = (regs[Int(base)] &+ UInt64(bitPattern: offset)) & ~15
                regs[Int(base)] = address &- UInt64(bitPattern: offset)
            }
            let xmmOperand: Operand = useMemory ? .memory(size: 16) : Operand(.xmm, index: { if case .register(let r) = rm { return r } else { return 0 } }(), size: 16)
            switch which {
            case 0, 2, 3, 4, 5:
                // MOVDQA load, PXOR, POR, PAND, PANDN (66 0F 6F / EF / EB / DB / DF)
                let op = [Operation.movAligned128, .movAligned128, .pxor, .por, .pand, .pandn][which]
                e = Encoding(legacyPrefixes: [0x66], opcode: [0x0f, [0x6f, 0x6f, 0xef, 0xeb, 0xdb, 0xdf][which]], regField: d, rm: rm)
                insn = e.instruction(op, operandSize: 16, destination: Operand(.xmm, index: d, size: 16), source: xmmOperand)
            case 1:
                // MOVDQU store (F3 0F 7F) or load (F3 0F 6F), any alignment.
                let store = rng.bool()
                e = Encoding(legacyPrefixes: [0xf3], opcode: [0x0f, store ? 0x7f : 0x6f], regField: d, rm: rm)
                insn = store
                    ? e.instruction(.movUnaligned128, operandSize: 16, destination: xmmOperand, source: Operand(.xmm, index: d, size: 16))
                    : e.instruction(.movUnaligned128, operandSize: 16, destination: Operand(.xmm, index: d, size: 16), source: xmmOperand)
            case 6:
                // PSHUFD
                let order = UInt64(rng.below(256))
                if useMemory { return nil }
                e = Encoding(legacyPrefixes: [0x66], opcode: [0x0f, 0x70], regField: d, rm: rm, immediate: [UInt8(order)])
                insn = e.instruction(.pshufd, operandSize: 16, destination: Operand(.xmm, index: d, size: 16),
                                     source: xmmOperand, source2: .immediate(size: 1), immediate: order)
            case 7:
                // PUNPCKLQDQ (register form)
                if useMemory { return nil }
                e = Encoding(legacyPrefixes: [0x66], opcode: [0x0f, 0x6c], regField: d, rm: rm)
                insn = e.instruction(.punpcklqdq, operandSize: 16, destination: Operand(.xmm, index: d, size: 16), source: xmmOperand)
            default:
                // MOVD/MOVQ xmm ← r/m32/64 (66 0F 6E) or r/m ← xmm (66 0F 7E)
                let s: UInt8 = rng.pick([4, 8])
                let toXMM = rng.bool()
                let gprRM: RMOperand = useMemory ? rm : .register(c.pick(&rng))
                e = Encoding(legacyPrefixes: [0x66], rexW: s == 8, opcode: [0x0f, toXMM ? 0x6e : 0x7e], regField: d, rm: gprRM)
                let other = e.rmOperand(size: s)
                insn = toXMM
                    ? e.instruction(.movdq, operandSize: s, destination: Operand(.xmm, index: d, size: s), source: other)
                    : e.instruction(.movdq, operandSize: s, destination: other, source: Operand(.xmm, index: d, size: s))
            }
            if which == 1 || which == 8, useMemory { xmm[Int(d)] = (rng.next(), rng.next()) }
            return DifferentialCase(family: family, encoding: e, instruction: insn, registers: regs, flags: flagsIn,
                                    xmm: xmm)
        }
        return DifferentialCase(family: family, encoding: e, instruction: insn, registers: regs, flags: flagsIn,
                                undefinedFlags: undefined, patches: patches)
    }

    /// The address a memory operand designates with `regs`.
    func address(of rm: RMOperand, _ regs: [UInt64]) -> UInt64 {
        guard case .memory(let base, let index, let scale, let displacement) = rm else { return 0 }
        let scaled = (index.map { regs[Int($0)] } ?? 0) &* UInt64(scale)
        return regs[Int(base)] &+ scaled &+ UInt64(bitPattern: Int64(displacement))
    }
}

/// Operand-size masks without reaching into the interpreter.
enum X86MachineMask {
    static func of(_ size: UInt8) -> UInt64 { size >= 8 ? .max : (UInt64(1) << (UInt64(size) * 8)) - 1 }
}
