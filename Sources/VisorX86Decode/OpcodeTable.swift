// The opcode maps as data, after the Intel SDM volume 2, appendix A ("Opcode Map").
//
// Layout:
// - `OpcodeTables.oneByte` and `OpcodeTables.twoByte` (the 0F map) have 256 rows each,
//   indexed by the opcode byte. A row is an operation, an operand form in the SDM's
//   notation (`Ev,Gv`, `eAX,Iz`, `Jb`, ...), flags (SDM superscripts: i64, o64, d64, f64, and
//   "lockable") and a kind that says where to look next:
//     .plain      the row is the instruction;
//     .group      ModRM.reg selects a row of `groups[aux]` (memory or register half by ModRM.mod);
//     .rmTable    ModRM.rm selects a row of `rmTables[aux]` (the mod = 11 special encodings);
//     .prefixed   the mandatory prefix (none, 66, F3, F2) selects a row of `prefixed[aux]`;
//     .split64    64-bit mode uses `longModeAlternates[aux]` instead (63: ARPL / MOVSXD);
//     .xchgOrNop  90: NOP, PAUSE (F3) or XCHG r8, rAX (REX.B);
//     .invalid    #UD.
// - Group rows whose form is `.inherit` take the form of the opcode row that led to them, so
//   one group-1 table serves 80, 81, 82 and 83.
//
// The x87 escapes D8-DF are in OpcodeTable+X87.swift, the MMX/SSE/SSE2 rows of the 0F map in
// OpcodeTable+SIMD.swift.
//
// Deliberately #UD (no Operation for them, or not offered by Visor's CPUID): BCD (27 2F 37 3F
// D4 D5) in every mode, BOUND (62), SALC (D6), SSSE3 and later, VEX/EVEX/XOP, the 0F 38 and
// 0F 3A maps, the XSAVE family, RDFSBASE and friends, CLAC/STAC, XGETBV, VMX/SVM, UD0/UD1, RSM,
// 3DNow!.

/// How an instruction's operands are encoded: the SDM's operand notation (A.2).
/// E = ModRM r/m (register or memory), G = ModRM reg, M = ModRM memory only, R = ModRM r/m
/// register only (mod ignored), Z = low 3 opcode bits (+ REX.B), I = immediate, J = relative
/// offset, O = address-size offset (moffs), S = segment register in ModRM.reg, C/D = control /
/// debug register in ModRM.reg, V = XMM in ModRM.reg, W = XMM or memory in ModRM r/m.
/// Sizes: b byte, w word, d dword, v operand size, z word or dword (operand size 2 → 2, else 4),
/// y dword or qword (REX.W), q qword, x 128 bits, s = signed byte extended to the operand size.
enum OperandForm: UInt8, Sendable {
    /// Group rows only: use the form of the opcode row.
    case inherit
    case none

    // ModRM forms.
    case EbGb, EvGv, GbEb, GvEv, EwGw
    /// MOVZX/MOVSX Gv, Eb / Gv, Ew; LAR/LSL Gv, Ew.
    case GvEb, GvEw
    /// MOVSXD Gv, Ed (source is 4 bytes with a 64-bit destination, else the operand size).
    case GvEd
    /// LEA Gv, M.
    case GvM
    /// LDS/LES/LSS/LFS/LGS Gv, Mp; the segment register in the row's `aux`.
    case GvMp
    case EbIb, EvIz
    /// Ev, Ib sign-extended to the operand size (83, and the second operand of 6B-style forms).
    case EvIbs
    /// Ev, Ib kept as an 8-bit count / bit index (group 8, C1 shifts).
    case EvIb
    case Eb1, Ev1, EbCL, EvCL
    /// IMUL Gv, Ev, Iz / Ib (sign-extended): the immediate goes to `source2`.
    case GvEvIz, GvEvIbs
    /// SHLD/SHRD Ev, Gv, Ib / CL: the count goes to `source2`.
    case EvGvIb, EvGvCL
    /// One r/m operand: in `destination`, or in `source` with the `.operandIsSource` flag.
    case Eb, Ev, Ew
    /// SLDT/STR/SMSW: a register at the operand size, or a 16-bit memory word.
    case RvMw
    /// Memory-only operands: byte (address only), word, dword, pseudo-descriptor (6 or 10),
    /// far pointer (operand size + 2), CMPXCHG8B/16B (8 or 16), FXSAVE area (size 0 = 512).
    case Mb, Mw, Md, Ms, Mp, Mcx, Mfx
    /// MOV Ev, Sw / MOV Sw, Ew.
    case EvSw, SwEw
    /// MOV to/from CRn, DRn: r/m is always a register (mod ignored), 64-bit in 64-bit mode.
    case RdCd, CdRd, RdDd, DdRd
    /// A ModRM (and its SIB/displacement) that is parsed for length only: hint NOPs.
    case modRMOnly
    /// SSE: Vx, Wx / Wx, Vx (16 bytes); PSHUFD Vx, Wx, Ib.
    case VxWx, WxVx, VxWxIb
    /// MOVD/MOVQ between XMM and a GPR or memory (4 bytes, 8 with REX.W).
    case VyEy, EyVy
    /// MOVQ xmm, xmm/m64 and MOVQ xmm/m64, xmm.
    case VqWq, WqVq
    /// MMX: P = ModRM.reg, Q = ModRM.r/m register or memory, N = ModRM.r/m register only (REX
    /// does not extend MMX register numbers). PUNPCKLxx mm, mm/m32 reads 4 bytes (Qd).
    case PqQq, PqQd, QqPq, PqQqIb
    /// MOVD/MOVQ between an MMX register and a GPR or memory (4 bytes, 8 with REX.W).
    case PyEy, EyPy
    /// Shift groups 12-14: the register in ModRM.r/m, the count an immediate.
    case NqIb, UxIb
    /// PMOVMSKB / MOVMSKPS / MOVMSKPD r32, register; PEXTRW r32, register, Ib.
    case GdNq, GdUx, GdNqIb, GdUxIb
    /// PINSRW vector, r32 or m16, Ib.
    case PqRdMwIb, VxRdMwIb
    /// Register-only pairs: MOVQ2DQ, MOVDQ2Q, MASKMOVQ, MASKMOVDQU / MOVHLPS / MOVLHPS.
    case VxNq, PqUx, PqNq, VxUx
    /// An XMM register with a 4- or 8-byte r/m (scalar float, MOVLPS/MOVHPS, CVTPS2PD), stores
    /// of the low element, and the CMPSS/CMPSD forms with an immediate.
    case VxWd, VxWq, WdVx, WqVx, VxWdIb, VxWqIb
    /// Conversions: CVTSI2SS/SD Vx, Ey; CVT(T)SS2SI / CVT(T)SD2SI Gy, Wd / Wq; CVTPI2PS/PD Vx, Qq;
    /// CVT(T)PS2PI Pq, Wq; CVT(T)PD2PI Pq, Wx.
    case VxEy, GyWd, GyWq, VxQq, PqWq, PqWx
    /// MOVNTI My, Gy (4 bytes, 8 with REX.W).
    case EyGy
    /// x87 memory: 8 and 10 bytes, the environment (14 bytes at operand size 2, else 28) and the
    /// whole state (94 or 108).
    case Mq, Mt, Menv, Mstate
    /// x87 registers: ST(0), ST(i); ST(i), ST(0); ST(i) alone (i = ModRM.r/m).
    case ST0STi, STiST0, STi

    // Forms without a ModRM.
    case ALIb, eAXIz
    /// IN eAX, Ib / OUT Ib, AL / OUT Ib, eAX.
    case eAXIb, IbAL, IbeAX
    /// IN AL, DX / IN eAX, DX / OUT DX, AL / OUT DX, eAX.
    case ALDX, eAXDX, DXAL, DXeAX
    /// B0+r MOV Zb, Ib; B8+r MOV Zv, Iv (imm64 with REX.W).
    case ZbIb, ZvIv
    /// 50+r, 58+r, 40+r, 48+r, 0F C8+r: register in the opcode.
    case Zv
    /// 90+r XCHG Zv, rAX.
    case ZveAX
    case Jb, Jz
    /// PUSH Iz / PUSH Ib (sign-extended).
    case Iz, Ibs
    /// INT Ib.
    case Ib
    /// RET Iw / RETF Iw.
    case Iw
    /// ENTER Iw, Ib.
    case IwIb
    /// Direct far pointer: offset (2 or 4 bytes) then selector.
    case Ap
    /// MOV AL, Ob / eAX, Ov / Ob, AL / Ov, eAX.
    case ALOb, eAXOv, ObAL, OveAX
    /// PUSH/POP of the segment register in `aux`.
    case Sreg
    /// String instructions with byte or operand-size elements.
    case stringB, stringV
    /// FNSTSW AX.
    case AX
    /// XLAT: AL ← [seg:rBX + AL].
    case xlat

    /// Whether a ModRM byte follows the opcode.
    var hasModRM: Bool {
        switch self {
        case .inherit, .none, .ALIb, .eAXIz, .eAXIb, .IbAL, .IbeAX, .ALDX, .eAXDX, .DXAL, .DXeAX, .ZbIb, .ZvIv, .Zv,
             .ZveAX, .Jb, .Jz, .Iz, .Ibs, .Ib, .Iw, .IwIb, .Ap, .ALOb, .eAXOv, .ObAL, .OveAX, .Sreg, .stringB,
             .stringV, .AX, .xlat:
            return false
        default:
            return true
        }
    }

    /// Forms whose r/m must be a register (a memory r/m is #UD).
    var registerOnly: Bool {
        switch self {
        case .NqIb, .UxIb, .GdNq, .GdUx, .GdNqIb, .GdUxIb, .VxNq, .PqUx, .PqNq, .VxUx, .ST0STi, .STiST0, .STi:
            return true
        default:
            return false
        }
    }

    /// MOV CR/DR: the mod field is ignored and no SIB or displacement follows.
    var ignoresMod: Bool {
        switch self {
        case .RdCd, .CdRd, .RdDd, .DdRd: return true
        default: return false
        }
    }
}

/// Row attributes, mostly the SDM's opcode-map superscripts.
struct EntryFlags: OptionSet, Sendable {
    let rawValue: UInt16
    /// LOCK is allowed (with a memory destination).
    static let lockable = EntryFlags(rawValue: 1 << 0)
    /// d64: 64-bit operand size by default in 64-bit mode (66 selects 16).
    static let default64 = EntryFlags(rawValue: 1 << 1)
    /// f64: 64-bit operand size in 64-bit mode whatever the prefixes (near branches).
    static let force64 = EntryFlags(rawValue: 1 << 2)
    /// i64: #UD in 64-bit mode.
    static let invalid64 = EntryFlags(rawValue: 1 << 3)
    /// o64: only in 64-bit mode.
    static let only64 = EntryFlags(rawValue: 1 << 4)
    /// #UD when ModRM.mod = 11 (the r/m must be memory).
    static let memoryOnly = EntryFlags(rawValue: 1 << 5)
    /// A single r/m, Z or M operand is read, so it goes in `source` rather than `destination`.
    static let operandIsSource = EntryFlags(rawValue: 1 << 6)
    /// Operand size at most 4 (IN/OUT/INS/OUTS ignore REX.W).
    static let max32 = EntryFlags(rawValue: 1 << 7)
    /// Two-operand IMUL (0F AF): `source2` repeats the destination (its old value is a factor).
    static let source2IsDestination = EntryFlags(rawValue: 1 << 8)
}

/// Where to look after this row.
enum EntryKind: UInt8, Sendable {
    case plain, invalid, group, rmTable, prefixed, split64, xchgOrNop, byMod
}

/// One row of an opcode map or group table.
struct OpcodeEntry: Sendable {
    var operation: Operation
    var form: OperandForm
    var flags: EntryFlags
    var kind: EntryKind
    /// The table index for `.group`/`.rmTable`/`.prefixed`/`.split64`; the segment register for
    /// `.Sreg` and `.GvMp`.
    var aux: UInt8

    init(_ operation: Operation, _ form: OperandForm, _ flags: EntryFlags = [], kind: EntryKind = .plain,
         aux: UInt8 = 0) {
        self.operation = operation; self.form = form; self.flags = flags; self.kind = kind; self.aux = aux
    }

    static let invalid = OpcodeEntry(.ud2, .none, kind: .invalid)
    static func group(_ g: GroupID, _ form: OperandForm, _ flags: EntryFlags = []) -> OpcodeEntry {
        OpcodeEntry(.nop, form, flags, kind: .group, aux: g.rawValue)
    }
    /// The mandatory-prefix table of 0F `opcode`.
    static func prefixed(_ opcode: UInt8) -> OpcodeEntry {
        OpcodeEntry(.nop, .none, kind: .prefixed, aux: opcode)
    }
    static func rmTable(_ r: RMTableID) -> OpcodeEntry {
        OpcodeEntry(.nop, .none, kind: .rmTable, aux: r.rawValue)
    }
    static func byMod(_ m: ModSplitID) -> OpcodeEntry {
        OpcodeEntry(.nop, .none, kind: .byMod, aux: m.rawValue)
    }
}

/// A group: eight rows by ModRM.reg, separately for a memory r/m (mod 00/01/10) and a register
/// r/m (mod 11).
struct GroupTable: Sendable {
    var memory: [OpcodeEntry]
    var register: [OpcodeEntry]
    init(memory: [OpcodeEntry], register: [OpcodeEntry]) { self.memory = memory; self.register = register }
    init(both rows: [OpcodeEntry]) { memory = rows; register = rows }
}

enum GroupID: UInt8, CaseIterable {
    case group1, group1A, group2, group3Eb, group3Ev, group4, group5, group11, group6, group7, group8, group9,
         group15, group16
    /// The x87 escapes D8-DF (OpcodeTable+X87.swift).
    case x87D8, x87D9, x87DA, x87DB, x87DC, x87DD, x87DE, x87DF
    /// The MMX (no prefix) and XMM (66) shift-by-immediate groups 0F 71, 0F 72, 0F 73 (OpcodeTable+SIMD.swift).
    case group12MMX, group12XMM, group13MMX, group13XMM, group14MMX, group14XMM
}

enum RMTableID: UInt8, CaseIterable {
    /// 0F 01 /1 mod=11: C8 MONITOR, C9 MWAIT.
    case group7Reg1
    /// 0F 01 /7 mod=11: F8 SWAPGS, F9 RDTSCP.
    case group7Reg7
    /// x87 register rows that name an instruction by ModRM.rm (OpcodeTable+X87.swift).
    case x87D9Reg2, x87D9Reg4, x87D9Reg5, x87D9Reg6, x87D9Reg7, x87DAReg5, x87DBReg4, x87DEReg3, x87DFReg4
}

/// Rows that differ between a memory r/m and a register r/m (mod = 11) without a ModRM.reg
/// group: 0F 12 (MOVLPS / MOVHLPS) and 0F 16 (MOVHPS / MOVLHPS).
enum ModSplitID: UInt8, CaseIterable {
    case movlpsOrMovhlps, movhpsOrMovlhps
}

enum OpcodeTables {
    typealias E = OpcodeEntry
    static let ud = OpcodeEntry.invalid

    // MARK: One-byte map

    static let oneByte: [OpcodeEntry] = [
        E(.add, .EbGb, .lockable),                       // 00 ADD Eb,Gb
        E(.add, .EvGv, .lockable),                       // 01 ADD Ev,Gv
        E(.add, .GbEb),                                  // 02 ADD Gb,Eb
        E(.add, .GvEv),                                  // 03 ADD Gv,Ev
        E(.add, .ALIb),                                  // 04 ADD AL,Ib
        E(.add, .eAXIz),                                 // 05 ADD eAX,Iz
        E(.push, .Sreg, [.invalid64, .operandIsSource], aux: 0), // 06 PUSH ES
        E(.pop, .Sreg, .invalid64, aux: 0),              // 07 POP ES
        E(.or, .EbGb, .lockable),                        // 08 OR Eb,Gb
        E(.or, .EvGv, .lockable),                        // 09 OR Ev,Gv
        E(.or, .GbEb),                                   // 0A OR Gb,Eb
        E(.or, .GvEv),                                   // 0B OR Gv,Ev
        E(.or, .ALIb),                                   // 0C OR AL,Ib
        E(.or, .eAXIz),                                  // 0D OR eAX,Iz
        E(.push, .Sreg, [.invalid64, .operandIsSource], aux: 1), // 0E PUSH CS
        ud,                                              // 0F two-byte escape (handled by the decoder)
        E(.adc, .EbGb, .lockable),                       // 10 ADC Eb,Gb
        E(.adc, .EvGv, .lockable),                       // 11 ADC Ev,Gv
        E(.adc, .GbEb),                                  // 12 ADC Gb,Eb
        E(.adc, .GvEv),                                  // 13 ADC Gv,Ev
        E(.adc, .ALIb),                                  // 14 ADC AL,Ib
        E(.adc, .eAXIz),                                 // 15 ADC eAX,Iz
        E(.push, .Sreg, [.invalid64, .operandIsSource], aux: 2), // 16 PUSH SS
        E(.pop, .Sreg, .invalid64, aux: 2),              // 17 POP SS
        E(.sbb, .EbGb, .lockable),                       // 18 SBB Eb,Gb
        E(.sbb, .EvGv, .lockable),                       // 19 SBB Ev,Gv
        E(.sbb, .GbEb),                                  // 1A SBB Gb,Eb
        E(.sbb, .GvEv),                                  // 1B SBB Gv,Ev
        E(.sbb, .ALIb),                                  // 1C SBB AL,Ib
        E(.sbb, .eAXIz),                                 // 1D SBB eAX,Iz
        E(.push, .Sreg, [.invalid64, .operandIsSource], aux: 3), // 1E PUSH DS
        E(.pop, .Sreg, .invalid64, aux: 3),              // 1F POP DS
        E(.and, .EbGb, .lockable),                       // 20 AND Eb,Gb
        E(.and, .EvGv, .lockable),                       // 21 AND Ev,Gv
        E(.and, .GbEb),                                  // 22 AND Gb,Eb
        E(.and, .GvEv),                                  // 23 AND Gv,Ev
        E(.and, .ALIb),                                  // 24 AND AL,Ib
        E(.and, .eAXIz),                                 // 25 AND eAX,Iz
        ud,                                              // 26 ES prefix
        ud,                                              // 27 DAA (BCD: #UD in every mode here)
        E(.sub, .EbGb, .lockable),                       // 28 SUB Eb,Gb
        E(.sub, .EvGv, .lockable),                       // 29 SUB Ev,Gv
        E(.sub, .GbEb),                                  // 2A SUB Gb,Eb
        E(.sub, .GvEv),                                  // 2B SUB Gv,Ev
        E(.sub, .ALIb),                                  // 2C SUB AL,Ib
        E(.sub, .eAXIz),                                 // 2D SUB eAX,Iz
        ud,                                              // 2E CS prefix
        ud,                                              // 2F DAS (BCD)
        E(.xor, .EbGb, .lockable),                       // 30 XOR Eb,Gb
        E(.xor, .EvGv, .lockable),                       // 31 XOR Ev,Gv
        E(.xor, .GbEb),                                  // 32 XOR Gb,Eb
        E(.xor, .GvEv),                                  // 33 XOR Gv,Ev
        E(.xor, .ALIb),                                  // 34 XOR AL,Ib
        E(.xor, .eAXIz),                                 // 35 XOR eAX,Iz
        ud,                                              // 36 SS prefix
        ud,                                              // 37 AAA (BCD)
        E(.cmp, .EbGb),                                  // 38 CMP Eb,Gb
        E(.cmp, .EvGv),                                  // 39 CMP Ev,Gv
        E(.cmp, .GbEb),                                  // 3A CMP Gb,Eb
        E(.cmp, .GvEv),                                  // 3B CMP Gv,Ev
        E(.cmp, .ALIb),                                  // 3C CMP AL,Ib
        E(.cmp, .eAXIz),                                 // 3D CMP eAX,Iz
        ud,                                              // 3E DS prefix
        ud,                                              // 3F AAS (BCD)
        E(.inc, .Zv, .invalid64),                        // 40 INC eAX (REX in 64-bit mode)
        E(.inc, .Zv, .invalid64),                        // 41 INC eCX
        E(.inc, .Zv, .invalid64),                        // 42 INC eDX
        E(.inc, .Zv, .invalid64),                        // 43 INC eBX
        E(.inc, .Zv, .invalid64),                        // 44 INC eSP
        E(.inc, .Zv, .invalid64),                        // 45 INC eBP
        E(.inc, .Zv, .invalid64),                        // 46 INC eSI
        E(.inc, .Zv, .invalid64),                        // 47 INC eDI
        E(.dec, .Zv, .invalid64),                        // 48 DEC eAX
        E(.dec, .Zv, .invalid64),                        // 49 DEC eCX
        E(.dec, .Zv, .invalid64),                        // 4A DEC eDX
        E(.dec, .Zv, .invalid64),                        // 4B DEC eBX
        E(.dec, .Zv, .invalid64),                        // 4C DEC eSP
        E(.dec, .Zv, .invalid64),                        // 4D DEC eBP
        E(.dec, .Zv, .invalid64),                        // 4E DEC eSI
        E(.dec, .Zv, .invalid64),                        // 4F DEC eDI
        E(.push, .Zv, [.default64, .operandIsSource]),   // 50 PUSH rAX/r8
        E(.push, .Zv, [.default64, .operandIsSource]),   // 51 PUSH rCX/r9
        E(.push, .Zv, [.default64, .operandIsSource]),   // 52 PUSH rDX/r10
        E(.push, .Zv, [.default64, .operandIsSource]),   // 53 PUSH rBX/r11
        E(.push, .Zv, [.default64, .operandIsSource]),   // 54 PUSH rSP/r12
        E(.push, .Zv, [.default64, .operandIsSource]),   // 55 PUSH rBP/r13
        E(.push, .Zv, [.default64, .operandIsSource]),   // 56 PUSH rSI/r14
        E(.push, .Zv, [.default64, .operandIsSource]),   // 57 PUSH rDI/r15
        E(.pop, .Zv, .default64),                        // 58 POP rAX/r8
        E(.pop, .Zv, .default64),                        // 59 POP rCX/r9
        E(.pop, .Zv, .default64),                        // 5A POP rDX/r10
        E(.pop, .Zv, .default64),                        // 5B POP rBX/r11
        E(.pop, .Zv, .default64),                        // 5C POP rSP/r12
        E(.pop, .Zv, .default64),                        // 5D POP rBP/r13
        E(.pop, .Zv, .default64),                        // 5E POP rSI/r14
        E(.pop, .Zv, .default64),                        // 5F POP rDI/r15
        E(.pusha, .none, .invalid64),                    // 60 PUSHA/PUSHAD
        E(.popa, .none, .invalid64),                     // 61 POPA/POPAD
        ud,                                              // 62 BOUND (no Operation) / EVEX
        E(.arpl, .EwGw, .invalid64, kind: .split64, aux: 0), // 63 ARPL Ew,Gw; MOVSXD Gv,Ed in 64-bit mode
        ud,                                              // 64 FS prefix
        ud,                                              // 65 GS prefix
        ud,                                              // 66 operand-size prefix
        ud,                                              // 67 address-size prefix
        E(.push, .Iz, [.default64, .operandIsSource]),   // 68 PUSH Iz
        E(.imul, .GvEvIz),                               // 69 IMUL Gv,Ev,Iz
        E(.push, .Ibs, [.default64, .operandIsSource]),  // 6A PUSH Ib (sign-extended)
        E(.imul, .GvEvIbs),                              // 6B IMUL Gv,Ev,Ib
        E(.ins, .stringB),                               // 6C INSB
        E(.ins, .stringV, .max32),                       // 6D INSW/INSD
        E(.outs, .stringB),                              // 6E OUTSB
        E(.outs, .stringV, .max32),                      // 6F OUTSW/OUTSD
        E(.jcc, .Jb, .force64),                          // 70 JO Jb
        E(.jcc, .Jb, .force64),                          // 71 JNO Jb
        E(.jcc, .Jb, .force64),                          // 72 JB Jb
        E(.jcc, .Jb, .force64),                          // 73 JAE Jb
        E(.jcc, .Jb, .force64),                          // 74 JE Jb
        E(.jcc, .Jb, .force64),                          // 75 JNE Jb
        E(.jcc, .Jb, .force64),                          // 76 JBE Jb
        E(.jcc, .Jb, .force64),                          // 77 JA Jb
        E(.jcc, .Jb, .force64),                          // 78 JS Jb
        E(.jcc, .Jb, .force64),                          // 79 JNS Jb
        E(.jcc, .Jb, .force64),                          // 7A JP Jb
        E(.jcc, .Jb, .force64),                          // 7B JNP Jb
        E(.jcc, .Jb, .force64),                          // 7C JL Jb
        E(.jcc, .Jb, .force64),                          // 7D JGE Jb
        E(.jcc, .Jb, .force64),                          // 7E JLE Jb
        E(.jcc, .Jb, .force64),                          // 7F JG Jb
        .group(.group1, .EbIb),                          // 80 group 1 Eb,Ib
        .group(.group1, .EvIz),                          // 81 group 1 Ev,Iz
        .group(.group1, .EbIb, .invalid64),              // 82 group 1 Eb,Ib (alias of 80)
        .group(.group1, .EvIbs),                         // 83 group 1 Ev,Ib (sign-extended)
        E(.test, .EbGb),                                 // 84 TEST Eb,Gb
        E(.test, .EvGv),                                 // 85 TEST Ev,Gv
        E(.xchg, .EbGb, .lockable),                      // 86 XCHG Eb,Gb
        E(.xchg, .EvGv, .lockable),                      // 87 XCHG Ev,Gv
        E(.mov, .EbGb),                                  // 88 MOV Eb,Gb
        E(.mov, .EvGv),                                  // 89 MOV Ev,Gv
        E(.mov, .GbEb),                                  // 8A MOV Gb,Eb
        E(.mov, .GvEv),                                  // 8B MOV Gv,Ev
        E(.movSegment, .EvSw),                           // 8C MOV Ev,Sw
        E(.lea, .GvM, .memoryOnly),                      // 8D LEA Gv,M
        E(.movSegment, .SwEw),                           // 8E MOV Sw,Ew
        .group(.group1A, .Ev, .default64),               // 8F group 1A: POP Ev
        E(.xchg, .ZveAX, kind: .xchgOrNop),              // 90 NOP / PAUSE / XCHG r8,rAX
        E(.xchg, .ZveAX),                                // 91 XCHG rCX,rAX
        E(.xchg, .ZveAX),                                // 92 XCHG rDX,rAX
        E(.xchg, .ZveAX),                                // 93 XCHG rBX,rAX
        E(.xchg, .ZveAX),                                // 94 XCHG rSP,rAX
        E(.xchg, .ZveAX),                                // 95 XCHG rBP,rAX
        E(.xchg, .ZveAX),                                // 96 XCHG rSI,rAX
        E(.xchg, .ZveAX),                                // 97 XCHG rDI,rAX
        E(.signExtendAccumulator, .none),                // 98 CBW/CWDE/CDQE
        E(.signExtendIntoDX, .none),                     // 99 CWD/CDQ/CQO
        E(.callFar, .Ap, .invalid64),                    // 9A CALLF Ap
        E(.fwait, .none),                                // 9B FWAIT
        E(.pushf, .none, .default64),                    // 9C PUSHF/D/Q
        E(.popf, .none, .default64),                     // 9D POPF/D/Q
        E(.sahf, .none),                                 // 9E SAHF
        E(.lahf, .none),                                 // 9F LAHF
        E(.mov, .ALOb),                                  // A0 MOV AL,Ob
        E(.mov, .eAXOv),                                 // A1 MOV eAX,Ov
        E(.mov, .ObAL),                                  // A2 MOV Ob,AL
        E(.mov, .OveAX),                                 // A3 MOV Ov,eAX
        E(.movs, .stringB),                              // A4 MOVSB
        E(.movs, .stringV),                              // A5 MOVSW/D/Q
        E(.cmps, .stringB),                              // A6 CMPSB
        E(.cmps, .stringV),                              // A7 CMPSW/D/Q
        E(.test, .ALIb),                                 // A8 TEST AL,Ib
        E(.test, .eAXIz),                                // A9 TEST eAX,Iz
        E(.stos, .stringB),                              // AA STOSB
        E(.stos, .stringV),                              // AB STOSW/D/Q
        E(.lods, .stringB),                              // AC LODSB
        E(.lods, .stringV),                              // AD LODSW/D/Q
        E(.scas, .stringB),                              // AE SCASB
        E(.scas, .stringV),                              // AF SCASW/D/Q
        E(.mov, .ZbIb),                                  // B0 MOV AL/R8B,Ib
        E(.mov, .ZbIb),                                  // B1 MOV CL/R9B,Ib
        E(.mov, .ZbIb),                                  // B2 MOV DL/R10B,Ib
        E(.mov, .ZbIb),                                  // B3 MOV BL/R11B,Ib
        E(.mov, .ZbIb),                                  // B4 MOV AH/SPL/R12B,Ib
        E(.mov, .ZbIb),                                  // B5 MOV CH/BPL/R13B,Ib
        E(.mov, .ZbIb),                                  // B6 MOV DH/SIL/R14B,Ib
        E(.mov, .ZbIb),                                  // B7 MOV BH/DIL/R15B,Ib
        E(.mov, .ZvIv),                                  // B8 MOV rAX/r8,Iv
        E(.mov, .ZvIv),                                  // B9 MOV rCX/r9,Iv
        E(.mov, .ZvIv),                                  // BA MOV rDX/r10,Iv
        E(.mov, .ZvIv),                                  // BB MOV rBX/r11,Iv
        E(.mov, .ZvIv),                                  // BC MOV rSP/r12,Iv
        E(.mov, .ZvIv),                                  // BD MOV rBP/r13,Iv
        E(.mov, .ZvIv),                                  // BE MOV rSI/r14,Iv
        E(.mov, .ZvIv),                                  // BF MOV rDI/r15,Iv
        .group(.group2, .EbIb),                          // C0 group 2 Eb,Ib
        .group(.group2, .EvIb),                          // C1 group 2 Ev,Ib
        E(.ret, .Iw, .force64),                          // C2 RET Iw
        E(.ret, .none, .force64),                        // C3 RET
        E(.loadFarPointer, .GvMp, [.invalid64, .memoryOnly], aux: 0), // C4 LES Gz,Mp (VEX when mod=11 or 64-bit)
        E(.loadFarPointer, .GvMp, [.invalid64, .memoryOnly], aux: 3), // C5 LDS Gz,Mp (VEX when mod=11 or 64-bit)
        .group(.group11, .EbIb),                         // C6 group 11: MOV Eb,Ib
        .group(.group11, .EvIz),                         // C7 group 11: MOV Ev,Iz
        E(.enter, .IwIb, .default64),                    // C8 ENTER Iw,Ib
        E(.leave, .none, .default64),                    // C9 LEAVE
        E(.retFar, .Iw),                                 // CA RETF Iw
        E(.retFar, .none),                               // CB RETF
        E(.int3, .none),                                 // CC INT3
        E(.int, .Ib),                                    // CD INT Ib
        E(.into, .none, .invalid64),                     // CE INTO
        E(.iret, .none),                                 // CF IRET/D/Q
        .group(.group2, .Eb1),                           // D0 group 2 Eb,1
        .group(.group2, .Ev1),                           // D1 group 2 Ev,1
        .group(.group2, .EbCL),                          // D2 group 2 Eb,CL
        .group(.group2, .EvCL),                          // D3 group 2 Ev,CL
        ud,                                              // D4 AAM (BCD)
        ud,                                              // D5 AAD (BCD)
        ud,                                              // D6 SALC (undocumented)
        E(.xlat, .xlat),                                 // D7 XLAT
        .group(.x87D8, .inherit),                        // D8 x87 escape (OpcodeTable+X87.swift)
        .group(.x87D9, .inherit),                        // D9 x87 escape (OpcodeTable+X87.swift)
        .group(.x87DA, .inherit),                        // DA x87 escape (OpcodeTable+X87.swift)
        .group(.x87DB, .inherit),                        // DB x87 escape (OpcodeTable+X87.swift)
        .group(.x87DC, .inherit),                        // DC x87 escape (OpcodeTable+X87.swift)
        .group(.x87DD, .inherit),                        // DD x87 escape (OpcodeTable+X87.swift)
        .group(.x87DE, .inherit),                        // DE x87 escape (OpcodeTable+X87.swift)
        .group(.x87DF, .inherit),                        // DF x87 escape (OpcodeTable+X87.swift)
        E(.loopNotEqual, .Jb, .force64),                 // E0 LOOPNE Jb
        E(.loopEqual, .Jb, .force64),                    // E1 LOOPE Jb
        E(.loop, .Jb, .force64),                         // E2 LOOP Jb
        E(.jumpIfCXZero, .Jb, .force64),                 // E3 JrCXZ Jb
        E(.in, .ALIb),                                   // E4 IN AL,Ib
        E(.in, .eAXIb, .max32),                          // E5 IN eAX,Ib
        E(.out, .IbAL),                                  // E6 OUT Ib,AL
        E(.out, .IbeAX, .max32),                         // E7 OUT Ib,eAX
        E(.callRelative, .Jz, .force64),                 // E8 CALL Jz
        E(.jmpRelative, .Jz, .force64),                  // E9 JMP Jz
        E(.jmpFar, .Ap, .invalid64),                     // EA JMPF Ap
        E(.jmpRelative, .Jb, .force64),                  // EB JMP Jb
        E(.in, .ALDX),                                   // EC IN AL,DX
        E(.in, .eAXDX, .max32),                          // ED IN eAX,DX
        E(.out, .DXAL),                                  // EE OUT DX,AL
        E(.out, .DXeAX, .max32),                         // EF OUT DX,eAX
        ud,                                              // F0 LOCK prefix
        E(.int1, .none),                                 // F1 INT1 (ICEBP)
        ud,                                              // F2 REPNE prefix
        ud,                                              // F3 REP prefix
        E(.hlt, .none),                                  // F4 HLT
        E(.cmc, .none),                                  // F5 CMC
        .group(.group3Eb, .Eb),                          // F6 group 3 Eb
        .group(.group3Ev, .Ev),                          // F7 group 3 Ev
        E(.clc, .none),                                  // F8 CLC
        E(.stc, .none),                                  // F9 STC
        E(.cli, .none),                                  // FA CLI
        E(.sti, .none),                                  // FB STI
        E(.cld, .none),                                  // FC CLD
        E(.std, .none),                                  // FD STD
        .group(.group4, .Eb),                            // FE group 4 Eb
        .group(.group5, .Ev),                            // FF group 5 Ev
    ]

    /// Rows that replace a one-byte row in 64-bit mode (`.split64`).
    static let longModeAlternates: [OpcodeEntry] = [
        E(.movsx, .GvEd, .only64),                       // 63 MOVSXD Gv,Ed (64-bit mode)
    ]

    // MARK: Two-byte map (0F xx)

    static let twoByte: [OpcodeEntry] = [
        .group(.group6, .inherit),                       // 0F 00 group 6
        .group(.group7, .inherit),                       // 0F 01 group 7
        E(.lar, .GvEw),                                  // 0F 02 LAR Gv,Ew
        E(.lsl, .GvEw),                                  // 0F 03 LSL Gv,Ew
        ud,                                              // 0F 04
        E(.syscall, .none),                              // 0F 05 SYSCALL
        E(.clts, .none),                                 // 0F 06 CLTS
        E(.sysret, .none),                               // 0F 07 SYSRET
        E(.invd, .none),                                 // 0F 08 INVD
        E(.wbinvd, .none),                               // 0F 09 WBINVD
        ud,                                              // 0F 0A
        E(.ud2, .none),                                  // 0F 0B UD2
        ud,                                              // 0F 0C
        E(.nop, .modRMOnly, .memoryOnly),                // 0F 0D PREFETCH/PREFETCHW Mb (hint)
        ud,                                              // 0F 0E FEMMS (3DNow!)
        ud,                                              // 0F 0F 3DNow!
        .prefixed(0x10),                                 // 0F 10 MOVUPS/MOVUPD/MOVSS/MOVSD V,W
        .prefixed(0x11),                                 // 0F 11 MOVUPS/MOVUPD/MOVSS/MOVSD W,V
        .prefixed(0x12),                                 // 0F 12 MOVLPS/MOVHLPS, 66 MOVLPD
        .prefixed(0x13),                                 // 0F 13 MOVLPS/MOVLPD Mq,Vq
        .prefixed(0x14),                                 // 0F 14 UNPCKLPS/UNPCKLPD
        .prefixed(0x15),                                 // 0F 15 UNPCKHPS/UNPCKHPD
        .prefixed(0x16),                                 // 0F 16 MOVHPS/MOVLHPS, 66 MOVHPD
        .prefixed(0x17),                                 // 0F 17 MOVHPS/MOVHPD Mq,Vq
        .group(.group16, .modRMOnly),                    // 0F 18 group 16: PREFETCHh (hint NOP)
        E(.nop, .modRMOnly),                             // 0F 19 reserved NOP
        E(.nop, .modRMOnly),                             // 0F 1A reserved NOP (MPX absent)
        E(.nop, .modRMOnly),                             // 0F 1B reserved NOP (MPX absent)
        E(.nop, .modRMOnly),                             // 0F 1C reserved NOP
        E(.nop, .modRMOnly),                             // 0F 1D reserved NOP
        E(.nop, .modRMOnly),                             // 0F 1E reserved NOP (F3 0F 1E FA/FB: ENDBR64/32)
        E(.nop, .modRMOnly),                             // 0F 1F NOP Ev (multi-byte NOP)
        E(.movControl, .RdCd),                           // 0F 20 MOV Rd,Cd
        E(.movDebug, .RdDd),                             // 0F 21 MOV Rd,Dd
        E(.movControl, .CdRd),                           // 0F 22 MOV Cd,Rd
        E(.movDebug, .DdRd),                             // 0F 23 MOV Dd,Rd
        ud,                                              // 0F 24
        ud,                                              // 0F 25
        ud,                                              // 0F 26
        ud,                                              // 0F 27
        .prefixed(0x28),                               // 0F 28 MOVAPS / 66 MOVAPD Vx,Wx
        .prefixed(0x29),                               // 0F 29 MOVAPS / 66 MOVAPD Wx,Vx
        .prefixed(0x2a),                                 // 0F 2A CVTPI2PS/CVTPI2PD/CVTSI2SS/CVTSI2SD
        .prefixed(0x2b),                                 // 0F 2B MOVNTPS/MOVNTPD
        .prefixed(0x2c),                                 // 0F 2C CVTTPS2PI/CVTTPD2PI/CVTTSS2SI/CVTTSD2SI
        .prefixed(0x2d),                                 // 0F 2D CVTPS2PI/CVTPD2PI/CVTSS2SI/CVTSD2SI
        .prefixed(0x2e),                                 // 0F 2E UCOMISS/UCOMISD
        .prefixed(0x2f),                                 // 0F 2F COMISS/COMISD
        E(.wrmsr, .none),                                // 0F 30 WRMSR
        E(.rdtsc, .none),                                // 0F 31 RDTSC
        E(.rdmsr, .none),                                // 0F 32 RDMSR
        E(.rdpmc, .none),                                // 0F 33 RDPMC
        E(.sysenter, .none),                             // 0F 34 SYSENTER
        E(.sysexit, .none),                              // 0F 35 SYSEXIT
        ud,                                              // 0F 36
        ud,                                              // 0F 37 GETSEC
        ud,                                              // 0F 38 three-byte map (not offered)
        ud,                                              // 0F 39
        ud,                                              // 0F 3A three-byte map (not offered)
        ud,                                              // 0F 3B
        ud,                                              // 0F 3C
        ud,                                              // 0F 3D
        ud,                                              // 0F 3E
        ud,                                              // 0F 3F
        E(.cmovcc, .GvEv),                               // 0F 40 CMOVO Gv,Ev
        E(.cmovcc, .GvEv),                               // 0F 41 CMOVNO
        E(.cmovcc, .GvEv),                               // 0F 42 CMOVB
        E(.cmovcc, .GvEv),                               // 0F 43 CMOVAE
        E(.cmovcc, .GvEv),                               // 0F 44 CMOVE
        E(.cmovcc, .GvEv),                               // 0F 45 CMOVNE
        E(.cmovcc, .GvEv),                               // 0F 46 CMOVBE
        E(.cmovcc, .GvEv),                               // 0F 47 CMOVA
        E(.cmovcc, .GvEv),                               // 0F 48 CMOVS
        E(.cmovcc, .GvEv),                               // 0F 49 CMOVNS
        E(.cmovcc, .GvEv),                               // 0F 4A CMOVP
        E(.cmovcc, .GvEv),                               // 0F 4B CMOVNP
        E(.cmovcc, .GvEv),                               // 0F 4C CMOVL
        E(.cmovcc, .GvEv),                               // 0F 4D CMOVGE
        E(.cmovcc, .GvEv),                               // 0F 4E CMOVLE
        E(.cmovcc, .GvEv),                               // 0F 4F CMOVG
        .prefixed(0x50),                                 // 0F 50 MOVMSKPS/MOVMSKPD
        .prefixed(0x51),                                 // 0F 51 SQRTPS/PD/SS/SD
        .prefixed(0x52),                                 // 0F 52 RSQRTPS/RSQRTSS
        .prefixed(0x53),                                 // 0F 53 RCPPS/RCPSS
        .prefixed(0x54),                                 // 0F 54 ANDPS/ANDPD
        .prefixed(0x55),                                 // 0F 55 ANDNPS/ANDNPD
        .prefixed(0x56),                                 // 0F 56 ORPS/ORPD
        .prefixed(0x57),                                 // 0F 57 XORPS/XORPD
        .prefixed(0x58),                                 // 0F 58 ADDPS/PD/SS/SD
        .prefixed(0x59),                                 // 0F 59 MULPS/PD/SS/SD
        .prefixed(0x5a),                                 // 0F 5A CVTPS2PD/CVTPD2PS/CVTSS2SD/CVTSD2SS
        .prefixed(0x5b),                                 // 0F 5B CVTDQ2PS/CVTPS2DQ/CVTTPS2DQ
        .prefixed(0x5c),                                 // 0F 5C SUBPS/PD/SS/SD
        .prefixed(0x5d),                                 // 0F 5D MINPS/PD/SS/SD
        .prefixed(0x5e),                                 // 0F 5E DIVPS/PD/SS/SD
        .prefixed(0x5f),                                 // 0F 5F MAXPS/PD/SS/SD
        .prefixed(0x60),                                 // 0F 60 PUNPCKLBW
        .prefixed(0x61),                                 // 0F 61 PUNPCKLWD
        .prefixed(0x62),                                 // 0F 62 PUNPCKLDQ
        .prefixed(0x63),                                 // 0F 63 PACKSSWB
        .prefixed(0x64),                                 // 0F 64 PCMPGTB
        .prefixed(0x65),                                 // 0F 65 PCMPGTW
        .prefixed(0x66),                                 // 0F 66 PCMPGTD
        .prefixed(0x67),                                 // 0F 67 PACKUSWB
        .prefixed(0x68),                                 // 0F 68 PUNPCKHBW
        .prefixed(0x69),                                 // 0F 69 PUNPCKHWD
        .prefixed(0x6a),                                 // 0F 6A PUNPCKHDQ
        .prefixed(0x6b),                                 // 0F 6B PACKSSDW
        .prefixed(0x6c),                                 // 0F 6C 66 PUNPCKLQDQ
        .prefixed(0x6d),                                 // 0F 6D 66 PUNPCKHQDQ
        .prefixed(0x6e),                                 // 0F 6E MOVD/MOVQ P/V,Ey
        .prefixed(0x6f),                                 // 0F 6F MOVQ Pq,Qq / 66 MOVDQA / F3 MOVDQU
        .prefixed(0x70),                                 // 0F 70 PSHUFW / 66 PSHUFD / F3 PSHUFHW / F2 PSHUFLW
        .prefixed(0x71),                                 // 0F 71 group 12 (PSRLW, PSRAW, PSLLW by Ib)
        .prefixed(0x72),                                 // 0F 72 group 13 (PSRLD, PSRAD, PSLLD by Ib)
        .prefixed(0x73),                                 // 0F 73 group 14 (PSRLQ, PSRLDQ, PSLLQ, PSLLDQ by Ib)
        .prefixed(0x74),                                 // 0F 74 PCMPEQB
        .prefixed(0x75),                                 // 0F 75 PCMPEQW
        .prefixed(0x76),                                 // 0F 76 PCMPEQD
        .prefixed(0x77),                                 // 0F 77 EMMS
        ud,                                              // 0F 78 VMREAD
        ud,                                              // 0F 79 VMWRITE
        ud,                                              // 0F 7A
        ud,                                              // 0F 7B
        .prefixed(0x7c),                                 // 0F 7C 66 HADDPD / F2 HADDPS
        .prefixed(0x7d),                                 // 0F 7D 66 HSUBPD / F2 HSUBPS
        .prefixed(0x7e),                                 // 0F 7E MOVD/MOVQ Ey,P/V / F3 MOVQ Vq,Wq
        .prefixed(0x7f),                                 // 0F 7F MOVQ Qq,Pq / 66 MOVDQA / F3 MOVDQU
        E(.jcc, .Jz, .force64),                          // 0F 80 JO Jz
        E(.jcc, .Jz, .force64),                          // 0F 81 JNO Jz
        E(.jcc, .Jz, .force64),                          // 0F 82 JB Jz
        E(.jcc, .Jz, .force64),                          // 0F 83 JAE Jz
        E(.jcc, .Jz, .force64),                          // 0F 84 JE Jz
        E(.jcc, .Jz, .force64),                          // 0F 85 JNE Jz
        E(.jcc, .Jz, .force64),                          // 0F 86 JBE Jz
        E(.jcc, .Jz, .force64),                          // 0F 87 JA Jz
        E(.jcc, .Jz, .force64),                          // 0F 88 JS Jz
        E(.jcc, .Jz, .force64),                          // 0F 89 JNS Jz
        E(.jcc, .Jz, .force64),                          // 0F 8A JP Jz
        E(.jcc, .Jz, .force64),                          // 0F 8B JNP Jz
        E(.jcc, .Jz, .force64),                          // 0F 8C JL Jz
        E(.jcc, .Jz, .force64),                          // 0F 8D JGE Jz
        E(.jcc, .Jz, .force64),                          // 0F 8E JLE Jz
        E(.jcc, .Jz, .force64),                          // 0F 8F JG Jz
        E(.setcc, .Eb),                                  // 0F 90 SETO Eb
        E(.setcc, .Eb),                                  // 0F 91 SETNO
        E(.setcc, .Eb),                                  // 0F 92 SETB
        E(.setcc, .Eb),                                  // 0F 93 SETAE
        E(.setcc, .Eb),                                  // 0F 94 SETE
        E(.setcc, .Eb),                                  // 0F 95 SETNE
        E(.setcc, .Eb),                                  // 0F 96 SETBE
        E(.setcc, .Eb),                                  // 0F 97 SETA
        E(.setcc, .Eb),                                  // 0F 98 SETS
        E(.setcc, .Eb),                                  // 0F 99 SETNS
        E(.setcc, .Eb),                                  // 0F 9A SETP
        E(.setcc, .Eb),                                  // 0F 9B SETNP
        E(.setcc, .Eb),                                  // 0F 9C SETL
        E(.setcc, .Eb),                                  // 0F 9D SETGE
        E(.setcc, .Eb),                                  // 0F 9E SETLE
        E(.setcc, .Eb),                                  // 0F 9F SETG
        E(.push, .Sreg, [.default64, .operandIsSource], aux: 4), // 0F A0 PUSH FS
        E(.pop, .Sreg, .default64, aux: 4),              // 0F A1 POP FS
        E(.cpuid, .none),                                // 0F A2 CPUID
        E(.bt, .EvGv),                                   // 0F A3 BT Ev,Gv
        E(.shld, .EvGvIb),                               // 0F A4 SHLD Ev,Gv,Ib
        E(.shld, .EvGvCL),                               // 0F A5 SHLD Ev,Gv,CL
        ud,                                              // 0F A6
        ud,                                              // 0F A7
        E(.push, .Sreg, [.default64, .operandIsSource], aux: 5), // 0F A8 PUSH GS
        E(.pop, .Sreg, .default64, aux: 5),              // 0F A9 POP GS
        ud,                                              // 0F AA RSM
        E(.bts, .EvGv, .lockable),                       // 0F AB BTS Ev,Gv
        E(.shrd, .EvGvIb),                               // 0F AC SHRD Ev,Gv,Ib
        E(.shrd, .EvGvCL),                               // 0F AD SHRD Ev,Gv,CL
        .group(.group15, .inherit),                      // 0F AE group 15
        E(.imul, .GvEv, .source2IsDestination),          // 0F AF IMUL Gv,Ev
        E(.cmpxchg, .EbGb, .lockable),                   // 0F B0 CMPXCHG Eb,Gb
        E(.cmpxchg, .EvGv, .lockable),                   // 0F B1 CMPXCHG Ev,Gv
        E(.loadFarPointer, .GvMp, .memoryOnly, aux: 2),  // 0F B2 LSS Gv,Mp
        E(.btr, .EvGv, .lockable),                       // 0F B3 BTR Ev,Gv
        E(.loadFarPointer, .GvMp, .memoryOnly, aux: 4),  // 0F B4 LFS Gv,Mp
        E(.loadFarPointer, .GvMp, .memoryOnly, aux: 5),  // 0F B5 LGS Gv,Mp
        E(.movzx, .GvEb),                                // 0F B6 MOVZX Gv,Eb
        E(.movzx, .GvEw),                                // 0F B7 MOVZX Gv,Ew
        .prefixed(0xb8),                               // 0F B8 F3 POPCNT Gv,Ev (JMPE without F3)
        ud,                                              // 0F B9 UD1
        .group(.group8, .EvIb),                          // 0F BA group 8 Ev,Ib
        E(.btc, .EvGv, .lockable),                       // 0F BB BTC Ev,Gv
        .prefixed(0xbc),                               // 0F BC BSF / F3 TZCNT Gv,Ev
        .prefixed(0xbd),                               // 0F BD BSR / F3 LZCNT Gv,Ev
        E(.movsx, .GvEb),                                // 0F BE MOVSX Gv,Eb
        E(.movsx, .GvEw),                                // 0F BF MOVSX Gv,Ew
        E(.xadd, .EbGb, .lockable),                      // 0F C0 XADD Eb,Gb
        E(.xadd, .EvGv, .lockable),                      // 0F C1 XADD Ev,Gv
        .prefixed(0xc2),                                 // 0F C2 CMPPS/PD/SS/SD
        .prefixed(0xc3),                                 // 0F C3 MOVNTI My,Gy
        .prefixed(0xc4),                                 // 0F C4 PINSRW
        .prefixed(0xc5),                                 // 0F C5 PEXTRW
        .prefixed(0xc6),                                 // 0F C6 SHUFPS/SHUFPD
        .group(.group9, .inherit),                       // 0F C7 group 9
        E(.bswap, .Zv),                                  // 0F C8 BSWAP rAX/r8
        E(.bswap, .Zv),                                  // 0F C9 BSWAP rCX/r9
        E(.bswap, .Zv),                                  // 0F CA BSWAP rDX/r10
        E(.bswap, .Zv),                                  // 0F CB BSWAP rBX/r11
        E(.bswap, .Zv),                                  // 0F CC BSWAP rSP/r12
        E(.bswap, .Zv),                                  // 0F CD BSWAP rBP/r13
        E(.bswap, .Zv),                                  // 0F CE BSWAP rSI/r14
        E(.bswap, .Zv),                                  // 0F CF BSWAP rDI/r15
        .prefixed(0xd0),                                 // 0F D0 66 ADDSUBPD / F2 ADDSUBPS
        .prefixed(0xd1),                                 // 0F D1 PSRLW
        .prefixed(0xd2),                                 // 0F D2 PSRLD
        .prefixed(0xd3),                                 // 0F D3 PSRLQ
        .prefixed(0xd4),                                 // 0F D4 PADDQ
        .prefixed(0xd5),                                 // 0F D5 PMULLW
        .prefixed(0xd6),                                 // 0F D6 66 MOVQ Wq,Vq / F3 MOVQ2DQ / F2 MOVDQ2Q
        .prefixed(0xd7),                                 // 0F D7 PMOVMSKB
        .prefixed(0xd8),                                 // 0F D8 PSUBUSB
        .prefixed(0xd9),                                 // 0F D9 PSUBUSW
        .prefixed(0xda),                                 // 0F DA PMINUB
        .prefixed(0xdb),                                 // 0F DB PAND
        .prefixed(0xdc),                                 // 0F DC PADDUSB
        .prefixed(0xdd),                                 // 0F DD PADDUSW
        .prefixed(0xde),                                 // 0F DE PMAXUB
        .prefixed(0xdf),                                 // 0F DF PANDN
        .prefixed(0xe0),                                 // 0F E0 PAVGB
        .prefixed(0xe1),                                 // 0F E1 PSRAW
        .prefixed(0xe2),                                 // 0F E2 PSRAD
        .prefixed(0xe3),                                 // 0F E3 PAVGW
        .prefixed(0xe4),                                 // 0F E4 PMULHUW
        .prefixed(0xe5),                                 // 0F E5 PMULHW
        .prefixed(0xe6),                                 // 0F E6 66 CVTTPD2DQ / F3 CVTDQ2PD / F2 CVTPD2DQ
        .prefixed(0xe7),                                 // 0F E7 MOVNTQ / 66 MOVNTDQ
        .prefixed(0xe8),                                 // 0F E8 PSUBSB
        .prefixed(0xe9),                                 // 0F E9 PSUBSW
        .prefixed(0xea),                                 // 0F EA PMINSW
        .prefixed(0xeb),                                 // 0F EB POR
        .prefixed(0xec),                                 // 0F EC PADDSB
        .prefixed(0xed),                                 // 0F ED PADDSW
        .prefixed(0xee),                                 // 0F EE PMAXSW
        .prefixed(0xef),                                 // 0F EF PXOR
        .prefixed(0xf0),                                 // 0F F0 F2 LDDQU
        .prefixed(0xf1),                                 // 0F F1 PSLLW
        .prefixed(0xf2),                                 // 0F F2 PSLLD
        .prefixed(0xf3),                                 // 0F F3 PSLLQ
        .prefixed(0xf4),                                 // 0F F4 PMULUDQ
        .prefixed(0xf5),                                 // 0F F5 PMADDWD
        .prefixed(0xf6),                                 // 0F F6 PSADBW
        .prefixed(0xf7),                                 // 0F F7 MASKMOVQ / 66 MASKMOVDQU
        .prefixed(0xf8),                                 // 0F F8 PSUBB
        .prefixed(0xf9),                                 // 0F F9 PSUBW
        .prefixed(0xfa),                                 // 0F FA PSUBD
        .prefixed(0xfb),                                 // 0F FB PSUBQ
        .prefixed(0xfc),                                 // 0F FC PADDB
        .prefixed(0xfd),                                 // 0F FD PADDW
        .prefixed(0xfe),                                 // 0F FE PADDD
        ud,                                              // 0F FF UD0
    ]

    // MARK: Groups (indexed by GroupID; rows by ModRM.reg)

    /// The general-purpose groups; x87 and SIMD ones come from their own files.
    static let groups: [GroupID: GroupTable] = generalGroups.merging(x87Groups) { a, _ in a }
        .merging(simdGroups) { a, _ in a }

    private static let generalGroups: [GroupID: GroupTable] = [
        // 80-83 (form from the opcode row)
        .group1: GroupTable(both: [
            E(.add, .inherit, .lockable),                // /0 ADD
            E(.or, .inherit, .lockable),                 // /1 OR
            E(.adc, .inherit, .lockable),                // /2 ADC
            E(.sbb, .inherit, .lockable),                // /3 SBB
            E(.and, .inherit, .lockable),                // /4 AND
            E(.sub, .inherit, .lockable),                // /5 SUB
            E(.xor, .inherit, .lockable),                // /6 XOR
            E(.cmp, .inherit),                           // /7 CMP
        ]),
        // 8F
        .group1A: GroupTable(both: [
            E(.pop, .inherit),                           // /0 POP Ev
            ud, ud, ud, ud, ud, ud, ud,                  // /1-/7 (XOP on AMD)
        ]),
        // C0, C1, D0-D3 (form from the opcode row)
        .group2: GroupTable(both: [
            E(.rol, .inherit),                           // /0 ROL
            E(.ror, .inherit),                           // /1 ROR
            E(.rcl, .inherit),                           // /2 RCL
            E(.rcr, .inherit),                           // /3 RCR
            E(.shl, .inherit),                           // /4 SHL/SAL
            E(.shr, .inherit),                           // /5 SHR
            E(.shl, .inherit),                           // /6 SAL (undocumented alias of /4)
            E(.sar, .inherit),                           // /7 SAR
        ]),
        // F6
        .group3Eb: GroupTable(both: [
            E(.test, .EbIb),                             // /0 TEST Eb,Ib
            E(.test, .EbIb),                             // /1 TEST Eb,Ib (alias)
            E(.not, .Eb, .lockable),                     // /2 NOT Eb
            E(.neg, .Eb, .lockable),                     // /3 NEG Eb
            E(.mul, .Eb, .operandIsSource),              // /4 MUL Eb
            E(.imulWide, .Eb, .operandIsSource),         // /5 IMUL Eb
            E(.div, .Eb, .operandIsSource),              // /6 DIV Eb
            E(.idiv, .Eb, .operandIsSource),             // /7 IDIV Eb
        ]),
        // F7
        .group3Ev: GroupTable(both: [
            E(.test, .EvIz),                             // /0 TEST Ev,Iz
            E(.test, .EvIz),                             // /1 TEST Ev,Iz (alias)
            E(.not, .Ev, .lockable),                     // /2 NOT Ev
            E(.neg, .Ev, .lockable),                     // /3 NEG Ev
            E(.mul, .Ev, .operandIsSource),              // /4 MUL Ev
            E(.imulWide, .Ev, .operandIsSource),         // /5 IMUL Ev
            E(.div, .Ev, .operandIsSource),              // /6 DIV Ev
            E(.idiv, .Ev, .operandIsSource),             // /7 IDIV Ev
        ]),
        // FE
        .group4: GroupTable(both: [
            E(.inc, .Eb, .lockable),                     // /0 INC Eb
            E(.dec, .Eb, .lockable),                     // /1 DEC Eb
            ud, ud, ud, ud, ud, ud,                      // /2-/7
        ]),
        // FF
        .group5: GroupTable(memory: [
            E(.inc, .Ev, .lockable),                     // /0 INC Ev
            E(.dec, .Ev, .lockable),                     // /1 DEC Ev
            E(.callIndirect, .Ev, [.force64, .operandIsSource]), // /2 CALL Ev
            E(.callFar, .Mp, .operandIsSource),          // /3 CALLF Mp
            E(.jmpIndirect, .Ev, [.force64, .operandIsSource]),  // /4 JMP Ev
            E(.jmpFar, .Mp, .operandIsSource),           // /5 JMPF Mp
            E(.push, .Ev, [.default64, .operandIsSource]), // /6 PUSH Ev
            ud,                                          // /7
        ], register: [
            E(.inc, .Ev),                                // /0 INC Ev
            E(.dec, .Ev),                                // /1 DEC Ev
            E(.callIndirect, .Ev, [.force64, .operandIsSource]), // /2 CALL Ev
            ud,                                          // /3 CALLF needs memory
            E(.jmpIndirect, .Ev, [.force64, .operandIsSource]),  // /4 JMP Ev
            ud,                                          // /5 JMPF needs memory
            E(.push, .Ev, [.default64, .operandIsSource]), // /6 PUSH Ev
            ud,                                          // /7
        ]),
        // C6, C7
        .group11: GroupTable(both: [
            E(.mov, .inherit),                           // /0 MOV Eb,Ib / Ev,Iz
            ud, ud, ud, ud, ud, ud,                      // /1-/6
            ud,                                          // /7 XABORT / XBEGIN (no RTM)
        ]),
        // 0F 00
        .group6: GroupTable(both: [
            E(.sldt, .RvMw),                             // /0 SLDT Rv/Mw
            E(.str, .RvMw),                              // /1 STR Rv/Mw
            E(.lldt, .Ew, .operandIsSource),             // /2 LLDT Ew
            E(.ltr, .Ew, .operandIsSource),              // /3 LTR Ew
            E(.verr, .Ew, .operandIsSource),             // /4 VERR Ew
            E(.verw, .Ew, .operandIsSource),             // /5 VERW Ew
            ud, ud,                                      // /6-/7
        ]),
        // 0F 01
        .group7: GroupTable(memory: [
            E(.sgdt, .Ms, .force64),                     // /0 SGDT Ms
            E(.sidt, .Ms, .force64),                     // /1 SIDT Ms
            E(.lgdt, .Ms, [.force64, .operandIsSource]), // /2 LGDT Ms
            E(.lidt, .Ms, [.force64, .operandIsSource]), // /3 LIDT Ms
            E(.smsw, .RvMw),                             // /4 SMSW Mw
            ud,                                          // /5 RSTORSSP (no CET)
            E(.lmsw, .Ew, .operandIsSource),             // /6 LMSW Ew
            E(.invlpg, .Mb, .operandIsSource),           // /7 INVLPG Mb
        ], register: [
            ud,                                          // /0 C0-C7: VMCALL etc. (no VMX)
            .rmTable(.group7Reg1),                       // /1 C8 MONITOR, C9 MWAIT
            ud,                                          // /2 D0-D7: XGETBV etc. (no XSAVE)
            ud,                                          // /3 D8-DF: SVM
            E(.smsw, .RvMw),                             // /4 SMSW Rv
            ud,                                          // /5 E8-EF: SERIALIZE, RDPKRU, ...
            E(.lmsw, .Ew, .operandIsSource),             // /6 LMSW Ew
            .rmTable(.group7Reg7),                       // /7 F8 SWAPGS, F9 RDTSCP
        ]),
        // 0F BA (form Ev,Ib from the opcode row)
        .group8: GroupTable(both: [
            ud, ud, ud, ud,                              // /0-/3
            E(.bt, .inherit),                            // /4 BT Ev,Ib
            E(.bts, .inherit, .lockable),                // /5 BTS Ev,Ib
            E(.btr, .inherit, .lockable),                // /6 BTR Ev,Ib
            E(.btc, .inherit, .lockable),                // /7 BTC Ev,Ib
        ]),
        // 0F C7
        .group9: GroupTable(memory: [
            ud,                                          // /0
            E(.cmpxchgDouble, .Mcx, .lockable),          // /1 CMPXCHG8B Mq / CMPXCHG16B Mdq (REX.W)
            ud, ud, ud, ud,                              // /2-/5 (XRSTORS etc.)
            ud,                                          // /6 VMPTRLD etc. (no VMX)
            ud,                                          // /7 VMPTRST
        ], register: [
            ud, ud, ud, ud, ud, ud,                      // /0-/5
            E(.rdrand, .Ev),                             // /6 RDRAND Rv (not offered: the interpreter raises #UD)
            ud,                                          // /7 RDSEED / RDPID (not offered)
        ]),
        // 0F AE
        .group15: GroupTable(memory: [
            E(.fxsave, .Mfx),                            // /0 FXSAVE M512
            E(.fxrstor, .Mfx, .operandIsSource),         // /1 FXRSTOR M512
            E(.ldmxcsr, .Md, .operandIsSource),          // /2 LDMXCSR Md
            E(.stmxcsr, .Md),                            // /3 STMXCSR Md
            ud,                                          // /4 XSAVE (not offered)
            ud,                                          // /5 XRSTOR (not offered)
            E(.clwb, .Mb, .operandIsSource),             // /6 66: CLWB Mb (#UD unless offered); XSAVEOPT (not offered)
            E(.clflush, .Mb, .operandIsSource),          // /7 CLFLUSH Mb (66: CLFLUSHOPT, same effect)
        ], register: [
            ud, ud, ud, ud,                              // /0-/3 F3: RDFSBASE etc. (not offered)
            ud,                                          // /4
            E(.lfence, .none),                           // /5 LFENCE
            E(.mfence, .none),                           // /6 MFENCE
            E(.sfence, .none),                           // /7 SFENCE
        ]),
        // 0F 18 (all hint NOPs; /0 PREFETCHNTA, /1-/3 PREFETCHT0-2)
        .group16: GroupTable(both: [
            E(.nop, .inherit), E(.nop, .inherit), E(.nop, .inherit), E(.nop, .inherit),
            E(.nop, .inherit), E(.nop, .inherit), E(.nop, .inherit), E(.nop, .inherit),
        ]),
    ]

    // MARK: ModRM.rm tables for mod = 11 special encodings (indexed by RMTableID; rows by rm)

    static let rmTables: [RMTableID: [OpcodeEntry]] = [
        .group7Reg1: [                                   // 0F 01 /1, mod=11
            E(.monitor, .none),                          // C8 MONITOR
            E(.mwait, .none),                            // C9 MWAIT
            E(.clac, .none),                             // CA CLAC (#UD unless CPUID offers SMAP)
            E(.stac, .none),                             // CB STAC
            ud, ud, ud,                                  // CC-CE
            ud,                                          // CF ENCLS
        ],
        .group7Reg7: [                                   // 0F 01 /7, mod=11
            E(.swapgs, .none, .only64),                  // F8 SWAPGS
            E(.rdtscp, .none),                           // F9 RDTSCP
            ud, ud, ud, ud, ud, ud,                      // FA-FF (MONITORX, CLZERO, ...)
        ],
    ].merging(x87RMTables) { a, _ in a }

    // MARK: Mandatory-prefix tables (keyed by the 0F opcode byte; rows: none, 66, F3, F2)

    /// The general-purpose ones; the SIMD ones are in OpcodeTable+SIMD.swift.
    static let prefixed: [UInt8: [OpcodeEntry]] = [
        0xb8: [ud, ud, E(.popcnt, .GvEv), ud],                                    // 0F B8 F3 POPCNT
        0xbc: [E(.bsf, .GvEv), E(.bsf, .GvEv), E(.tzcnt, .GvEv), E(.bsf, .GvEv)], // 0F BC BSF, F3 TZCNT
        0xbd: [E(.bsr, .GvEv), E(.bsr, .GvEv), E(.lzcnt, .GvEv), E(.bsr, .GvEv)], // 0F BD BSR, F3 LZCNT
    ].merging(simdPrefixed) { a, _ in a }
}

// MARK: Flattened tables and safe row lookups (a malformed table gives #UD, never a trap)

extension OpcodeTables {
    /// `rows` cut or padded with #UD rows to exactly `count`.
    private static func exactly(_ count: Int, _ rows: [OpcodeEntry]) -> [OpcodeEntry] {
        Array((rows + [OpcodeEntry](repeating: .invalid, count: count)).prefix(count))
    }

    /// All groups in one array, in `GroupID` order: 16 rows per group, memory rows (reg 0-7) then
    /// register rows. A group missing from the tables is all #UD (a test checks there is none).
    static let groupRows: [OpcodeEntry] = GroupID.allCases.flatMap { id in
        let g = groups[id] ?? GroupTable(both: [])
        return exactly(8, g.memory) + exactly(8, g.register)
    }
    /// All rm tables in one array, in `RMTableID` order, 8 rows each.
    static let rmRows: [OpcodeEntry] = RMTableID.allCases.flatMap { exactly(8, rmTables[$0] ?? []) }
    /// The mandatory-prefix tables of the 0F map in one array: 4 rows for each opcode byte.
    static let prefixedRows: [OpcodeEntry] = (0..<256).flatMap { exactly(4, prefixed[UInt8($0)] ?? []) }
    /// The memory and register rows of each `ModSplitID`, in order.
    static let modSplitRows: [OpcodeEntry] = ModSplitID.allCases.flatMap { exactly(2, modSplits[$0] ?? []) }

    @inline(__always)
    static func row(_ table: [OpcodeEntry], _ index: Int) -> OpcodeEntry {
        index >= 0 && index < table.count ? table[index] : .invalid
    }
}
