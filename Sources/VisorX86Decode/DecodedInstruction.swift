// The decoder's output: one x86 instruction as data the interpreter dispatches on.
//
// This is the contract between the decoder (bytes → DecodedInstruction, tables after the
// Intel SDM's opcode maps) and the interpreter (DecodedInstruction → effects). Operands are
// described by location and size, so one handler per operation serves every encoding
// (`add Eb,Gb`, `add Gv,Ev`, `add eAX,Iz`, group-1 `add Ev,Ib`, ...).

/// How the CPU interprets code bytes: from CS.L, CS.D and EFER.LMA.
public enum CodeMode: UInt8, Sendable {
    /// 16-bit code segment (real mode, 16-bit protected mode).
    case bits16
    /// 32-bit code segment (protected mode, compatibility mode).
    case bits32
    /// 64-bit mode (IA-32e, CS.L = 1).
    case bits64
}

/// Where an operand lives, and how wide it is.
public struct Operand: Equatable, Sendable {
    public enum Kind: UInt8, Sendable {
        /// No operand.
        case none
        /// General-purpose register `index` (0 = rAX ... 15 = r15), `size` bytes from bit 0.
        /// For `size == 1` without REX, indexes 4-7 are AH, CH, DH, BH: the decoder turns those
        /// into `.highByte` so `.register` is always "the low `size` bytes".
        case register
        /// AH, CH, DH, BH: bits 8-15 of register `index` (0-3).
        case highByte
        /// The instruction's `memory` operand, `size` bytes.
        case memory
        /// The instruction's `immediate`, already sign- or zero-extended as the encoding says.
        case immediate
        /// Segment register `index`: 0 ES, 1 CS, 2 SS, 3 DS, 4 FS, 5 GS.
        case segment
        /// Control register `index` (CR0-CR15; only 0, 2, 3, 4, 8 exist).
        case control
        /// Debug register `index` (DR0-DR7).
        case debug
        /// XMM register `index` (0-15), `size` bytes from bit 0 (16 for full moves, 4 or 8 for movd/movq).
        case xmm
        /// MMX register `index` (0-7; REX bits do not extend it): the significand of x87 register R`index`.
        case mmx
        /// x87 stack register ST(`index`), 0-7, relative to the top of stack.
        case x87
    }
    public var kind: Kind
    public var index: UInt8
    /// Width in bytes: 1, 2, 4, 8, 10, 16 (or 6/10 for descriptor-table and far-pointer memory,
    /// 14/28 for an x87 environment, 94/108 for an x87 state; 0 for FXSAVE's 512 bytes).
    public var size: UInt8

    public init(_ kind: Kind, index: UInt8 = 0, size: UInt8 = 0) {
        self.kind = kind; self.index = index; self.size = size
    }
    public static let none = Operand(.none)
    public static func register(_ index: UInt8, size: UInt8) -> Operand { Operand(.register, index: index, size: size) }
    public static func memory(size: UInt8) -> Operand { Operand(.memory, size: size) }
    public static func immediate(size: UInt8) -> Operand { Operand(.immediate, size: size) }
}

/// A memory operand's address: `segment:[base + index * scale + displacement]`.
public struct MemoryOperand: Equatable, Sendable {
    /// `base`/`index` value meaning "no register".
    public static let noRegister: UInt8 = 0xff
    /// `base` value meaning RIP-relative: the address is relative to the *next* instruction.
    public static let ripRelative: UInt8 = 0xfe

    /// Sign-extended displacement.
    public var displacement: Int64 = 0
    /// Segment register used: the override prefix if any, else DS, or SS for rBP/rSP bases.
    public var segment: UInt8 = 3
    public var base: UInt8 = noRegister
    public var index: UInt8 = noRegister
    /// 1, 2, 4 or 8.
    public var scale: UInt8 = 1

    public init(segment: UInt8 = 3, base: UInt8 = noRegister, index: UInt8 = noRegister, scale: UInt8 = 1,
                displacement: Int64 = 0) {
        self.segment = segment; self.base = base; self.index = index; self.scale = scale
        self.displacement = displacement
    }
}

/// Prefixes that change how an instruction executes (size overrides are already folded into
/// `operandSize`/`addressSize`).
public struct Prefixes: Equatable, Sendable {
    /// F3 (REP/REPE/REPZ) or F2 (REPNE/REPNZ), for string instructions.
    public enum Repeat: UInt8, Sendable { case none, repeatWhileEqual, repeatWhileNotEqual }
    public var repetition: Repeat = .none
    /// F0. The decoder has already rejected LOCK where the SDM says #UD.
    public var lock = false
    /// The segment override prefix's segment (0-5), or nil.
    public var segmentOverride: UInt8? = nil
    /// The REX byte (0x40-0x4f), or 0 when there was none.
    public var rex: UInt8 = 0
    public init() {}
}

/// One decoded instruction.
public struct DecodedInstruction: Equatable, Sendable {
    // The 8-byte fields come first so the value is naturally aligned with little padding:
    // it is copied out of the decode cache for every instruction executed.
    /// Valid when any operand has kind `.memory`.
    public var memory: MemoryOperand
    /// The immediate, sign- or zero-extended to 64 bits as the encoding says. For relative
    /// branches: the signed displacement. For `enter`: the frame size.
    public var immediate: UInt64
    /// A second immediate: `enter`'s nesting level; the selector of a direct far `jmp`/`call`; for
    /// x87 instructions (opcodes D8-DF) the 11-bit FPU opcode the CPU records in FOP (the low
    /// three bits of the opcode byte, then the ModRM byte).
    public var immediate2: UInt64
    public var operation: Operation
    /// Total length in bytes, prefixes included (1...15).
    public var length: UInt8
    /// Operand size in bytes: 1, 2, 4 or 8 (the size of `destination` for most operations).
    public var operandSize: UInt8
    /// Address size in bytes: 2, 4 or 8.
    public var addressSize: UInt8
    /// For `jcc`, `setcc`, `cmovcc`: the condition code, the low nibble of the opcode
    /// (0 O, 1 NO, 2 B/C, 3 AE/NC, 4 E/Z, 5 NE, 6 BE, 7 A, 8 S, 9 NS, A P, B NP, C L, D GE, E LE, F G).
    /// For `fcmovcc` the same code (B, E, BE, U = P and their negations). For `loop` variants it is unused.
    public var condition: UInt8
    /// The operand written (or the first operand read, for `cmp`, `test`, `push`, `out`...).
    public var destination: Operand
    /// The operand read.
    public var source: Operand
    /// A third operand: the immediate of `imul r, r/m, imm`; the count of `shld`/`shrd` (CL or imm8).
    public var source2: Operand
    public var prefixes: Prefixes

    public init(operation: Operation, length: UInt8, operandSize: UInt8 = 4, addressSize: UInt8 = 8,
                condition: UInt8 = 0, destination: Operand = .none, source: Operand = .none,
                source2: Operand = .none, memory: MemoryOperand = MemoryOperand(), immediate: UInt64 = 0,
                immediate2: UInt64 = 0, prefixes: Prefixes = Prefixes()) {
        self.operation = operation; self.length = length; self.operandSize = operandSize
        self.addressSize = addressSize; self.condition = condition; self.destination = destination
        self.source = source; self.source2 = source2; self.memory = memory; self.immediate = immediate
        self.immediate2 = immediate2; self.prefixes = prefixes
    }
}

/// What decoding a byte string gave.
public enum DecodeResult: Equatable, Sendable {
    case instruction(DecodedInstruction)
    /// The bytes are not a valid instruction in this mode (or use a feature Visor does not
    /// offer, e.g. x87 or AVX): the CPU raises #UD.
    case undefined
    /// The instruction would be longer than 15 bytes: the CPU raises #GP(0).
    case tooLong
    /// The bytes given end before the instruction does. The caller fetches more (and raises
    /// #PF if the next page is not mapped) and decodes again.
    case truncated
}
