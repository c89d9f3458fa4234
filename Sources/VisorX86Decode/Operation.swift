// Every operation the decoder can produce. One case per behaviour, not per encoding: operand
// locations and sizes come in the DecodedInstruction. Conventions are noted where the operands
// are not simply `destination ← destination op source`.

/// An x86 operation, as the interpreter dispatches on it.
public enum Operation: UInt16, Sendable, CaseIterable {
    // MARK: Integer arithmetic and logic (flags as the SDM says)
    case add, or, adc, sbb, and, sub, xor
    /// Like `sub` / `and`, but only flags are written.
    case cmp, test
    case inc, dec, not, neg
    /// One-operand MUL / IMUL: rDX:rAX (or AX for bytes) ← rAX * source.
    case mul, imulWide
    /// IMUL destination ← source * source2 (two-operand form: source2 = destination's old value
    /// is expressed by the decoder as source2 = destination).
    case imul
    /// DIV / IDIV source: rAX, rDX ← quotient, remainder of rDX:rAX / source; #DE on zero or overflow.
    case div, idiv
    /// Shifts and rotates: destination by count in `source` (CL or imm8 or the constant 1).
    case rol, ror, rcl, rcr, shl, shr, sar
    /// Double shifts: destination, source (register), count in `source2`.
    case shld, shrd
    /// Bit tests: destination (r/m), bit index in `source` (register or imm8).
    case bt, bts, btr, btc
    case bsf, bsr, tzcnt, lzcnt, popcnt
    case bswap
    /// CBW/CWDE/CDQE (sign-extend within rAX) and CWD/CDQ/CQO (into rDX) at `operandSize`.
    case signExtendAccumulator, signExtendIntoDX
    /// XCHG destination, source (with memory: implicitly locked).
    case xchg
    /// CMPXCHG destination, source (accumulator implied).
    case cmpxchg
    /// CMPXCHG8B / CMPXCHG16B memory (`operandSize` 8 or 16).
    case cmpxchgDouble
    case xadd

    // MARK: Data movement
    case mov
    /// MOVZX / MOVSX / MOVSXD: destination ← extend(source), sizes from the operands.
    case movzx, movsx
    case lea
    /// CMOVcc destination, source on `condition` (32-bit destinations are zero-extended even if false).
    case cmovcc
    /// SETcc destination (byte) on `condition`.
    case setcc
    case lahf, sahf
    /// XLAT: AL ← [seg:rBX + AL].
    case xlat

    // MARK: Stack
    /// PUSH source (register, memory, immediate or segment) at `operandSize`.
    case push
    /// POP destination at `operandSize`.
    case pop
    case pushf, popf
    /// PUSHA/POPA (not in 64-bit mode).
    case pusha, popa
    /// ENTER immediate (frame size), immediate2 (nesting level).
    case enter
    case leave

    // MARK: Control flow
    /// Relative JMP / CALL / Jcc: target = next instruction + immediate (signed).
    case jmpRelative, callRelative, jcc
    /// Indirect near JMP / CALL through `source` (register or memory).
    case jmpIndirect, callIndirect
    /// Near RET; `immediate` bytes are popped after the return address (0 for plain RET).
    case ret
    /// Far JMP / CALL: direct (immediate = offset, immediate2 = selector) or through memory (`source`).
    case jmpFar, callFar
    /// Far RET; `immediate` extra bytes popped.
    case retFar
    /// LOOP, LOOPE, LOOPNE (rCX at `addressSize`), JrCXZ: relative target in `immediate`.
    case loop, loopEqual, loopNotEqual, jumpIfCXZero
    /// INT immediate, INT3, INTO, INT1 (ICEBP).
    case int, int3, into, int1
    /// IRET / IRETD / IRETQ at `operandSize`.
    case iret
    case syscall, sysret, sysenter, sysexit

    // MARK: Flags
    case clc, stc, cmc, cld, std, cli, sti

    // MARK: Strings (rSI/rDI/rCX at `addressSize`, element `operandSize`, `prefixes.repetition`)
    case movs, cmps, stos, lods, scas, ins, outs

    // MARK: Input/output
    /// IN destination (AL/AX/EAX), port in `source` (immediate or DX).
    case `in`
    /// OUT port in `destination` (immediate or DX), value in `source` (AL/AX/EAX).
    case out

    // MARK: System
    case hlt, cpuid, rdtsc, rdtscp, rdmsr, wrmsr, rdpmc
    /// LGDT / LIDT / SGDT / SIDT memory (limit then base).
    case lgdt, lidt, sgdt, sidt
    /// LLDT / LTR / SLDT / STR, VERR / VERW, LAR / LSL, ARPL.
    case lldt, ltr, sldt, str, verr, verw, lar, lsl, arpl
    /// LMSW / SMSW, CLTS.
    case lmsw, smsw, clts
    /// MOV to/from a control or debug register (operands say which way).
    case movControl, movDebug
    /// MOV to/from a segment register (operands say which way).
    case movSegment
    /// LDS/LES/LSS/LFS/LGS destination, memory far pointer; the segment in `source2.index`.
    case loadFarPointer
    case invlpg, invd, wbinvd, swapgs
    /// MONITOR/MWAIT are #UD unless CPUID offers them; listed so the decoder can name them.
    case monitor, mwait
    case ud2
    /// RDRAND / RDSEED are not offered (CPUID clear): #UD. Listed for completeness.
    case rdrand

    // MARK: No-ops and hints
    /// NOP, multi-byte NOP (0F 1F /0), PAUSE, ENDBR64, hint NOPs (0F 18-1F), PREFETCH*.
    case nop, pause
    case lfence, mfence, sfence, clflush

    // MARK: x87 and SSE: only what compiled Embedded Swift guests and boot stubs use
    /// FNINIT: reset the x87 control, status and tag words.
    case fninit
    /// FNSTCW / FLDCW / FNSTSW memory-or-AX forms.
    case fnstcw, fldcw, fnstsw
    /// MOVUPS / MOVAPS / MOVDQU / MOVDQA / MOVUPD / MOVAPD: 16-byte moves (aligned forms #GP on
    /// misaligned memory).
    case movUnaligned128, movAligned128
    /// MOVD / MOVQ between a GPR or memory and an XMM register (zero-extending into XMM).
    case movdq
    /// PXOR / XORPS / XORPD, POR / ORPS, PAND / ANDPS, PANDN / ANDNPS on 128 bits.
    case pxor, por, pand, pandn
    /// PSHUFD destination, source, order in `immediate`.
    case pshufd
    /// PUNPCKLQDQ (used by compilers to splat 64-bit values).
    case punpcklqdq
    /// LDMXCSR / STMXCSR memory.
    case ldmxcsr, stmxcsr
    /// FXSAVE / FXRSTOR memory (512 bytes); the x87 part is kept as stored.
    case fxsave, fxrstor
}
