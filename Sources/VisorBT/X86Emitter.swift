// An assembler for the host's x86-64: just the encodings the translator emits, each built
// from its parts (prefixes, REX, opcode, ModRM, SIB, displacement, immediate) as the SDM's
// volume 2 chapter 2 describes them, with forward labels for branches inside a block.
//
// Guest state lives in a context block that R15 points to (`BTContext`); memory operands the
// emitter produces are all `[r15 + disp32]` (ModRM mod 10, r/m 111 with REX.B), so no SIB byte
// is ever needed for them.

/// A host general-purpose register, in encoding order.
enum HostRegister: UInt8 {
    case rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15
}

/// One to three opcode bytes, kept inline (an array per emitted instruction was most of the
/// translator's allocations).
struct Opcode {
    let first: UInt8, second: UInt8, third: UInt8
    let count: Int
    init(_ a: UInt8) { first = a; second = 0; third = 0; count = 1 }
    init(_ a: UInt8, _ b: UInt8) { first = a; second = b; third = 0; count = 2 }
    init(_ a: UInt8, _ b: UInt8, _ c: UInt8) { first = a; second = b; third = c; count = 3 }
}

/// A position in the code being assembled that branches can name before it is bound.
struct Label { let id: Int }

/// Host machine code under construction.
struct X86Emitter {
    private(set) var bytes: [UInt8] = []
    /// Bound offset of each label (nil until `bind`).
    private var labelOffsets: [Int?] = []
    /// rel32 fields waiting for their label: (offset of the field, label).
    private var fixups: [(at: Int, label: Int)] = []
    /// rel8 fields waiting for their label.
    private var shortFixups: [(at: Int, label: Int)] = []
    /// Labels some branch goes to, by id.
    private var referenced: [Bool] = []

    init() { bytes.reserveCapacity(512) }

    var count: Int { bytes.count }

    mutating func byte(_ b: UInt8) { bytes.append(b) }
    mutating func bytes(_ bs: [UInt8]) { bytes.append(contentsOf: bs) }
    mutating func opcode(_ op: Opcode) {
        bytes.append(op.first)
        if op.count > 1 { bytes.append(op.second) }
        if op.count > 2 { bytes.append(op.third) }
    }
    mutating func u16(_ v: UInt16) { for i in 0..<2 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt16(i)))) } }
    mutating func u32(_ v: UInt32) { for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(i)))) } }
    mutating func u64(_ v: UInt64) { for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
    mutating func i32(_ v: Int32) { u32(UInt32(bitPattern: v)) }

    // MARK: Prefixes and ModRM

    /// The operand-size prefix and REX for an instruction of operand `size` (1, 2, 4, 8) whose
    /// ModRM names `reg` and `rm` (and SIB `index`). A REX is forced for byte operations on
    /// SPL/BPL/SIL/DIL, which without one would mean AH/CH/DH/BH.
    private mutating func prefixes(size: UInt8, reg: UInt8, rm: UInt8, index: UInt8 = 0, rmIsRegister: Bool) {
        if size == 2 { byte(0x66) }
        var rex: UInt8 = 0
        if size == 8 { rex |= 8 }
        if reg & 8 != 0 { rex |= 4 }
        if index & 8 != 0 { rex |= 2 }
        if rm & 8 != 0 { rex |= 1 }
        let needsRexForBytes = size == 1 && (reg >= 4 || (rmIsRegister && rm >= 4))
        if rex != 0 || needsRexForBytes { byte(0x40 | rex) }
    }

    /// SIB's scale field for an index scaled by `scale` (1, 2, 4 or 8).
    private static func sibScaleBits(_ scale: UInt8) -> UInt8 { scale == 8 ? 3 : scale == 4 ? 2 : scale == 2 ? 1 : 0 }

    /// `opcode` with ModRM register-direct: reg field `reg` (a register or an opcode extension),
    /// r/m register `rm`, at operand `size`.
    mutating func registerForm(_ opcode: Opcode, size: UInt8, reg: UInt8, rm: HostRegister) {
        prefixes(size: size, reg: reg, rm: rm.rawValue, rmIsRegister: true)
        self.opcode(opcode)
        byte(0xc0 | (reg & 7) << 3 | (rm.rawValue & 7))
    }

    /// Where R15 points in translated code: this many bytes into the context block, so that
    /// an 8-bit displacement reaches the block's first 256 bytes (the guest's registers, RIP,
    /// the flags' slots, the probes' masks and generations, the exit's address). Every
    /// `[r15 + disp]` the emitter makes takes a context offset (`BTContext`) and subtracts it.
    static let contextBias: Int32 = 128

    /// `opcode` with a memory operand `[r15 + disp]`, reg field `reg`, at operand `size`.
    mutating func contextForm(_ opcode: Opcode, size: UInt8, reg: UInt8, disp: Int32) {
        prefixes(size: size, reg: reg, rm: HostRegister.r15.rawValue, rmIsRegister: false)
        self.opcode(opcode)
        contextDisplacement(reg: reg, disp)
    }

    /// ModRM (and displacement) for the context block's byte `offset`, `[r15 + offset -
    /// contextBias]`, with reg field `reg`: an 8-bit displacement when it fits, which keeps hot
    /// code short.
    private mutating func contextDisplacement(reg: UInt8, _ offset: Int32) {
        let disp = offset - Self.contextBias
        if let short = Int8(exactly: disp) {
            byte(0x40 | (reg & 7) << 3 | 7)
            byte(UInt8(bitPattern: short))
        } else {
            byte(0x80 | (reg & 7) << 3 | 7)
            i32(disp)
        }
    }

    // MARK: Moves

    /// MOV reg64, [r15 + disp].
    mutating func load(_ reg: HostRegister, disp: Int32) {
        contextForm(Opcode(0x8b), size: 8, reg: reg.rawValue, disp: disp)
    }

    /// MOV [r15 + disp], reg at `size` bytes (only those bytes are written).
    mutating func store(_ reg: HostRegister, disp: Int32, size: UInt8) {
        contextForm(Opcode(size == 1 ? 0x88 : 0x89), size: size, reg: reg.rawValue, disp: disp)
    }

    /// MOVZX reg32, byte [r15 + disp].
    mutating func loadByte(_ reg: HostRegister, disp: Int32) {
        contextForm(Opcode(0x0f, 0xb6), size: 4, reg: reg.rawValue, disp: disp)
    }

    /// MOV reg, imm: the shortest form that gives `value` in all 64 bits.
    mutating func moveImmediate(_ reg: HostRegister, _ value: UInt64) {
        if value <= 0xffff_ffff {
            if reg.rawValue & 8 != 0 { byte(0x41) }
            byte(0xb8 | (reg.rawValue & 7))
            u32(UInt32(value))
        } else if Int64(bitPattern: value) >= Int64(Int32.min) && Int64(bitPattern: value) < 0 {
            registerForm(Opcode(0xc7), size: 8, reg: 0, rm: reg)
            u32(UInt32(truncatingIfNeeded: value))
        } else {
            byte(0x48 | (reg.rawValue >> 3))
            byte(0xb8 | (reg.rawValue & 7))
            u64(value)
        }
    }

    /// MOV dst, src (64-bit).
    mutating func move(_ dst: HostRegister, _ src: HostRegister) {
        registerForm(Opcode(0x89), size: 8, reg: src.rawValue, rm: dst)
    }

    /// MOV r32, r32 of a register onto itself: clears bits 63:32 (flags untouched).
    mutating func zeroExtend32(_ reg: HostRegister) {
        registerForm(Opcode(0x89), size: 4, reg: reg.rawValue, rm: reg)
    }

    /// MOVZX reg32, reg8 / reg16 (`from` 1 or 2): the low bytes, zero-extended (flags untouched).
    mutating func zeroExtend(_ reg: HostRegister, from size: UInt8) {
        switch size {
        case 1:
            // SPL, BPL, SIL, DIL need a REX even when nothing else does.
            if reg.rawValue >= 4 && reg.rawValue < 8 { byte(0x40) }
            registerForm(Opcode(0x0f, 0xb6), size: 4, reg: reg.rawValue, rm: reg)
        case 2: registerForm(Opcode(0x0f, 0xb7), size: 4, reg: reg.rawValue, rm: reg)
        case 4: zeroExtend32(reg)
        default: break
        }
    }

    /// MOVSX / MOVSXD reg64 from the low `size` bytes of the same register.
    mutating func signExtend(_ reg: HostRegister, from size: UInt8) {
        switch size {
        case 1: registerForm(Opcode(0x0f, 0xbe), size: 8, reg: reg.rawValue, rm: reg)
        case 2: registerForm(Opcode(0x0f, 0xbf), size: 8, reg: reg.rawValue, rm: reg)
        case 4: registerForm(Opcode(0x63), size: 8, reg: reg.rawValue, rm: reg)
        default: break
        }
    }

    /// LEA dst, [base + index * scale + disp] (flags untouched).
    mutating func leaSum(_ dst: HostRegister, base: HostRegister, index: HostRegister, scale: UInt8, disp: Int8 = 0) {
        indexedForm(Opcode(0x8d), size: 8, reg: dst.rawValue, base: base, index: index, scale: scale, disp: disp)
    }

    /// LEA dst, [index * scale] (flags untouched).
    mutating func leaScaled(_ dst: HostRegister, index: HostRegister, scale: UInt8) {
        let scaleBits = Self.sibScaleBits(scale)
        byte(0x48 | (dst.rawValue & 8 != 0 ? 4 : 0) | (index.rawValue & 8 != 0 ? 2 : 0))
        byte(0x8d)
        byte(0x04 | (dst.rawValue & 7) << 3)                      // mod 00, r/m 100: SIB
        byte(scaleBits << 6 | (index.rawValue & 7) << 3 | 5)     // base 101 with mod 00: disp32 alone
        i32(0)
    }

    /// `opcode` with memory operand [base + index * scale + disp8] (index not RSP).
    mutating func indexedForm(_ opcode: Opcode, size: UInt8, reg: UInt8, base: HostRegister, index: HostRegister,
                              scale: UInt8 = 1, disp: Int8 = 0) {
        let scaleBits = Self.sibScaleBits(scale)
        prefixes(size: size, reg: reg, rm: base.rawValue, index: index.rawValue, rmIsRegister: false)
        self.opcode(opcode)
        // mod 00 (no displacement) when there is none, except with RBP/R13 as the base, whose
        // mod 00 means no base; else mod 01 with disp8.
        let bare = disp == 0 && base.rawValue & 7 != 5
        byte((bare ? 0x04 : 0x44) | (reg & 7) << 3)  // r/m 100: SIB
        byte(scaleBits << 6 | (index.rawValue & 7) << 3 | (base.rawValue & 7))
        if !bare { byte(UInt8(bitPattern: disp)) }
    }

    /// `opcode` with memory operand [base + disp8].
    mutating func baseForm(_ opcode: Opcode, size: UInt8, reg: UInt8, base: HostRegister, disp: Int8) {
        prefixes(size: size, reg: reg, rm: base.rawValue, rmIsRegister: false)
        self.opcode(opcode)
        byte(0x40 | (reg & 7) << 3 | (base.rawValue & 7))
        if base.rawValue & 7 == 4 { byte(0x24) }  // RSP/R12 as a base need a SIB
        byte(UInt8(bitPattern: disp))
    }

    /// MOV reg64, [base + disp8].
    mutating func load(_ reg: HostRegister, base: HostRegister, disp: Int8) {
        baseForm(Opcode(0x8b), size: 8, reg: reg.rawValue, base: base, disp: disp)
    }

    /// Loads `size` bytes at [base + index] into `reg`, zero-extended to 64 bits.
    mutating func loadIndexed(_ reg: HostRegister, base: HostRegister, index: HostRegister, size: UInt8) {
        switch size {
        case 1: indexedForm(Opcode(0x0f, 0xb6), size: 4, reg: reg.rawValue, base: base, index: index)
        case 2: indexedForm(Opcode(0x0f, 0xb7), size: 4, reg: reg.rawValue, base: base, index: index)
        case 4: indexedForm(Opcode(0x8b), size: 4, reg: reg.rawValue, base: base, index: index)
        default: indexedForm(Opcode(0x8b), size: 8, reg: reg.rawValue, base: base, index: index)
        }
    }

    /// Stores the low `size` bytes of `reg` at [base + index] (`reg` one of RAX-RBX for bytes).
    mutating func storeIndexed(_ reg: HostRegister, base: HostRegister, index: HostRegister, size: UInt8) {
        indexedForm(Opcode(size == 1 ? 0x88 : 0x89), size: size, reg: reg.rawValue, base: base, index: index)
    }

    // MARK: BMI2 (shifts that leave the flags alone)

    /// SHRX (`pp` 3), SARX (2) or SHLX (1): dst = src shifted by count (64-bit), flags untouched.
    private mutating func bmi2Shift(pp: UInt8, _ dst: HostRegister, _ src: HostRegister, count: HostRegister) {
        byte(0xc4)
        byte((dst.rawValue & 8 == 0 ? 0x80 : 0) | 0x40 | (src.rawValue & 8 == 0 ? 0x20 : 0) | 0x02)  // ~R ~X ~B, map 0F38
        byte(0x80 | (~count.rawValue & 15) << 3 | pp)  // W1, ~vvvv, L0, pp
        byte(0xf7)
        byte(0xc0 | (dst.rawValue & 7) << 3 | (src.rawValue & 7))
    }
    mutating func shrx(_ dst: HostRegister, _ src: HostRegister, count: HostRegister) { bmi2Shift(pp: 3, dst, src, count: count) }
    mutating func sarx(_ dst: HostRegister, _ src: HostRegister, count: HostRegister) { bmi2Shift(pp: 2, dst, src, count: count) }
    mutating func shlx(_ dst: HostRegister, _ src: HostRegister, count: HostRegister) { bmi2Shift(pp: 1, dst, src, count: count) }

    /// PEXT (`pp` 2, F3) or PDEP (3, F2) dst, src, qword [r15 + disp] (flags untouched).
    private mutating func bitDeposit(pp: UInt8, _ dst: HostRegister, _ src: HostRegister, maskAt disp: Int32) {
        byte(0xc4)
        byte((dst.rawValue & 8 == 0 ? 0x80 : 0) | 0x40 | 0x02)        // ~R, ~X, B (R15), map 0F38
        byte(0x80 | (~src.rawValue & 15) << 3 | pp)                     // W1, ~vvvv = src, L0, pp
        byte(0xf5)
        contextDisplacement(reg: dst.rawValue, disp)                    // [r15 + disp]
    }

    /// PEXT dst, src, qword [r15 + disp]: the bits of `src` the mask in the context selects,
    /// packed into the low bits of `dst` (flags untouched).
    mutating func pext(_ dst: HostRegister, _ src: HostRegister, maskAt disp: Int32) {
        bitDeposit(pp: 2, dst, src, maskAt: disp)
    }

    /// PDEP dst, src, qword [r15 + disp]: the low bits of `src` spread to the bits the mask in
    /// the context selects, the others clear (flags untouched). After a PEXT with the same
    /// mask, `src` ANDed with it.
    mutating func pdep(_ dst: HostRegister, _ src: HostRegister, maskAt disp: Int32) {
        bitDeposit(pp: 3, dst, src, maskAt: disp)
    }

    /// dst = src AND the mask at [r15 + disp], flags untouched (PEXT, then PDEP).
    mutating func andMask(_ dst: HostRegister, _ src: HostRegister, maskAt disp: Int32) {
        pext(dst, src, maskAt: disp)
        pdep(dst, dst, maskAt: disp)
    }

    /// `opcode` with memory operand [r15 + index * 8 + disp]: an entry of a table in the context.
    mutating func contextTableForm(_ opcode: Opcode, size: UInt8, reg: UInt8, index: HostRegister, disp: Int32,
                                   scale: UInt8 = 8) {
        let scaleBits = Self.sibScaleBits(scale)
        prefixes(size: size, reg: reg, rm: HostRegister.r15.rawValue, index: index.rawValue, rmIsRegister: false)
        self.opcode(opcode)
        byte(0x84 | (reg & 7) << 3)                                     // mod 10, r/m 100: SIB, disp32
        byte(scaleBits << 6 | (index.rawValue & 7) << 3 | 7)            // scale, index, base R15
        i32(disp - Self.contextBias)
    }

    /// MOV reg64, [r15 + index * 8 + disp].
    mutating func loadTable(_ reg: HostRegister, index: HostRegister, disp: Int32) {
        contextTableForm(Opcode(0x8b), size: 8, reg: reg.rawValue, index: index, disp: disp)
    }

    /// JMP qword [r15 + index * 8 + disp].
    mutating func jumpThroughTable(index: HostRegister, disp: Int32) {
        contextTableForm(Opcode(0xff), size: 4, reg: 4, index: index, disp: disp)
    }

    /// LEA dst, [src + disp] (flags untouched), with an 8-bit displacement when it fits.
    mutating func leaOffset(_ dst: HostRegister, _ src: HostRegister, _ disp: Int32) {
        if let short = Int8(exactly: disp) {
            baseForm(Opcode(0x8d), size: 8, reg: dst.rawValue, base: src, disp: short)
            return
        }
        prefixes(size: 8, reg: dst.rawValue, rm: src.rawValue, rmIsRegister: false)
        byte(0x8d)
        byte(0x80 | (dst.rawValue & 7) << 3 | (src.rawValue & 7))
        if src.rawValue & 7 == 4 { byte(0x24) }  // RSP/R12 as a base need a SIB
        i32(disp)
    }

    /// `jrcxz +5; jmp label`: RCX = 0 goes on past the JMP, any other value to `label`
    /// (flags untouched).
    mutating func unlessRCXZero(jumpTo label: Label) {
        byte(0xe3); byte(5)
        jmp(label)
    }

    // MARK: Arithmetic at a guest size

    /// Group-1 ALU operation `n` (0 ADD, 1 OR, 2 ADC, 3 SBB, 4 AND, 5 SUB, 6 XOR, 7 CMP):
    /// dst ← dst op src at `size`.
    mutating func alu(_ n: UInt8, _ dst: HostRegister, _ src: HostRegister, size: UInt8) {
        registerForm(Opcode(size == 1 ? n << 3 : n << 3 | 1), size: size, reg: src.rawValue, rm: dst)
    }

    /// TEST dst, src at `size`.
    mutating func test(_ dst: HostRegister, _ src: HostRegister, size: UInt8) {
        registerForm(Opcode(size == 1 ? 0x84 : 0x85), size: size, reg: src.rawValue, rm: dst)
    }

    /// Group-3 unary operation at `size`: extension 2 NOT, 3 NEG.
    mutating func unary(_ ext: UInt8, _ reg: HostRegister, size: UInt8) {
        registerForm(Opcode(size == 1 ? 0xf6 : 0xf7), size: size, reg: ext, rm: reg)
    }

    /// Group-1 ALU operation `n` (as `alu`) of `reg` with an immediate at `size`: the
    /// immediate is the guest's (at most 32 bits, sign-extended for 64-bit operations).
    mutating func aluImmediate(_ n: UInt8, _ reg: HostRegister, _ imm: UInt64, size: UInt8) {
        let value: Int64
        switch size {
        case 1: value = Int64(Int8(truncatingIfNeeded: imm))
        case 2: value = Int64(Int16(truncatingIfNeeded: imm))
        default: value = Int64(Int32(truncatingIfNeeded: imm))
        }
        if size == 1 {
            registerForm(Opcode(0x80), size: 1, reg: n, rm: reg); byte(UInt8(truncatingIfNeeded: imm))
        } else if value >= -128 && value <= 127 {
            registerForm(Opcode(0x83), size: size, reg: n, rm: reg); byte(UInt8(truncatingIfNeeded: imm))
        } else if size == 2 {
            registerForm(Opcode(0x81), size: 2, reg: n, rm: reg); u16(UInt16(truncatingIfNeeded: imm))
        } else {
            registerForm(Opcode(0x81), size: size, reg: n, rm: reg); u32(UInt32(truncatingIfNeeded: imm))
        }
    }

    /// Group-1 ALU operation `n` on [base] with an immediate at `size` (as `aluImmediate`).
    mutating func aluImmediate(_ n: UInt8, base: HostRegister, _ imm: UInt64, size: UInt8) {
        let value: Int64 = size == 2 ? Int64(Int16(truncatingIfNeeded: imm)) : Int64(Int32(truncatingIfNeeded: imm))
        if size == 1 {
            baseForm(Opcode(0x80), size: 1, reg: n, base: base, disp: 0); byte(UInt8(truncatingIfNeeded: imm))
        } else if value >= -128 && value <= 127 {
            baseForm(Opcode(0x83), size: size, reg: n, base: base, disp: 0); byte(UInt8(truncatingIfNeeded: imm))
        } else if size == 2 {
            baseForm(Opcode(0x81), size: 2, reg: n, base: base, disp: 0); u16(UInt16(truncatingIfNeeded: imm))
        } else {
            baseForm(Opcode(0x81), size: size, reg: n, base: base, disp: 0); u32(UInt32(truncatingIfNeeded: imm))
        }
    }

    /// TEST reg, imm at `size`.
    mutating func testImmediate(_ reg: HostRegister, _ imm: UInt64, size: UInt8) {
        registerForm(Opcode(size == 1 ? 0xf6 : 0xf7), size: size, reg: 0, rm: reg)
        switch size {
        case 1: byte(UInt8(truncatingIfNeeded: imm))
        case 2: u16(UInt16(truncatingIfNeeded: imm))
        default: u32(UInt32(truncatingIfNeeded: imm))
        }
    }

    /// Group-2 shift or rotate `ext` (as `shiftByCL`) of `reg` by an immediate count at `size`.
    mutating func shiftImmediate(_ ext: UInt8, _ reg: HostRegister, _ count: UInt8, size: UInt8) {
        registerForm(Opcode(size == 1 ? 0xc0 : 0xc1), size: size, reg: ext, rm: reg); byte(count)
    }

    /// MOV dst, src at `size` (4 clears bits 63:32 of dst; 1 and 2 keep them).
    mutating func move(_ dst: HostRegister, _ src: HostRegister, size: UInt8) {
        registerForm(Opcode(size == 1 ? 0x88 : 0x89), size: size, reg: src.rawValue, rm: dst)
    }

    /// LEA dst, [base + index * scale + disp] (disp8 when it fits) with either part optional (flags untouched;
    /// `index` not RSP).
    mutating func lea(_ dst: HostRegister, base: HostRegister?, index: HostRegister?, scale: UInt8, disp: Int32) {
        let scaleBits = Self.sibScaleBits(scale)
        guard let index else {
            guard let base else { moveImmediate(dst, UInt64(bitPattern: Int64(disp))); return }
            leaOffset(dst, base, disp)
            return
        }
        prefixes(size: 8, reg: dst.rawValue, rm: base?.rawValue ?? 5, index: index.rawValue, rmIsRegister: false)
        byte(0x8d)
        if let base {
            if let short = Int8(exactly: disp) {
                byte(0x44 | (dst.rawValue & 7) << 3)                      // mod 01, SIB, disp8
                byte(scaleBits << 6 | (index.rawValue & 7) << 3 | (base.rawValue & 7))
                byte(UInt8(bitPattern: short))
                return
            }
            byte(0x84 | (dst.rawValue & 7) << 3)                          // mod 10, SIB
            byte(scaleBits << 6 | (index.rawValue & 7) << 3 | (base.rawValue & 7))
        } else {
            byte(0x04 | (dst.rawValue & 7) << 3)                          // mod 00, SIB, base 101: disp32
            byte(scaleBits << 6 | (index.rawValue & 7) << 3 | 5)
        }
        i32(disp)
    }

    /// INC (ext 0) or DEC (ext 1) at `size`.
    mutating func incDec(_ ext: UInt8, _ reg: HostRegister, size: UInt8) {
        registerForm(Opcode(size == 1 ? 0xfe : 0xff), size: size, reg: ext, rm: reg)
    }

    /// Group-2 shift or rotate `ext` (0 ROL, 1 ROR, 2 RCL, 3 RCR, 4 SHL, 5 SHR, 7 SAR) of `reg`
    /// by CL at `size`.
    mutating func shiftByCL(_ ext: UInt8, _ reg: HostRegister, size: UInt8) {
        registerForm(Opcode(size == 1 ? 0xd2 : 0xd3), size: size, reg: ext, rm: reg)
    }

    /// IMUL dst, src at `size` (2, 4, 8).
    mutating func imul(_ dst: HostRegister, _ src: HostRegister, size: UInt8) {
        registerForm(Opcode(0x0f, 0xaf), size: size, reg: dst.rawValue, rm: src)
    }

    /// IMUL dst, src, imm at `size` (2: imm16, else imm32 sign-extended).
    mutating func imul(_ dst: HostRegister, _ src: HostRegister, immediate: UInt64, size: UInt8) {
        registerForm(Opcode(0x69), size: size, reg: dst.rawValue, rm: src)
        if size == 2 { u16(UInt16(truncatingIfNeeded: immediate)) } else { u32(UInt32(truncatingIfNeeded: immediate)) }
    }

    /// SETcc reg8 on condition `cc` (0-15).
    mutating func setcc(_ cc: UInt8, _ reg: HostRegister) {
        registerForm(Opcode(0x0f, 0x90 | (cc & 15)), size: 1, reg: 0, rm: reg)
    }

    /// CMOVcc dst, src at `size` (2, 4, 8).
    mutating func cmovcc(_ cc: UInt8, _ dst: HostRegister, _ src: HostRegister, size: UInt8) {
        registerForm(Opcode(0x0f, 0x40 | (cc & 15)), size: size, reg: dst.rawValue, rm: src)
    }

    /// XCHG-free 64-bit compare of two registers (CMP a, b).
    mutating func compare(_ a: HostRegister, _ b: HostRegister) { alu(7, a, b, size: 8) }

    /// CMP qword [r15 + disp], 0.
    mutating func compareContextToZero(disp: Int32) {
        contextForm(Opcode(0x83), size: 8, reg: 7, disp: disp)
        byte(0)
    }

    /// AND reg32, imm32 (clears bits 63:32).
    mutating func and32(_ reg: HostRegister, _ imm: UInt32) {
        registerForm(Opcode(0x81), size: 4, reg: 4, rm: reg)
        u32(imm)
    }

    /// SHL / SAR reg64 by imm8 (ext 4 / 7).
    mutating func shift64(_ ext: UInt8, _ reg: HostRegister, by count: UInt8) {
        registerForm(Opcode(0xc1), size: 8, reg: ext, rm: reg)
        byte(count)
    }

    /// CBW/CWDE/CDQE (`0x98`) or CWD/CDQ/CQO (`0x99`) at `size` (2, 4, 8): on RAX / RDX:RAX.
    mutating func accumulatorExtend(_ opcode: UInt8, size: UInt8) {
        if size == 2 { byte(0x66) }
        if size == 8 { byte(0x48) }
        byte(opcode)
    }

    // MARK: Flags, stack, calls

    /// LAHF: AH = SF:ZF:0:AF:0:PF:1:CF (one cheap µop; PUSHF costs several cycles).
    mutating func loadStatusIntoAH() { byte(0x9f) }
    /// SAHF: SF, ZF, AF, PF and CF from AH (OF untouched).
    mutating func storeAHIntoStatus() { byte(0x9e) }
    mutating func pushFlags() { byte(0x9c) }
    mutating func popFlags() { byte(0x9d) }
    mutating func push(_ reg: HostRegister) {
        if reg.rawValue & 8 != 0 { byte(0x41) }
        byte(0x50 | (reg.rawValue & 7))
    }
    mutating func pop(_ reg: HostRegister) {
        if reg.rawValue & 8 != 0 { byte(0x41) }
        byte(0x58 | (reg.rawValue & 7))
    }
    /// PUSH qword [r15 + disp].
    mutating func pushContext(disp: Int32) { contextForm(Opcode(0xff), size: 4, reg: 6, disp: disp) }
    /// POP qword [r15 + disp].
    mutating func popContext(disp: Int32) { contextForm(Opcode(0x8f), size: 4, reg: 0, disp: disp) }
    /// ADD / SUB RSP, imm8.
    mutating func adjustStack(_ delta: Int8) {
        byte(0x48); byte(0x83); byte(delta >= 0 ? 0xc4 : 0xec); byte(UInt8(delta.magnitude))
    }
    /// CALL reg.
    mutating func call(_ reg: HostRegister) { registerForm(Opcode(0xff), size: 4, reg: 2, rm: reg) }
    mutating func ret() { byte(0xc3) }

    // MARK: Block-to-block jumps

    /// ADD qword [r15 + disp], imm32 (sign-extended).
    mutating func addToContext(disp: Int32, _ imm: Int32) {
        contextForm(Opcode(0x81), size: 8, reg: 0, disp: disp)
        i32(imm)
    }

    /// SUB qword [r15 + disp], 1.
    mutating func decrementContext(disp: Int32) {
        contextForm(Opcode(0x83), size: 8, reg: 5, disp: disp)
        byte(1)
    }

    /// ADD reg, qword [r15 + disp].
    mutating func addFromContext(_ reg: HostRegister, disp: Int32) {
        contextForm(Opcode(0x03), size: 8, reg: reg.rawValue, disp: disp)
    }

    /// CMP qword [base], reg (`base` not RSP/R12, RBP/R13: plain ModRM mod 00).
    mutating func compareMemory(at base: HostRegister, with reg: HostRegister) {
        prefixes(size: 8, reg: reg.rawValue, rm: base.rawValue, rmIsRegister: false)
        byte(0x39)
        byte((reg.rawValue & 7) << 3 | (base.rawValue & 7))
    }

    /// JMP qword [base + disp8] (`base` not RSP/R12).
    mutating func jumpThrough(_ base: HostRegister, disp: Int8) {
        prefixes(size: 4, reg: 4, rm: base.rawValue, rmIsRegister: false)
        byte(0xff)
        byte(0x40 | 4 << 3 | (base.rawValue & 7))
        byte(UInt8(bitPattern: disp))
    }

    /// JMP qword [r15 + disp].
    mutating func jumpThroughContext(disp: Int32) {
        contextForm(Opcode(0xff), size: 4, reg: 4, disp: disp)
    }

    /// CALL qword [r15 + disp].
    mutating func callThroughContext(disp: Int32) {
        contextForm(Opcode(0xff), size: 4, reg: 2, disp: disp)
    }

    /// JMP reg.
    mutating func jump(_ reg: HostRegister) { registerForm(Opcode(0xff), size: 4, reg: 4, rm: reg) }

    // MARK: Labels and branches

    mutating func makeLabel() -> Label {
        labelOffsets.append(nil)
        referenced.append(false)
        return Label(id: labelOffsets.count - 1)
    }

    mutating func bind(_ label: Label) { labelOffsets[label.id] = bytes.count }
    /// Whether any branch emitted so far goes to `label`.
    func isReferenced(_ label: Label) -> Bool { referenced[label.id] }

    /// Jcc rel32 to `label` on host condition `cc`.
    mutating func jcc(_ cc: UInt8, _ label: Label) {
        byte(0x0f); byte(0x80 | (cc & 15))
        fixups.append((bytes.count, label.id)); referenced[label.id] = true; u32(0)
    }

    /// CALL rel32 to `label`.
    mutating func call(_ label: Label) {
        byte(0xe8)
        fixups.append((bytes.count, label.id)); referenced[label.id] = true; u32(0)
    }

    /// JMP rel32 to `label`.
    mutating func jmp(_ label: Label) {
        byte(0xe9)
        fixups.append((bytes.count, label.id)); referenced[label.id] = true; u32(0)
    }

    /// JRCXZ rel8 to `label` (which must be within 127 bytes ahead): flags untouched.
    mutating func jrcxz(_ label: Label) {
        byte(0xe3)
        shortFixups.append((bytes.count, label.id)); referenced[label.id] = true; byte(0)
    }

    /// JMP rel32 to the next instruction: a jump whose target is patched in later (`offset` of
    /// its rel32 field is returned).
    mutating func patchableJump() -> Int {
        byte(0xe9)
        u32(0)
        return bytes.count - 4
    }

    /// The finished code with every branch resolved; nil if a label was never bound or a
    /// short branch does not reach.
    func finished() -> [UInt8]? {
        var out = bytes
        for f in shortFixups {
            guard let target = labelOffsets[f.label] else { return nil }
            let rel = target - (f.at + 1)
            guard rel >= -128 && rel <= 127 else { return nil }
            out[f.at] = UInt8(bitPattern: Int8(rel))
        }
        for f in fixups {
            guard let target = labelOffsets[f.label] else { return nil }
            let rel = Int32(truncatingIfNeeded: target - (f.at + 4))
            for i in 0..<4 { out[f.at + i] = UInt8(truncatingIfNeeded: UInt32(bitPattern: rel) >> (8 * UInt32(i))) }
        }
        return out
    }
}
