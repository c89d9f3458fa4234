// The table-driven decoder: prefixes, REX, opcode maps (OpcodeTable.swift), ModRM/SIB
// (ModRM.swift), displacements and immediates → DecodedInstruction.
//
// Conventions beyond DecodedInstruction.swift and Operation.swift:
// - LOCK on MOV to/from CRn (AMD's alternative CR8 encoding) is #UD: Visor's CPUID does not
//   offer AltMovCr8. Nonexistent control registers (other than CR0, CR2, CR3, CR4, CR8) and
//   DR8-DR15 are #UD at decode time.
// - BCD instructions (DAA, DAS, AAA, AAS, AAM, AAD), BOUND and SALC are #UD in every mode.
// - FWAIT (9B) decodes as `fwait`. For the x87 escapes (D8-DF) `immediate2` is the 11-bit FPU
//   opcode (FOP): the escape's low three bits, then the ModRM byte. FCMOVcc's condition comes
//   from its row (`aux`) into `condition`. MMX register numbers ignore REX.R/REX.B.
// - Memory operands whose size no integer describes (FXSAVE/FXRSTOR's 512 bytes, LEA's
//   address-only operand) have size 0. INVLPG and CLFLUSH have size 1.
// - MUL/IMUL (one operand)/DIV/IDIV put their r/m in `source`; `destination` is `.none`.
// - `prefixes.repetition` is only set for string instructions; a mandatory F3/F2 (TZCNT,
//   PAUSE, MOVDQU, ...) is consumed by the encoding.
// - In 64-bit mode ES/CS/SS/DS overrides are ignored: `prefixes.segmentOverride` is nil.
// - String instructions: `memory.segment` is the source segment (DS or the override) for
//   MOVS/CMPS/LODS/OUTS, and ES for STOS/SCAS/INS (whose only memory operand is ES:rDI).
//   Base/index are not set: the registers are implied by the operation.
// - Segment-register operands (`.segment`) have size 2.
// - The 0F 18-0F 1F hint NOPs accept any ModRM; 0F 0D (PREFETCH/PREFETCHW) needs memory.
// - RDRAND (0F C7 /6, register) decodes as `.rdrand` (the interpreter raises #UD); RDSEED is #UD.
// - `source2` of PSHUFD and the other SIMD instructions with an imm8 is the immediate (as well
//   as `immediate`).
// - Near branches in 64-bit mode are always 64-bit (Intel behaviour: 66 is ignored there).

/// Decodes x86 instructions from bytes, per the Intel SDM's opcode maps.
public enum Decoder {
    /// Decodes the instruction at the start of `bytes` (at most 15 are looked at) in `mode`.
    public static func decode(_ bytes: UnsafeRawBufferPointer, mode: CodeMode) -> DecodeResult {
        var state = DecoderState(bytes: bytes, mode: mode)
        do {
            return .instruction(try state.decode())
        } catch {
            switch error {
            case .undefined: return .undefined
            case .tooLong: return .tooLong
            case .truncated: return .truncated
            }
        }
    }

    /// The same, for an array (tests, tools).
    public static func decode(_ bytes: [UInt8], mode: CodeMode) -> DecodeResult {
        bytes.withUnsafeBytes { decode($0, mode: mode) }
    }
}

/// Why decoding stopped.
enum DecodeFailure: Error {
    case undefined, tooLong, truncated
}

/// Reads instruction bytes, enforcing the 15-byte limit.
struct ByteCursor {
    static let maximumLength = 15
    let bytes: UnsafeRawBufferPointer
    let available: Int
    var position = 0

    init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
        available = min(bytes.count, Self.maximumLength)
    }

    @inline(__always)
    mutating func byte() throws(DecodeFailure) -> UInt8 {
        let p = position
        guard p < available else { throw p >= Self.maximumLength ? .tooLong : .truncated }
        position = p &+ 1
        return bytes[p]
    }

    /// `count` bytes (1, 2, 4 or 8), little-endian, zero-extended.
    @inline(__always)
    mutating func unsigned(_ count: Int) throws(DecodeFailure) -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        for _ in 0..<count {
            value |= UInt64(try byte()) << shift
            shift &+= 8
        }
        return value
    }

    /// `count` bytes, little-endian, sign-extended to 64 bits.
    @inline(__always)
    mutating func signed(_ count: Int) throws(DecodeFailure) -> UInt64 {
        let raw = try unsigned(count)
        let unused = UInt64(64 &- count &* 8) & 63
        return UInt64(bitPattern: Int64(bitPattern: raw << unused) >> unused)
    }
}

/// Per-decode state.
struct DecoderState {
    var cursor: ByteCursor
    let mode: CodeMode
    var operandPrefix = false
    var addressPrefix = false
    var lock = false
    /// The last of F2/F3, or 0.
    var repeatPrefix: UInt8 = 0
    /// The last segment-override prefix's segment, or 0xff.
    var segmentPrefix: UInt8 = 0xff
    var rex: UInt8 = 0
    var modrm = ModRM(0)
    var hasModRM = false

    init(bytes: UnsafeRawBufferPointer, mode: CodeMode) {
        cursor = ByteCursor(bytes)
        self.mode = mode
    }

    var rexW: Bool { rex & 8 != 0 }
    var rexR: UInt8 { (rex & 4) << 1 }
    var rexX: UInt8 { (rex & 2) << 2 }
    var rexB: UInt8 { (rex & 1) << 3 }

    mutating func decode() throws(DecodeFailure) -> DecodedInstruction {
        let opcode = try readPrefixes()
        let is64 = mode == .bits64

        // Select the row: map, then mode, mandatory prefix, ModRM.reg and ModRM.rm as the rows say.
        var entry: OpcodeEntry
        var opcodeByte = opcode
        if opcode == 0x0f {
            opcodeByte = try cursor.byte()
            entry = OpcodeTables.row(OpcodeTables.twoByte, Int(opcodeByte))
        } else {
            entry = OpcodeTables.row(OpcodeTables.oneByte, Int(opcode))
        }
        var depth = 0
        resolve: while depth < 4 {
            depth &+= 1
            switch entry.kind {
            case .plain, .xchgOrNop:
                break resolve
            case .invalid:
                throw .undefined
            case .split64:
                if is64 { entry = OpcodeTables.row(OpcodeTables.longModeAlternates, Int(entry.aux)) } else { break resolve }
            case .prefixed:
                let column = repeatPrefix == 0xf3 ? 2 : repeatPrefix == 0xf2 ? 3 : operandPrefix ? 1 : 0
                var next = OpcodeTables.row(OpcodeTables.prefixedRows, Int(entry.aux) &* 4 &+ column)
                next.flags.formUnion(entry.flags)
                entry = next
            case .group:
                if !hasModRM { try readModRM() }
                let index = Int(entry.aux) &* 16 &+ (modrm.isRegister ? 8 : 0) &+ Int(modrm.reg)
                var next = OpcodeTables.row(OpcodeTables.groupRows, index)
                if next.form == .inherit { next.form = entry.form }
                next.flags.formUnion(entry.flags)
                entry = next
            case .rmTable:
                if !hasModRM { try readModRM() }
                var next = OpcodeTables.row(OpcodeTables.rmRows, Int(entry.aux) &* 8 &+ Int(modrm.rm))
                if next.form == .inherit { next.form = entry.form }
                next.flags.formUnion(entry.flags)
                entry = next
            case .byMod:
                if !hasModRM { try readModRM() }
                var next = OpcodeTables.row(OpcodeTables.modSplitRows, Int(entry.aux) &* 2 &+ (modrm.isRegister ? 1 : 0))
                next.flags.formUnion(entry.flags)
                entry = next
            }
        }
        guard entry.kind == .plain || entry.kind == .xchgOrNop || entry.kind == .split64 else { throw .undefined }

        let flags = entry.flags
        if is64 ? flags.contains(.invalid64) : flags.contains(.only64) { throw .undefined }

        var operation = entry.operation
        var form = entry.form
        if entry.kind == .xchgOrNop {
            // 90: XCHG r8, rAX with REX.B; PAUSE with F3; otherwise NOP (xchg rAX, rAX).
            if rexB == 0 {
                operation = repeatPrefix == 0xf3 ? .pause : .nop
                form = .none
            }
        }

        // Sizes.
        var operandSize: UInt8
        switch mode {
        case .bits16: operandSize = operandPrefix ? 4 : 2
        case .bits32: operandSize = operandPrefix ? 2 : 4
        case .bits64:
            if flags.contains(.force64) || rexW {
                operandSize = 8
            } else if operandPrefix {
                operandSize = 2
            } else {
                operandSize = flags.contains(.default64) ? 8 : 4
            }
        }
        if flags.contains(.max32) && operandSize == 8 { operandSize = 4 }
        let addressSize: UInt8
        switch mode {
        case .bits16: addressSize = addressPrefix ? 4 : 2
        case .bits32: addressSize = addressPrefix ? 2 : 4
        case .bits64: addressSize = addressPrefix ? 4 : 8
        }

        // Segment override (ES/CS/SS/DS ones are ignored in 64-bit mode).
        var segmentOverride: UInt8? = segmentPrefix == 0xff ? nil : segmentPrefix
        if is64, let s = segmentOverride, s < 4 { segmentOverride = nil }

        // ModRM, SIB and displacement.
        if form.hasModRM && !hasModRM { try readModRM() }
        var memory = MemoryOperand()
        if hasModRM {
            if flags.contains(.memoryOnly) && modrm.isRegister { throw .undefined }
            if form.registerOnly && !modrm.isRegister { throw .undefined }
            if !modrm.isRegister && !form.ignoresMod {
                memory = try readMemoryOperand(addressSize: addressSize, segmentOverride: segmentOverride)
            }
        }
        if lock && (!flags.contains(.lockable) || !hasModRM || modrm.isRegister) { throw .undefined }

        var insn = DecodedInstruction(operation: operation, length: 0, operandSize: operandSize,
                                      addressSize: addressSize)
        insn.prefixes.lock = lock
        insn.prefixes.rex = rex
        insn.prefixes.segmentOverride = segmentOverride
        switch operation {
        case .jcc, .setcc, .cmovcc: insn.condition = opcodeByte & 0x0f
        case .fcmovcc: insn.condition = entry.aux
        default: break
        }
        // The x87 escapes: FOP, the opcode the FPU records for FXSAVE/FNSTENV (SDM 8.1.9).
        if opcode >= 0xd8 && opcode <= 0xdf {
            insn.immediate2 = UInt64(opcode & 7) << 8 | UInt64(modrm.raw)
        }
        try buildOperands(&insn, form: form, flags: flags, aux: entry.aux, opcodeByte: opcodeByte,
                          memory: memory, segmentOverride: segmentOverride)
        if flags.contains(.source2IsDestination) { insn.source2 = insn.destination }
        insn.length = UInt8(truncatingIfNeeded: cursor.position)
        return insn
    }

    /// Consumes legacy prefixes and REX; returns the first opcode byte.
    mutating func readPrefixes() throws(DecodeFailure) -> UInt8 {
        while true {
            let b = try cursor.byte()
            switch b {
            case 0x66: operandPrefix = true
            case 0x67: addressPrefix = true
            case 0xf0: lock = true
            case 0xf2, 0xf3: repeatPrefix = b
            case 0x26, 0x2e, 0x36, 0x3e: segmentPrefix = (b >> 3) & 3
            case 0x64: segmentPrefix = 4
            case 0x65: segmentPrefix = 5
            case 0x40...0x4f where mode == .bits64:
                rex = b
                continue  // a REX counts only if the opcode follows it directly
            default:
                return b
            }
            rex = 0
        }
    }

    mutating func readModRM() throws(DecodeFailure) {
        modrm = ModRM(try cursor.byte())
        hasModRM = true
    }

    // MARK: Operands

    /// A general-purpose register operand; byte registers 4-7 without REX are AH, CH, DH, BH.
    @inline(__always)
    func gpr(_ index: UInt8, size: UInt8) -> Operand {
        if size == 1 && rex == 0 && index >= 4 && index < 8 {
            return Operand(.highByte, index: index &- 4, size: 1)
        }
        return Operand(.register, index: index, size: size)
    }

    /// ModRM.reg as a general-purpose register.
    @inline(__always)
    func gReg(_ size: UInt8) -> Operand { gpr(modrm.reg | rexR, size: size) }

    /// ModRM.r/m as a register or the memory operand.
    @inline(__always)
    func eOperand(_ size: UInt8) -> Operand {
        modrm.isRegister ? gpr(modrm.rm | rexB, size: size) : .memory(size: size)
    }

    /// ModRM.r/m as an XMM register or the memory operand.
    @inline(__always)
    func wOperand(_ size: UInt8) -> Operand {
        modrm.isRegister ? Operand(.xmm, index: modrm.rm | rexB, size: size) : .memory(size: size)
    }

    @inline(__always)
    func vReg(_ size: UInt8) -> Operand { Operand(.xmm, index: modrm.reg | rexR, size: size) }

    /// ModRM.r/m as an XMM register (U forms: register only).
    @inline(__always)
    func uReg(_ size: UInt8) -> Operand { Operand(.xmm, index: modrm.rm | rexB, size: size) }

    /// ModRM.reg as an MMX register (REX.R does not extend it).
    @inline(__always)
    func pReg() -> Operand { Operand(.mmx, index: modrm.reg, size: 8) }

    /// ModRM.r/m as an MMX register or the memory operand of `size` bytes.
    @inline(__always)
    func qOperand(_ size: UInt8) -> Operand {
        modrm.isRegister ? Operand(.mmx, index: modrm.rm, size: 8) : .memory(size: size)
    }

    /// ModRM.r/m as an MMX register (N forms: register only).
    @inline(__always)
    func nReg() -> Operand { Operand(.mmx, index: modrm.rm, size: 8) }

    /// Iz: 2 bytes at operand size 2, else 4 (sign-extended to 64 bits at operand size 8).
    mutating func immediateZ(_ operandSize: UInt8) throws(DecodeFailure) -> UInt64 {
        switch operandSize {
        case 2: return try cursor.unsigned(2)
        case 8: return try cursor.signed(4)
        default: return try cursor.unsigned(4)
        }
    }

    mutating func buildOperands(_ insn: inout DecodedInstruction, form: OperandForm, flags: EntryFlags, aux: UInt8,
                                opcodeByte: UInt8, memory: MemoryOperand, segmentOverride: UInt8?) throws(DecodeFailure) {
        let os = insn.operandSize
        let is64 = mode == .bits64
        let cl = Operand(.register, index: 1, size: 1)
        let z = (opcodeByte & 7) | rexB
        insn.memory = memory

        /// Places a single operand in destination or source.
        func single(_ op: Operand, _ insn: inout DecodedInstruction) {
            if flags.contains(.operandIsSource) { insn.source = op } else { insn.destination = op }
        }

        switch form {
        case .inherit, .none:
            break
        case .EbGb:
            insn.operandSize = 1
            insn.destination = eOperand(1); insn.source = gReg(1)
        case .EvGv:
            insn.destination = eOperand(os); insn.source = gReg(os)
        case .GbEb:
            insn.operandSize = 1
            insn.destination = gReg(1); insn.source = eOperand(1)
        case .GvEv:
            insn.destination = gReg(os); insn.source = eOperand(os)
        case .EwGw:
            insn.operandSize = 2
            insn.destination = eOperand(2); insn.source = gReg(2)
        case .GvEb:
            insn.destination = gReg(os); insn.source = eOperand(1)
        case .GvEw:
            insn.destination = gReg(os); insn.source = eOperand(2)
        case .GvEd:
            insn.destination = gReg(os); insn.source = eOperand(os == 8 ? 4 : os)
        case .GvM:
            insn.destination = gReg(os); insn.source = .memory(size: 0)
        case .GvMp:
            insn.destination = gReg(os); insn.source = .memory(size: os &+ 2)
            insn.source2 = Operand(.segment, index: aux, size: 2)
        case .EbIb:
            insn.operandSize = 1
            insn.destination = eOperand(1); insn.source = .immediate(size: 1)
            insn.immediate = try cursor.unsigned(1)
        case .EvIz:
            insn.destination = eOperand(os); insn.source = .immediate(size: os)
            insn.immediate = try immediateZ(os)
        case .EvIbs:
            insn.destination = eOperand(os); insn.source = .immediate(size: os)
            insn.immediate = try cursor.signed(1)
        case .EvIb:
            insn.destination = eOperand(os); insn.source = .immediate(size: 1)
            insn.immediate = try cursor.unsigned(1)
        case .Eb1:
            insn.operandSize = 1
            insn.destination = eOperand(1); insn.source = .immediate(size: 1); insn.immediate = 1
        case .Ev1:
            insn.destination = eOperand(os); insn.source = .immediate(size: 1); insn.immediate = 1
        case .EbCL:
            insn.operandSize = 1
            insn.destination = eOperand(1); insn.source = cl
        case .EvCL:
            insn.destination = eOperand(os); insn.source = cl
        case .GvEvIz:
            insn.destination = gReg(os); insn.source = eOperand(os); insn.source2 = .immediate(size: os)
            insn.immediate = try immediateZ(os)
        case .GvEvIbs:
            insn.destination = gReg(os); insn.source = eOperand(os); insn.source2 = .immediate(size: os)
            insn.immediate = try cursor.signed(1)
        case .EvGvIb:
            insn.destination = eOperand(os); insn.source = gReg(os); insn.source2 = .immediate(size: 1)
            insn.immediate = try cursor.unsigned(1)
        case .EvGvCL:
            insn.destination = eOperand(os); insn.source = gReg(os); insn.source2 = cl
        case .Eb:
            insn.operandSize = 1
            single(eOperand(1), &insn)
        case .Ev:
            single(eOperand(os), &insn)
        case .Ew:
            insn.operandSize = 2
            single(eOperand(2), &insn)
        case .RvMw:
            let op = eOperand(modrm.isRegister ? os : 2)
            insn.operandSize = op.size
            single(op, &insn)
        case .Mb:
            single(.memory(size: 1), &insn)
        case .Mw:
            insn.operandSize = 2
            single(.memory(size: 2), &insn)
        case .Md:
            insn.operandSize = 4
            single(.memory(size: 4), &insn)
        case .Ms:
            single(.memory(size: is64 ? 10 : 6), &insn)
        case .Mp:
            single(.memory(size: os &+ 2), &insn)
        case .Mcx:
            let size: UInt8 = is64 && rexW ? 16 : 8
            insn.operandSize = size
            insn.destination = .memory(size: size)
        case .Mfx:
            single(.memory(size: 0), &insn)
        case .EvSw:
            guard modrm.reg <= 5 else { throw .undefined }
            let op = eOperand(modrm.isRegister ? os : 2)
            insn.operandSize = op.size
            insn.destination = op; insn.source = Operand(.segment, index: modrm.reg, size: 2)
        case .SwEw:
            guard modrm.reg <= 5 && modrm.reg != 1 else { throw .undefined }
            insn.operandSize = 2
            insn.destination = Operand(.segment, index: modrm.reg, size: 2); insn.source = eOperand(2)
        case .RdCd, .CdRd:
            let index = modrm.reg | rexR
            guard index == 0 || index == 2 || index == 3 || index == 4 || (index == 8 && is64) else {
                throw .undefined
            }
            let size: UInt8 = is64 ? 8 : 4
            insn.operandSize = size
            let register = Operand(.register, index: modrm.rm | rexB, size: size)
            let control = Operand(.control, index: index, size: size)
            if form == .RdCd {
                insn.destination = register; insn.source = control
            } else {
                insn.destination = control; insn.source = register
            }
        case .RdDd, .DdRd:
            let index = modrm.reg | rexR
            guard index < 8 else { throw .undefined }
            let size: UInt8 = is64 ? 8 : 4
            insn.operandSize = size
            let register = Operand(.register, index: modrm.rm | rexB, size: size)
            let debug = Operand(.debug, index: index, size: size)
            if form == .RdDd {
                insn.destination = register; insn.source = debug
            } else {
                insn.destination = debug; insn.source = register
            }
        case .modRMOnly:
            break
        case .VxWx:
            insn.operandSize = 16
            insn.destination = vReg(16); insn.source = wOperand(16)
        case .WxVx:
            insn.operandSize = 16
            insn.destination = wOperand(16); insn.source = vReg(16)
        case .VxWxIb:
            insn.operandSize = 16
            insn.destination = vReg(16); insn.source = wOperand(16); insn.source2 = .immediate(size: 1)
            insn.immediate = try cursor.unsigned(1)
        case .VyEy:
            let size: UInt8 = rexW ? 8 : 4
            insn.operandSize = size
            insn.destination = vReg(size); insn.source = eOperand(size)
        case .EyVy:
            let size: UInt8 = rexW ? 8 : 4
            insn.operandSize = size
            insn.destination = eOperand(size); insn.source = vReg(size)
        case .VqWq:
            insn.operandSize = 8
            insn.destination = vReg(8); insn.source = wOperand(8)
        case .WqVq:
            insn.operandSize = 8
            insn.destination = wOperand(8); insn.source = vReg(8)
        case .PqQq, .PqQd:
            insn.operandSize = 8
            insn.destination = pReg(); insn.source = qOperand(form == .PqQd ? 4 : 8)
        case .QqPq:
            insn.operandSize = 8
            insn.destination = qOperand(8); insn.source = pReg()
        case .PqQqIb:
            insn.operandSize = 8
            insn.destination = pReg(); insn.source = qOperand(8); insn.source2 = .immediate(size: 1)
            insn.immediate = try cursor.unsigned(1)
        case .PyEy:
            let size: UInt8 = rexW ? 8 : 4
            insn.operandSize = size
            insn.destination = Operand(.mmx, index: modrm.reg, size: size); insn.source = eOperand(size)
        case .EyPy:
            let size: UInt8 = rexW ? 8 : 4
            insn.operandSize = size
            insn.destination = eOperand(size); insn.source = Operand(.mmx, index: modrm.reg, size: size)
        case .NqIb, .UxIb:
            insn.operandSize = form == .NqIb ? 8 : 16
            insn.destination = form == .NqIb ? nReg() : uReg(16); insn.source = .immediate(size: 1)
            insn.immediate = try cursor.unsigned(1)
        case .GdNq, .GdUx:
            insn.operandSize = 4
            insn.destination = gReg(4); insn.source = form == .GdNq ? nReg() : uReg(16)
        case .GdNqIb, .GdUxIb:
            insn.operandSize = 4
            insn.destination = gReg(4); insn.source = form == .GdNqIb ? nReg() : uReg(16)
            insn.source2 = .immediate(size: 1)
            insn.immediate = try cursor.unsigned(1)
        case .PqRdMwIb, .VxRdMwIb:
            insn.operandSize = form == .PqRdMwIb ? 8 : 16
            insn.destination = form == .PqRdMwIb ? pReg() : vReg(16)
            insn.source = modrm.isRegister ? gpr(modrm.rm | rexB, size: 4) : .memory(size: 2)
            insn.source2 = .immediate(size: 1)
            insn.immediate = try cursor.unsigned(1)
        case .VxNq:
            insn.operandSize = 8
            insn.destination = vReg(8); insn.source = nReg()
        case .PqUx:
            insn.operandSize = 8
            insn.destination = pReg(); insn.source = uReg(8)
        case .PqNq:
            insn.operandSize = 8
            insn.destination = pReg(); insn.source = nReg()
        case .VxUx:
            insn.operandSize = 16
            insn.destination = vReg(16); insn.source = uReg(16)
        case .VxWd, .VxWq:
            let size: UInt8 = form == .VxWd ? 4 : 8
            insn.operandSize = size
            insn.destination = vReg(16); insn.source = wOperand(size)
        case .WdVx, .WqVx:
            let size: UInt8 = form == .WdVx ? 4 : 8
            insn.operandSize = size
            insn.destination = wOperand(size); insn.source = vReg(16)
        case .VxWdIb, .VxWqIb:
            let size: UInt8 = form == .VxWdIb ? 4 : 8
            insn.operandSize = size
            insn.destination = vReg(16); insn.source = wOperand(size); insn.source2 = .immediate(size: 1)
            insn.immediate = try cursor.unsigned(1)
        case .VxEy:
            let size: UInt8 = rexW ? 8 : 4
            insn.operandSize = size
            insn.destination = vReg(16); insn.source = eOperand(size)
        case .GyWd, .GyWq:
            let size: UInt8 = rexW ? 8 : 4
            insn.operandSize = size
            insn.destination = gReg(size); insn.source = wOperand(form == .GyWd ? 4 : 8)
        case .VxQq:
            insn.operandSize = 8
            insn.destination = vReg(16); insn.source = qOperand(8)
        case .PqWq, .PqWx:
            let size: UInt8 = form == .PqWq ? 8 : 16
            insn.operandSize = size
            insn.destination = pReg(); insn.source = wOperand(size)
        case .EyGy:
            let size: UInt8 = rexW ? 8 : 4
            insn.operandSize = size
            insn.destination = eOperand(size); insn.source = gReg(size)
        case .Mq:
            single(.memory(size: 8), &insn)
        case .Mt:
            single(.memory(size: 10), &insn)
        case .Menv:
            single(.memory(size: os == 2 ? 14 : 28), &insn)
        case .Mstate:
            single(.memory(size: os == 2 ? 94 : 108), &insn)
        case .ST0STi:
            insn.destination = Operand(.x87, index: 0, size: 10); insn.source = Operand(.x87, index: modrm.rm, size: 10)
        case .STiST0:
            insn.destination = Operand(.x87, index: modrm.rm, size: 10); insn.source = Operand(.x87, index: 0, size: 10)
        case .STi:
            single(Operand(.x87, index: modrm.rm, size: 10), &insn)
        case .ALIb:
            insn.operandSize = 1
            insn.destination = .register(0, size: 1); insn.source = .immediate(size: 1)
            insn.immediate = try cursor.unsigned(1)
        case .eAXIz:
            insn.destination = .register(0, size: os); insn.source = .immediate(size: os)
            insn.immediate = try immediateZ(os)
        case .eAXIb:
            insn.destination = .register(0, size: os); insn.source = .immediate(size: 1)
            insn.immediate = try cursor.unsigned(1)
        case .IbAL:
            insn.operandSize = 1
            insn.destination = .immediate(size: 1); insn.source = .register(0, size: 1)
            insn.immediate = try cursor.unsigned(1)
        case .IbeAX:
            insn.destination = .immediate(size: 1); insn.source = .register(0, size: os)
            insn.immediate = try cursor.unsigned(1)
        case .ALDX:
            insn.operandSize = 1
            insn.destination = .register(0, size: 1); insn.source = .register(2, size: 2)
        case .eAXDX:
            insn.destination = .register(0, size: os); insn.source = .register(2, size: 2)
        case .DXAL:
            insn.operandSize = 1
            insn.destination = .register(2, size: 2); insn.source = .register(0, size: 1)
        case .DXeAX:
            insn.destination = .register(2, size: 2); insn.source = .register(0, size: os)
        case .ZbIb:
            insn.operandSize = 1
            insn.destination = gpr(z, size: 1); insn.source = .immediate(size: 1)
            insn.immediate = try cursor.unsigned(1)
        case .ZvIv:
            insn.destination = .register(z, size: os); insn.source = .immediate(size: os)
            insn.immediate = try cursor.unsigned(Int(os))
        case .Zv:
            single(.register(z, size: os), &insn)
        case .ZveAX:
            insn.destination = .register(z, size: os); insn.source = .register(0, size: os)
        case .Jb:
            insn.immediate = try cursor.signed(1)
        case .Jz:
            insn.immediate = try cursor.signed(os == 2 ? 2 : 4)
        case .Iz:
            insn.source = .immediate(size: os)
            insn.immediate = try immediateZ(os)
        case .Ibs:
            insn.source = .immediate(size: os)
            insn.immediate = try cursor.signed(1)
        case .Ib:
            insn.source = .immediate(size: 1)
            insn.immediate = try cursor.unsigned(1)
        case .Iw:
            insn.source = .immediate(size: 2)
            insn.immediate = try cursor.unsigned(2)
        case .IwIb:
            insn.immediate = try cursor.unsigned(2)
            insn.immediate2 = try cursor.unsigned(1)
        case .Ap:
            insn.immediate = try cursor.unsigned(os == 2 ? 2 : 4)
            insn.immediate2 = try cursor.unsigned(2)
        case .ALOb, .eAXOv, .ObAL, .OveAX:
            let size: UInt8 = (form == .ALOb || form == .ObAL) ? 1 : os
            insn.operandSize = size
            var offset = MemoryOperand(segment: segmentOverride ?? 3)
            offset.displacement = Int64(bitPattern: try cursor.unsigned(Int(insn.addressSize)))
            insn.memory = offset
            if form == .ALOb || form == .eAXOv {
                insn.destination = .register(0, size: size); insn.source = .memory(size: size)
            } else {
                insn.destination = .memory(size: size); insn.source = .register(0, size: size)
            }
        case .Sreg:
            single(Operand(.segment, index: aux, size: 2), &insn)
        case .stringB, .stringV:
            if form == .stringB { insn.operandSize = 1 }
            switch insn.operation {
            case .stos, .scas, .ins:
                // Their only memory operand is ES:rDI, which no prefix overrides.
                insn.memory = MemoryOperand(segment: 0)
            default:
                // MOVS/CMPS/LODS/OUTS: the source DS:rSI (or the override); MOVS/CMPS also use ES:rDI.
                insn.memory = MemoryOperand(segment: segmentOverride ?? 3)
            }
            switch repeatPrefix {
            case 0xf3: insn.prefixes.repetition = .repeatWhileEqual
            case 0xf2: insn.prefixes.repetition = .repeatWhileNotEqual
            default: break
            }
        case .AX:
            insn.operandSize = 2
            insn.destination = .register(0, size: 2)
        case .xlat:
            insn.operandSize = 1
            insn.destination = .register(0, size: 1)
            insn.memory = MemoryOperand(segment: segmentOverride ?? 3, base: 3)
        }
    }
}
