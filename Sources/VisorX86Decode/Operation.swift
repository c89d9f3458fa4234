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
    /// 66 0F AE /6 CLWB Mb: write back a cache line (no caches here: only the address is
    /// checked). #UD unless CPUID.7.0:EBX.CLWB[24]; without 66 it is XSAVEOPT (not offered).
    case clwb

    // MARK: SMAP
    /// 0F 01 CA CLAC, 0F 01 CB STAC: clear / set RFLAGS.AC. #UD unless CPUID.7.0:EBX.SMAP[20],
    /// and at CPL > 0.
    case clac, stac

    // MARK: x87 control and environment
    /// FNINIT: reset the x87 control, status and tag words and the pointers.
    case fninit
    /// FNSTCW / FLDCW / FNSTSW memory-or-AX forms; FNCLEX clears the exception flags.
    case fnstcw, fldcw, fnstsw, fnclex
    /// FNSTENV / FLDENV (14 or 28 bytes by operand size), FNSAVE / FRSTOR (94 or 108 bytes).
    case fnstenv, fldenv, fnsave, frstor
    /// FWAIT: delivers a pending unmasked x87 exception (#MF).
    case fwait
    /// FXSAVE / FXRSTOR memory (512 bytes, 64-bit pointer format with REX.W).
    case fxsave, fxrstor

    // MARK: x87 data movement. Register operands are `.x87` (ST(i)); memory operands say their
    // size; the destination of loads and arithmetic with a memory source is ST(0).
    /// FLD m32fp/m64fp/m80fp or ST(i) (push).
    case fld
    /// FILD m16int/m32int/m64int, FBLD m80bcd (push).
    case fild, fbld
    /// FST / FSTP to m32fp/m64fp/m80fp or ST(i).
    case fst, fstp
    /// D9 D8+i (undocumented): FSTP ST(i) without the stack-underflow check ("FSTPNCE").
    case fstpnce
    /// FIST / FISTP (rounded by RC) and FISTTP (truncated, SSE3) to m16/m32/m64 int; FBSTP m80bcd.
    case fist, fistp, fisttp, fbstp
    case fxch
    /// FCMOVcc ST(0), ST(i) on `condition` (the CMOVcc code: B, E, BE, U and their negations).
    case fcmovcc
    case ffree, ffreep
    /// FLD1, FLDL2T, FLDL2E, FLDPI, FLDLG2, FLDLN2, FLDZ.
    case fld1, fldl2t, fldl2e, fldpi, fldlg2, fldln2, fldz

    // MARK: x87 arithmetic: destination ← destination op source ("r" forms: source op destination);
    // the `p` forms pop afterwards; the `fi` forms take an integer memory source.
    case fadd, faddp, fiadd, fsub, fsubp, fisub, fsubr, fsubrp, fisubr
    case fmul, fmulp, fimul, fdiv, fdivp, fidiv, fdivr, fdivrp, fidivr
    /// Compares of ST(0) with the source: FCOM/FCOMP/FCOMPP (C3 C2 C0), FICOM/FICOMP, the
    /// unordered FUCOM*, FCOMI*/FUCOMI* (ZF PF CF), FTST (with 0) and FXAM (class).
    case fcom, fcomp, fcompp, ficom, ficomp, fucom, fucomp, fucompp, fcomi, fcomip, fucomi, fucomip, ftst, fxam
    case fchs, fabs, fsqrt, frndint, fscale, fxtract, fprem, fprem1
    case f2xm1, fyl2x, fyl2xp1, fptan, fpatan, fsin, fcos, fsincos
    case fdecstp, fincstp, fnop
    /// DB E0 FNENI, DB E1 FNDISI, DB E4 FNSETPM: 8087/287 control instructions that later
    /// processors ignore (no-wait: they raise no #MF).
    case fnIgnored

    // MARK: SIMD integer (MMX registers when the operands are `.mmx`, XMM when `.xmm`)
    /// MOVUPS / MOVAPS / MOVDQU / MOVDQA / MOVUPD / MOVAPD / MOVNTPS / MOVNTDQ ...: 16-byte moves
    /// (the aligned forms #GP on misaligned memory).
    case movUnaligned128, movAligned128
    /// MOVD / MOVQ between vector registers, GPRs and memory: the low 4 or 8 bytes of the
    /// source, zero-extended into a vector register destination (MOVQ2DQ, MOVDQ2Q too).
    case movdq
    /// PXOR / XORPS / XORPD, POR / ORPS, PAND / ANDPS, PANDN / ANDNPS.
    case pxor, por, pand, pandn
    case paddb, paddw, paddd, paddq, psubb, psubw, psubd, psubq
    /// Saturating add and subtract, signed (s) and unsigned (us).
    case paddsb, paddsw, paddusb, paddusw, psubsb, psubsw, psubusb, psubusw
    case pmullw, pmulhw, pmulhuw, pmuludq, pmaddwd, psadbw, pavgb, pavgw
    case pminub, pmaxub, pminsw, pmaxsw
    case pcmpeqb, pcmpeqw, pcmpeqd, pcmpgtb, pcmpgtw, pcmpgtd
    /// Shifts by a vector register or memory count (source) or an immediate (source is `.immediate`).
    case psllw, pslld, psllq, psrlw, psrld, psrlq, psraw, psrad
    /// PSLLDQ / PSRLDQ: XMM byte shifts by an immediate.
    case pslldq, psrldq
    case packsswb, packssdw, packuswb
    /// Interleaves (UNPCKLPS = PUNPCKLDQ, UNPCKLPD = PUNPCKLQDQ, and the high ones likewise).
    case punpcklbw, punpcklwd, punpckldq, punpcklqdq, punpckhbw, punpckhwd, punpckhdq, punpckhqdq
    /// PSHUFD / PSHUFHW / PSHUFLW / PSHUFW destination, source, order in `immediate`.
    case pshufd, pshufhw, pshuflw, pshufw
    /// PINSRW vector, r32/m16, index; PEXTRW r32, vector, index (index in `immediate`).
    case pinsrw, pextrw
    /// PMOVMSKB r32, vector: the top bit of each byte.
    case pmovmskb
    /// MASKMOVQ / MASKMOVDQU: a byte-masked store of `destination` to DS:rDI (mask in `source`).
    case maskmov
    /// EMMS: every x87 register empty.
    case emms

    // MARK: SSE/SSE2 floating point: ps/pd packed single/double, ss/sd scalar (the upper part
    // of the destination kept)
    /// MOVSS / MOVSD: register to register merges the low element; a load zeroes the rest.
    case movss, movsd
    /// MOVLPS/MOVLPD and MOVHPS/MOVHPD (memory only): the low or high 8 bytes of an XMM register.
    case movlp, movhp
    /// MOVHLPS / MOVLHPS (registers only).
    case movhlps, movlhps
    case shufps, shufpd
    case movmskps, movmskpd
    case addps, addpd, addss, addsd, subps, subpd, subss, subsd
    case mulps, mulpd, mulss, mulsd, divps, divpd, divss, divsd
    case minps, minpd, minss, minsd, maxps, maxpd, maxss, maxsd
    case sqrtps, sqrtpd, sqrtss, sqrtsd
    /// Reciprocal and reciprocal square root approximations (single precision).
    case rcpps, rcpss, rsqrtps, rsqrtss
    /// CMPccPS/PD/SS/SD: predicate in `immediate` (bits 2:0).
    case cmpps, cmppd, cmpss, cmpsd
    /// COMISS / COMISD / UCOMISS / UCOMISD: ZF PF CF from the low elements.
    case comiss, comisd, ucomiss, ucomisd
    /// Conversions (t: truncating; pi: MMX integers; si: a general-purpose register; dq: XMM integers).
    case cvtpi2ps, cvtpi2pd, cvtsi2ss, cvtsi2sd
    case cvtps2pi, cvttps2pi, cvtpd2pi, cvttpd2pi, cvtss2si, cvttss2si, cvtsd2si, cvttsd2si
    case cvtps2pd, cvtpd2ps, cvtss2sd, cvtsd2ss
    case cvtdq2ps, cvtps2dq, cvttps2dq, cvtdq2pd, cvtpd2dq, cvttpd2dq
    /// LDMXCSR / STMXCSR memory.
    case ldmxcsr, stmxcsr

    // MARK: SSE3 (LDDQU is `movUnaligned128`, FISTTP is with the x87 stores)
    /// ADDSUBPS/PD: even elements subtract, odd ones add.
    case addsubps, addsubpd
    /// HADDPS/PD, HSUBPS/PD: pairs within the destination, then within the source.
    case haddps, haddpd, hsubps, hsubpd
    /// MOVSLDUP / MOVSHDUP (even / odd singles duplicated), MOVDDUP (the low double duplicated).
    case movsldup, movshdup, movddup
}
