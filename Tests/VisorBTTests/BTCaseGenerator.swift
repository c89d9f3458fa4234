// Generated x86 code for the bt-vs-interp differential tests: a compact encoder (bytes only:
// both sides decode them with the project's decoder) and generators for single instructions of
// every family the translator covers and for random blocks of them with branches, loops and
// memory accesses into a scratch page. Every case carries the flags the SDM leaves undefined
// for it, which the comparison masks (and nothing else).

import VisorX86Decode

/// SplitMix64: small, seedable test inputs.
struct BTRandom {
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

    /// Values biased to the edges: 0, ±1, sign boundaries, powers of two, all ones.
    mutating func interesting() -> UInt64 {
        switch below(8) {
        case 0: return pick([0, 1, .max, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff, 0x7fff_ffff, 0x8000_0000,
                             0xffff_ffff, 0x7fff_ffff_ffff_ffff, 0x8000_0000_0000_0000, 0x100])
        case 1: return 1 << UInt64(below(64))
        case 2: return (1 << UInt64(below(64))) &- 1
        case 3: return UInt64(below(256))
        case 4: return 0 &- UInt64(below(256))
        default: return next()
        }
    }
}

/// RFLAGS status bits.
enum BTFlag {
    static let cf: UInt64 = 1 << 0, pf: UInt64 = 1 << 2, af: UInt64 = 1 << 4, zf: UInt64 = 1 << 6
    static let sf: UInt64 = 1 << 7, of: UInt64 = 1 << 11
    static let status: UInt64 = cf | pf | af | zf | sf | of
}

/// Where generated code and data live (all below 64 KiB, so that 16-bit code reaches them).
enum BTDiffLayout {
    /// Code region (two pages, filled with HLT around the generated code).
    static let code: UInt64 = 0x1000
    static let codeBytes = 0x2000
    /// Where a single-instruction case is placed (mid-page: branches either way stay in it).
    static let single: UInt64 = 0x1800
    /// The stack page and the stack pointer in it.
    static let stack: UInt64 = 0x7000
    static let stackPointer: UInt64 = 0x7800
    /// The scratch page memory operands address.
    static let scratch: UInt64 = 0xa000
}

/// The r/m half of a ModRM: a register or a prepared memory form (reg field left 0).
enum BTRM {
    case register(UInt8)
    /// ModRM (reg field 0), optional SIB and displacement bytes; REX.X/B; the 0x67 prefix;
    /// a RIP-relative target (its displacement is the 4 bytes after ModRM, fixed up at encoding).
    case memory(modrm: UInt8, sib: UInt8?, displacement: [UInt8], rexX: Bool, rexB: Bool,
                addressPrefix: Bool, ripTarget: UInt64?, segment: UInt8?)
}

/// One instruction's fields; `bytes(at:mode:)` lays them out.
struct BTInstruction {
    var prefixes: [UInt8] = []
    var rexW = false, rexR = false, rexX = false, rexB = false, forceREX = false
    var opcode: [UInt8]
    var modrm: [UInt8] = []
    var ripTarget: UInt64? = nil
    var immediate: [UInt8] = []
    /// A relative branch: its target and displacement width (1, 2 or 4 bytes).
    var branch: (target: UInt64, width: Int)? = nil
    /// Flags the SDM leaves undefined after this instance.
    var undefined: UInt64 = 0

    init(_ opcode: [UInt8]) { self.opcode = opcode }

    var rex: UInt8? {
        let bits: UInt8 = (rexW ? 8 : 0) | (rexR ? 4 : 0) | (rexX ? 2 : 0) | (rexB ? 1 : 0)
        return bits != 0 || forceREX ? 0x40 | bits : nil
    }

    var length: Int { prefixes.count + (rex == nil ? 0 : 1) + opcode.count + modrm.count + immediate.count + (branch?.width ?? 0) }

    /// Sets ModRM from a reg field (a register or /digit) and an r/m operand.
    mutating func setModRM(reg: UInt8, _ rm: BTRM) {
        if reg >= 8 { rexR = true }
        switch rm {
        case .register(let r):
            if r >= 8 { rexB = true }
            modrm = [0xc0 | (reg & 7) << 3 | (r & 7)]
        case .memory(let m, let sib, let displacement, let x, let b, let prefix, let target, let segment):
            if let segment { prefixes.append(segment) }
            modrm = [m | (reg & 7) << 3] + (sib.map { [$0] } ?? []) + displacement
            if x { rexX = true }
            if b { rexB = true }
            if prefix { prefixes.append(0x67) }
            ripTarget = target
        }
    }

    func bytes(at rip: UInt64, mode: CodeMode) -> [UInt8] {
        var out = prefixes
        if let rex { out.append(rex) }
        out += opcode
        let modrmAt = out.count
        out += modrm
        out += immediate
        let end = rip &+ UInt64(length)
        if let target = ripTarget {
            let d = target &- end
            for i in 0..<4 { out[modrmAt + 1 + i] = UInt8(truncatingIfNeeded: d >> (8 * UInt64(i))) }
        }
        if let (target, width) = branch {
            let d = target &- end
            for i in 0..<width { out.append(UInt8(truncatingIfNeeded: d >> (8 * UInt64(i)))) }
        }
        return out
    }
}

/// Little-endian bytes of the low `count` bytes of `value`.
func btBytes(_ value: UInt64, _ count: Int) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
}

func btHex(_ bytes: [UInt8]) -> String {
    bytes.map { b in let s = String(b, radix: 16); return s.count == 1 ? "0" + s : s }.joined(separator: " ")
}

/// Builds one instance: picks sizes, registers (distinct full registers), memory operands whose
/// address registers it sets so that the access lands in the scratch page, and values.
struct BTCaseBuilder {
    let mode: CodeMode
    var rng: BTRandom
    /// Initial registers; address registers are overwritten by `memory`.
    var regs: [UInt64]
    /// Full registers already given a role.
    var taken: Set<UInt8>
    /// Byte operands without REX (AH..BH reachable; no register above 7 anywhere).
    var legacyByte = false
    /// Registers that must not be picked (blocks: RSP, the scratch pointer, the loop counter).
    let reserved: Set<UInt8>
    /// In blocks: the register holding `scratchPointer` (memory operands are [it + disp]).
    let scratchRegister: UInt8?
    static let scratchPointer = BTDiffLayout.scratch + 0x800
    /// 8-byte values to place in memory before the run (indirect branch targets).
    var pokes: [(address: UInt64, value: UInt64)] = []
    /// Whether the translator must run the instruction (false for deliberately refused cases).
    var expectTranslated = true
    /// The linear address the last memory operand reaches.
    var lastTarget: UInt64 = 0

    init(mode: CodeMode, rng: BTRandom, reserved: Set<UInt8> = [], scratchRegister: UInt8? = nil) {
        self.mode = mode
        self.reserved = reserved
        self.scratchRegister = scratchRegister
        var r = rng
        regs = (0..<16).map { _ in
            let v = r.interesting()
            return mode == .bits64 ? v : v & 0xffff_ffff
        }
        self.rng = r
        regs[4] = BTDiffLayout.stackPointer
        taken = reserved
    }

    var registerCount: UInt8 { mode == .bits64 && !legacyByte ? 16 : 8 }

    /// The full register an operand index names at `size`.
    func full(_ index: UInt8, size: UInt8) -> UInt8 { size == 1 && legacyByte && index >= 4 ? index - 4 : index }

    /// A register operand of `size`, distinct from those taken (rSP allowed unless reserved).
    mutating func register(size: UInt8) -> UInt8 {
        // Single instructions: now and then a register already in use (ADD AH, AL; XOR EAX, EAX;
        // SHL CL, CL; an operand that is also an address register) — not in blocks, whose
        // reserved registers must stay, nor beside the stack family's RSP.
        if scratchRegister == nil && !taken.contains(4) && rng.below(6) == 0 {
            return UInt8(rng.below(Int(registerCount)))
        }
        for _ in 0..<64 {
            let r = UInt8(rng.below(Int(registerCount)))
            let f = full(r, size: size)
            if !taken.contains(f) { taken.insert(f); return r }
        }
        // Everything is taken (cannot happen with the families' needs); reuse a free-able one.
        return 0
    }

    /// Operand-size prefixes for `size` in this mode.
    func sized(_ insn: inout BTInstruction, _ size: UInt8) {
        switch (mode, size) {
        case (.bits16, 4), (.bits32, 2), (.bits64, 2): insn.prefixes.append(0x66)
        case (.bits64, 8): insn.rexW = true
        case (.bits64, 1): if !legacyByte { insn.forceREX = true }
        default: break
        }
    }

    /// Operand sizes this mode has, from `sizes`.
    mutating func size(_ sizes: [UInt8]) -> UInt8 {
        let s = rng.pick(sizes.filter { $0 != 8 || mode == .bits64 })
        legacyByte = s == 1 && (mode != .bits64 || rng.bool())
        return s
    }

    /// A target for a `size`-byte access in the scratch page, never crossing it.
    mutating func scratchTarget(size: Int) -> UInt64 {
        BTDiffLayout.scratch + 0x10 + UInt64(rng.below(0x1000 - 0x20 - size))
    }

    /// A memory operand whose effective address (of `size` bytes) is `target` (default: a
    /// random spot in the scratch page); sets the address registers.
    /// FS and GS bases in the differential machines (other segments are based at 0).
    static let fsBase: UInt64 = 0x100, gsBase: UInt64 = 0x3000

    mutating func memory(size: Int, target fixed: UInt64? = nil) -> BTRM {
        var target = fixed ?? scratchTarget(size: size)
        if let b = scratchRegister { return blockMemory(b, target: target) }
        if fixed == nil {
            // Now and then an access the callouts refuse (the interpreter then runs it): one
            // crossing from the scratch page into the next, or one beyond RAM (MMIO).
            switch rng.below(40) {
            case 0 where size > 1:
                target = BTDiffLayout.scratch + 0x1000 - UInt64(1 + rng.below(size - 1))
                expectTranslated = false
            case 1 where mode == .bits64:
                target = 0xfed0_0000 + UInt64(rng.below(0x100))
                expectTranslated = false
            default: break
            }
        }
        lastTarget = target
        // A segment override now and then: FS and GS have bases, the others none.
        let segment: UInt8? = rng.below(4) == 0 ? rng.pick([0x26, 0x36, 0x3e, 0x64, 0x65]) : nil
        if segment == 0x64 { target &-= Self.fsBase }
        if segment == 0x65 { target &-= Self.gsBase }
        let plain = memoryAt(size: size, target: target)
        guard let segment, case .memory(let m, let sib, let d, let x, let b, let p, let t, _) = plain else { return plain }
        return .memory(modrm: m, sib: sib, displacement: d, rexX: x, rexB: b, addressPrefix: p, ripTarget: t, segment: segment)
    }

    private mutating func memoryAt(size: Int, target: UInt64) -> BTRM {
        let alternate = rng.below(4) == 0
        let addressSize: Int
        switch mode {
        case .bits64: addressSize = alternate ? 4 : 8
        case .bits32: addressSize = alternate ? 2 : 4
        case .bits16: addressSize = alternate ? 4 : 2
        }
        if addressSize == 2 { return memory16(target: target, prefix: alternate) }
        let bits64 = addressSize == 8
        let mask: UInt64 = bits64 ? .max : 0xffff_ffff
        // Garbage above bit 31 of 32-bit address registers in 64-bit mode (ignored by the CPU).
        func garbage() -> UInt64 { mode == .bits64 && !bits64 ? rng.next() << 32 : 0 }
        var dispKind = rng.below(3)  // none, disp8, disp32
        var displacement: UInt64 = dispKind == 1 ? UInt64(bitPattern: Int64(Int8(truncatingIfNeeded: rng.next())))
            : dispKind == 2 ? (rng.bool() ? UInt64(bitPattern: Int64(Int32(truncatingIfNeeded: rng.next())))
                                          : UInt64(bitPattern: Int64(rng.below(0x2000) - 0x1000)))
            : 0
        func dispBytes() -> [UInt8] { dispKind == 1 ? btBytes(displacement, 1) : dispKind == 2 ? btBytes(displacement, 4) : [] }
        func mod(_ base: UInt8) -> UInt8 {
            if dispKind == 0 && base & 7 == 5 { dispKind = 1; displacement = 0 }
            return dispKind == 0 ? 0 : dispKind == 1 ? 0x40 : 0x80
        }
        func addressRegister(excluding: UInt8? = nil) -> UInt8? {
            for _ in 0..<64 {
                let r = UInt8(rng.below(Int(registerCount)))
                if !taken.contains(r) && r != excluding { taken.insert(r); return r }
            }
            return nil
        }
        let prefix = alternate
        let form = rng.below(10)
        if form == 9 && mode == .bits64 {
            // RIP-relative (EIP-relative with 0x67: the sum is truncated to 32 bits).
            return .memory(modrm: 0x05, sib: nil, displacement: [0, 0, 0, 0], rexX: false, rexB: false,
                           addressPrefix: prefix, ripTarget: target, segment: nil)
        }
        if form == 8 {
            // An absolute disp32.
            if mode == .bits64 {
                return .memory(modrm: 0x04, sib: 0x25, displacement: btBytes(target, 4), rexX: false, rexB: false,
                               addressPrefix: prefix, ripTarget: nil, segment: nil)
            }
            return .memory(modrm: 0x05, sib: nil, displacement: btBytes(target, 4), rexX: false, rexB: false,
                           addressPrefix: prefix, ripTarget: nil, segment: nil)
        }
        let scale = UInt64(rng.pick([1, 2, 4, 8]))
        let ss: UInt8 = scale == 8 ? 3 : scale == 4 ? 2 : scale == 2 ? 1 : 0
        if form == 7, let index = addressRegister(excluding: 4) {
            // index * scale + disp32, no base.
            let i = UInt64(rng.below(0x200))
            regs[Int(index)] = i | garbage()
            let d = (target &- i &* scale) & mask
            return .memory(modrm: 0x04, sib: ss << 6 | (index & 7) << 3 | 5, displacement: btBytes(d, 4),
                           rexX: index >= 8, rexB: false, addressPrefix: prefix, ripTarget: nil, segment: nil)
        }
        guard let base = addressRegister() else {
            return .memory(modrm: 0x04, sib: 0x25, displacement: btBytes(target, 4), rexX: false, rexB: false,
                           addressPrefix: prefix, ripTarget: nil, segment: nil)
        }
        if form >= 4, let index = addressRegister(excluding: 4) {
            let i = rng.bool() ? UInt64(rng.below(0x100)) : rng.interesting() & mask
            regs[Int(index)] = i | garbage()
            let m = mod(base)
            regs[Int(base)] = ((target &- displacement &- i &* scale) & mask) | garbage()
            return .memory(modrm: m | 4, sib: ss << 6 | (index & 7) << 3 | (base & 7), displacement: dispBytes(),
                           rexX: index >= 8, rexB: base >= 8, addressPrefix: prefix, ripTarget: nil, segment: nil)
        }
        let m = mod(base)
        regs[Int(base)] = ((target &- displacement) & mask) | garbage()
        if base & 7 == 4 {
            return .memory(modrm: m | 4, sib: 0x24, displacement: dispBytes(), rexX: false, rexB: base >= 8,
                           addressPrefix: prefix, ripTarget: nil, segment: nil)
        }
        return .memory(modrm: m | (base & 7), sib: nil, displacement: dispBytes(), rexX: false, rexB: base >= 8,
                       addressPrefix: prefix, ripTarget: nil, segment: nil)
    }

    /// A 16-bit-addressing operand ([BX+SI], [BP+DI+disp8], [disp16] ...).
    mutating func memory16(target: UInt64, prefix: Bool) -> BTRM {
        let forms: [[UInt8]] = [[3, 6], [3, 7], [5, 6], [5, 7], [6], [7], [5], [3]]
        let rm = UInt8(rng.below(8))
        let registers = forms[Int(rm)]
        let modKind = rng.below(3)
        if registers.contains(where: { taken.contains($0) }) || (modKind == 0 && rm == 6) {
            // [disp16]
            return .memory(modrm: 0x06, sib: nil, displacement: btBytes(target, 2), rexX: false, rexB: false,
                           addressPrefix: prefix, ripTarget: nil, segment: nil)
        }
        for r in registers { taken.insert(r) }
        let displacement: UInt64 = modKind == 0 ? 0 : modKind == 1 ? UInt64(bitPattern: Int64(Int8(truncatingIfNeeded: rng.next())))
            : rng.next() & 0xffff
        var sum: UInt64 = 0
        for (k, r) in registers.enumerated() {
            let high = rng.next() & 0xffff_0000 & (mode == .bits64 ? .max : 0xffff_ffff)
            let low = k == registers.count - 1 ? (target &- displacement &- sum) & 0xffff : rng.next() & 0xffff
            sum &+= low
            regs[Int(r)] = high | low
        }
        let d = modKind == 1 ? btBytes(displacement, 1) : modKind == 2 ? btBytes(displacement, 2) : []
        return .memory(modrm: UInt8(modKind) << 6 | rm, sib: nil, displacement: d, rexX: false, rexB: false,
                       addressPrefix: prefix, ripTarget: nil, segment: nil)
    }

    /// In blocks: [scratch register + disp], RIP-relative or absolute, landing on `target`.
    mutating func blockMemory(_ b: UInt8, target: UInt64) -> BTRM {
        let d = target &- Self.scratchPointer
        switch (mode, rng.below(4)) {
        case (.bits64, 0):
            return .memory(modrm: 0x05, sib: nil, displacement: [0, 0, 0, 0], rexX: false, rexB: false,
                           addressPrefix: false, ripTarget: target, segment: nil)
        case (.bits16, _):
            // [BX/SI/DI/BP + disp16]
            let rm: UInt8 = b == 3 ? 7 : b == 6 ? 4 : b == 7 ? 5 : 6
            return .memory(modrm: 0x80 | rm, sib: nil, displacement: btBytes(d, 2), rexX: false, rexB: false,
                           addressPrefix: false, ripTarget: nil, segment: nil)
        case (.bits64, 1):
            return .memory(modrm: 0x04, sib: 0x25, displacement: btBytes(target, 4), rexX: false, rexB: false,
                           addressPrefix: false, ripTarget: nil, segment: nil)
        case (.bits32, 1):
            return .memory(modrm: 0x05, sib: nil, displacement: btBytes(target, 4), rexX: false, rexB: false,
                           addressPrefix: false, ripTarget: nil, segment: nil)
        default:
            let short = Int64(bitPattern: d) >= -128 && Int64(bitPattern: d) < 128 && rng.bool()
            return .memory(modrm: (short ? 0x40 : 0x80) | (b & 7), sib: nil,
                           displacement: short ? btBytes(d, 1) : btBytes(d, 4), rexX: false, rexB: b >= 8,
                           addressPrefix: false, ripTarget: nil, segment: nil)
        }
    }
}


/// The instruction families the translator covers (`BlockTranslator.covers`).
enum BTFamily: CaseIterable {
    case alu, aluImmediate, mov, unary, shift, imul, setcc, cmov, extendMove, lea, accumulatorExtend, xchg, nop
    case branch, stack
}

extension BTCaseBuilder {
    /// A register or (half the time) memory r/m operand of `size`.
    mutating func rm(size: UInt8) -> BTRM {
        rng.bool() ? memory(size: Int(size)) : .register(register(size: size))
    }

    /// A value of `count` immediate bytes.
    mutating func immediate(_ count: Int) -> [UInt8] { btBytes(rng.interesting(), count) }

    /// A branch target in the code region (filled with HLT around generated code).
    /// Never inside the single-instruction case's own bytes.
    mutating func codeTarget() -> UInt64 {
        while true {
            let t = BTDiffLayout.code + UInt64(rng.below(BTDiffLayout.codeBytes))
            if t < BTDiffLayout.single || t >= BTDiffLayout.single + 16 { return t }
        }
    }

    /// One instance of `family`, placed at `rip`; nil when the family has no form in this mode.
    mutating func make(_ family: BTFamily, at rip: UInt64) -> BTInstruction? {
        let inBlock = scratchRegister != nil
        switch family {
        case .alu:
            let n = rng.below(9)  // 8 = TEST
            let s = size([1, 2, 4, 8])
            let r = register(size: s)
            let operand = rm(size: s)
            let reverse = n != 8 && rng.bool()
            var insn = BTInstruction([(n == 8 ? 0x84 : UInt8(n * 8)) + (reverse ? 2 : 0) + (s == 1 ? 0 : 1)])
            insn.setModRM(reg: r, operand)
            sized(&insn, s)
            // AND, OR, XOR, TEST: AF undefined (SDM).
            if [1, 4, 6, 8].contains(n) { insn.undefined = BTFlag.af }
            return insn

        case .aluImmediate:
            let n = rng.below(9)
            let s = size([1, 2, 4, 8])
            let immediateSize = s == 1 ? 1 : s == 2 ? 2 : 4
            var insn: BTInstruction
            if rng.below(4) == 0 && !taken.contains(0) {
                taken.insert(0)
                insn = BTInstruction([n == 8 ? (s == 1 ? 0xa8 : 0xa9) : UInt8(n * 8) + (s == 1 ? 4 : 5)])
                insn.immediate = immediate(immediateSize)
            } else {
                let operand = rm(size: s)
                if s != 1 && n != 8 && rng.bool() {
                    insn = BTInstruction([0x83])
                    insn.immediate = immediate(1)
                } else {
                    // (82 is 80's alias outside 64-bit mode.)
                    let byteGroup: UInt8 = mode != .bits64 && rng.bool() ? 0x82 : 0x80
                    insn = BTInstruction([s == 1 ? (n == 8 ? 0xf6 : byteGroup) : (n == 8 ? 0xf7 : 0x81)])
                    insn.immediate = immediate(immediateSize)
                }
                insn.setModRM(reg: n == 8 ? 0 : UInt8(n), operand)
            }
            sized(&insn, s)
            if [1, 4, 6, 8].contains(n) { insn.undefined = BTFlag.af }
            return insn

        case .mov:
            let s = size([1, 2, 4, 8])
            var insn: BTInstruction
            switch rng.below(5) {
            case 4 where scratchRegister == nil && !taken.contains(0):
                // MOV AL/eAX <-> moffs: an absolute offset of the address size.
                taken.insert(0)
                var target = scratchTarget(size: Int(s))
                let alternate = rng.below(4) == 0
                let width = switch mode {
                case .bits64: alternate ? 4 : 8
                case .bits32: alternate ? 2 : 4
                case .bits16: alternate ? 4 : 2
                }
                insn = BTInstruction([(rng.bool() ? 0xa0 : 0xa2) + (s == 1 ? 0 : 1)])
                if alternate { insn.prefixes.append(0x67) }
                if rng.bool() {
                    insn.prefixes.append(0x64)
                    target -= Self.fsBase
                }
                insn.immediate = btBytes(target, width)
            case 0, 1, 4:
                let r = register(size: s)
                let operand = rm(size: s)
                insn = BTInstruction([(rng.bool() ? 0x88 : 0x8a) + (s == 1 ? 0 : 1)])
                insn.setModRM(reg: r, operand)
            case 2:
                let operand = rm(size: s)
                insn = BTInstruction([s == 1 ? 0xc6 : 0xc7])
                insn.setModRM(reg: 0, operand)
                insn.immediate = immediate(s == 1 ? 1 : s == 2 ? 2 : 4)
            default:
                let r = register(size: s)
                insn = BTInstruction([(s == 1 ? 0xb0 : 0xb8) + (r & 7)])
                if r >= 8 { insn.rexB = true }
                insn.immediate = immediate(Int(s))
            }
            sized(&insn, s)
            return insn

        case .unary:
            let digit = UInt8(rng.below(4))  // INC, DEC, NOT, NEG
            let s = size([1, 2, 4, 8])
            var insn: BTInstruction
            if mode != .bits64 && s != 1 && digit < 2 && rng.bool() {
                let r = register(size: s)
                insn = BTInstruction([(digit == 0 ? 0x40 : 0x48) + r])
            } else {
                let operand = rm(size: s)
                insn = BTInstruction([s == 1 ? (digit < 2 ? 0xfe : 0xf6) : (digit < 2 ? 0xff : 0xf7)])
                insn.setModRM(reg: digit, operand)
            }
            sized(&insn, s)
            return insn

        case .shift:
            let digit = UInt8(rng.pick([0, 1, 2, 3, 4, 5, 7]))  // ROL ROR RCL RCR SHL SHR SAR
            let s = size([1, 2, 4, 8])
            let form = rng.below(3)
            var count: UInt64 = 1
            if form == 1 {
                taken.insert(1)
                count = rng.below(4) == 0 ? UInt64(rng.below(256))
                    : UInt64(rng.pick([0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65]))
                if !inBlock { regs[1] = (regs[1] & ~0xff) | count }  // (in blocks CL is what it is)
            } else if form == 2 {
                count = UInt64(rng.below(4) == 0 ? rng.below(256) : rng.pick([0, 1, 2, 7, 8, 9, 16, 17, 31, 32, 63]))
            }
            let operand = rm(size: s)
            var insn = BTInstruction([(form == 0 ? 0xd0 : form == 1 ? 0xd2 : 0xc0) + (s == 1 ? 0 : 1)])
            insn.setModRM(reg: digit, operand)
            if form == 2 { insn.immediate = [UInt8(count)] }
            sized(&insn, s)
            // Undefined (SDM): OF unless the masked count is 1; AF for SHL/SHR/SAR by a nonzero
            // count; CF for SHL/SHR by at least the operand width. A zero masked count changes
            // no flag. In blocks CL is whatever earlier instructions left: assume the worst.
            let shift = digit >= 4
            let masked = count & (s == 8 ? 63 : 31)
            if inBlock && form == 1 {
                insn.undefined = BTFlag.of | (shift ? BTFlag.af : 0) | (digit == 4 || digit == 5 ? BTFlag.cf : 0)
            } else if masked != 0 {
                if masked != 1 { insn.undefined |= BTFlag.of }
                if shift { insn.undefined |= BTFlag.af }
                if (digit == 4 || digit == 5) && masked >= UInt64(s) * 8 { insn.undefined |= BTFlag.cf }
            }
            return insn

        case .imul:
            let s = size([2, 4, 8])
            let r = register(size: s)
            let operand = rm(size: s)
            var insn: BTInstruction
            switch rng.below(3) {
            case 0: insn = BTInstruction([0x0f, 0xaf])
            case 1:
                insn = BTInstruction([0x69])
                insn.immediate = immediate(s == 2 ? 2 : 4)
            default:
                insn = BTInstruction([0x6b])
                insn.immediate = immediate(1)
            }
            insn.setModRM(reg: r, operand)
            sized(&insn, s)
            // SF, ZF, AF, PF undefined after IMUL (SDM); CF and OF are defined.
            insn.undefined = BTFlag.sf | BTFlag.zf | BTFlag.af | BTFlag.pf
            return insn

        case .setcc:
            let s = size([1])
            let operand = rm(size: s)
            var insn = BTInstruction([0x0f, 0x90 + UInt8(rng.below(16))])
            insn.setModRM(reg: 0, operand)
            sized(&insn, s)
            return insn

        case .cmov:
            let s = size([2, 4, 8])
            let r = register(size: s)
            let operand = rm(size: s)
            var insn = BTInstruction([0x0f, 0x40 + UInt8(rng.below(16))])
            insn.setModRM(reg: r, operand)
            sized(&insn, s)
            return insn

        case .extendMove:
            let kind = rng.below(mode == .bits64 ? 5 : 4)
            if kind == 4 {
                // MOVSXD r64, r/m32
                legacyByte = false
                let r = register(size: 8)
                let operand = rm(size: 4)
                var insn = BTInstruction([0x63])
                insn.setModRM(reg: r, operand)
                // MOVSXD with a 32- or 16-bit destination (no REX.W) now and then.
                switch rng.below(4) {
                case 0: break
                case 1: insn.prefixes.append(0x66)
                default: insn.rexW = true
                }
                return insn
            }
            let byteSource = kind < 2
            let s = size([2, 4, 8])
            legacyByte = byteSource && (mode != .bits64 || (s != 8 && rng.bool()))
            let r = register(size: s)
            let operand = rm(size: byteSource ? 1 : 2)
            var insn = BTInstruction([0x0f, [0xb6, 0xbe, 0xb7, 0xbf][kind]])
            insn.setModRM(reg: r, operand)
            sized(&insn, s)
            if byteSource && mode == .bits64 && !legacyByte { insn.forceREX = true }
            return insn

        case .lea:
            let s = size([2, 4, 8])
            let r = register(size: s)
            let operand = memory(size: 1)
            var insn = BTInstruction([0x8d])
            insn.setModRM(reg: r, operand)
            sized(&insn, s)
            return insn

        case .accumulatorExtend:
            guard !taken.contains(0) && !taken.contains(2) else { return nil }  // writes rAX or rDX
            let s = size([2, 4, 8])
            var insn = BTInstruction([rng.bool() ? 0x98 : 0x99])
            sized(&insn, s)
            return insn

        case .xchg:
            let s = size([1, 2, 4, 8])
            var insn: BTInstruction
            if s != 1 && !taken.contains(0) && rng.bool() {
                taken.insert(0)
                let r = register(size: s)  // not 0 (taken): 90 is NOP
                insn = BTInstruction([0x90 + (r & 7)])
                if r >= 8 { insn.rexB = true }
            } else {
                let a = register(size: s)
                let b = register(size: s)
                insn = BTInstruction([s == 1 ? 0x86 : 0x87])
                insn.setModRM(reg: a, .register(b))
            }
            sized(&insn, s)
            return insn

        case .nop:
            switch rng.below(3) {
            case 0: return BTInstruction([0x90])
            case 1: return BTInstruction([0xf3, 0x90])  // PAUSE
            default:
                // The multi-byte NOP 0F 1F /0 (its memory operand is not accessed).
                let s = size([2, 4, 8])
                var insn = BTInstruction([0x0f, 0x1f])
                insn.setModRM(reg: 0, rm(size: s))
                sized(&insn, s)
                return insn
            }

        case .branch:
            let near = rng.bool()
            let width = near ? (mode == .bits16 ? 2 : 4) : 1
            let conditional = rng.below(3) != 0
            var insn: BTInstruction
            if conditional {
                let cc = UInt8(rng.below(16))
                insn = BTInstruction(near ? [0x0f, 0x80 + cc] : [0x70 + cc])
                if rng.below(8) == 0 { insn.prefixes.append(rng.pick([0x2e, 0x3e])) }  // branch hints
            } else {
                insn = BTInstruction([near ? 0xe9 : 0xeb])
            }
            let end = rip &+ UInt64(insn.length + width)
            var target = near ? codeTarget() : end &+ UInt64(bitPattern: Int64(rng.below(256) - 128))
            while !near && target >= rip && target < end { target = end &+ UInt64(bitPattern: Int64(rng.below(256) - 128)) }
            insn.branch = (target, width)
            return insn

        case .stack:
            guard mode == .bits64 else { return nil }
            legacyByte = false
            taken.insert(4)
            if !inBlock {
                // RSP anywhere in its page, or so low that a push crosses into the page below
                // (the callout refuses it; the interpreter makes it).
                if rng.below(16) == 0 {
                    regs[4] = BTDiffLayout.stack + 1 + UInt64(rng.below(7))
                    expectTranslated = false
                } else {
                    regs[4] = BTDiffLayout.stack + 0x100 + UInt64(rng.below(0xd00))
                }
            }
            var insn: BTInstruction
            func target(_ b: inout BTCaseBuilder) -> UInt64 {
                if b.rng.below(16) == 0 {
                    b.expectTranslated = false
                    return (b.rng.next() | 0x8000_0000_0000_0000) & ~0x7fff  // non-canonical
                }
                return b.codeTarget()
            }
            switch rng.below(inBlock ? 3 : 11) {
            case 0, 1:
                let r = UInt8(rng.below(16))
                let pop = rng.bool() && !reserved.contains(r)
                insn = BTInstruction([(pop ? 0x58 : 0x50) + (r & 7)])
                if r >= 8 { insn.rexB = true }
            case 2:
                let byte = rng.bool()
                insn = BTInstruction([byte ? 0x6a : 0x68])
                insn.immediate = immediate(byte ? 1 : 4)
            case 3:
                insn = BTInstruction([0xff])
                insn.setModRM(reg: 6, .register(UInt8(rng.below(16))))
            case 4:
                insn = BTInstruction([0x8f])
                insn.setModRM(reg: 0, .register(UInt8(rng.below(16))))
            case 5:
                insn = BTInstruction([0xe8])
                insn.branch = (codeTarget(), 4)
            case 6, 7:
                let withImmediate = rng.bool()
                insn = BTInstruction([withImmediate ? 0xc2 : 0xc3])
                if withImmediate { insn.immediate = btBytes(UInt64(rng.below(0x200)), 2) }
                pokes.append((regs[4], target(&self)))
            default:
                let call = rng.bool()
                insn = BTInstruction([0xff])
                let destination = target(&self)
                let operand: BTRM
                if rng.below(4) == 0 {
                    // Through the stack: JMP/CALL [rsp + disp8] (the address is taken before
                    // CALL pushes).
                    let d = UInt64(8 * rng.below(8))
                    operand = .memory(modrm: 0x44, sib: 0x24, displacement: [UInt8(d)], rexX: false, rexB: false,
                                      addressPrefix: false, ripTarget: nil, segment: nil)
                    pokes.append((regs[4] + d, destination))
                } else if rng.bool() {
                    let t = scratchTarget(size: 8)
                    operand = memory(size: 8, target: t)
                    pokes.append((t, destination))
                } else {
                    let r = register(size: 8)
                    regs[Int(r)] = destination
                    operand = .register(r)
                }
                insn.setModRM(reg: call ? 2 : 4, operand)
            }
            return insn
        }
    }
}
