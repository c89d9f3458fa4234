// The MMX, SSE and SSE2 rows of the 0F map as data, after the Intel SDM volume 2, appendix A
// (tables ): for each opcode the four mandatory-prefix columns [none, 66, F3, F2].
// Without a prefix most integer instructions work on MMX registers (Pq, Qq), with 66 on XMM
// registers (Vx, Wx); F3 and F2 select the scalar single and double forms of the float ones.
// Empty cells are #UD, as are SSE3 and later (not offered by Visor's CPUID).

extension OpcodeTables {
    /// An integer instruction that exists on MMX (no prefix) and XMM (66) registers.
    private static func mmxOrXMM(_ op: Operation, mmx: OperandForm = .PqQq) -> [OpcodeEntry] {
        [E(op, mmx), E(op, .VxWx), ud, ud]
    }

    /// A float instruction with its packed single, packed double, scalar single and scalar double forms.
    private static func floatFamily(_ ps: Operation, _ pd: Operation, _ ss: Operation, _ sd: Operation) -> [OpcodeEntry] {
        [E(ps, .VxWx), E(pd, .VxWx), E(ss, .VxWd), E(sd, .VxWq)]
    }

    static let simdPrefixed: [UInt8: [OpcodeEntry]] = [
        0x10: [E(.movUnaligned128, .VxWx), E(.movUnaligned128, .VxWx), E(.movss, .VxWd), E(.movsd, .VxWq)],
        0x11: [E(.movUnaligned128, .WxVx), E(.movUnaligned128, .WxVx), E(.movss, .WdVx), E(.movsd, .WqVx)],
        0x12: [.byMod(.movlpsOrMovhlps), E(.movlp, .VxWq, .memoryOnly), E(.movsldup, .VxWx), E(.movddup, .VxWq)],
        0x13: [E(.movlp, .WqVx, .memoryOnly), E(.movlp, .WqVx, .memoryOnly), ud, ud],
        0x14: [E(.punpckldq, .VxWx), E(.punpcklqdq, .VxWx), ud, ud],  // UNPCKLPS, UNPCKLPD
        0x15: [E(.punpckhdq, .VxWx), E(.punpckhqdq, .VxWx), ud, ud],  // UNPCKHPS, UNPCKHPD
        0x16: [.byMod(.movhpsOrMovlhps), E(.movhp, .VxWq, .memoryOnly), E(.movshdup, .VxWx), ud],
        0x17: [E(.movhp, .WqVx, .memoryOnly), E(.movhp, .WqVx, .memoryOnly), ud, ud],
        0x28: [E(.movAligned128, .VxWx), E(.movAligned128, .VxWx), ud, ud],    // MOVAPS, MOVAPD
        0x29: [E(.movAligned128, .WxVx), E(.movAligned128, .WxVx), ud, ud],
        0x2a: [E(.cvtpi2ps, .VxQq), E(.cvtpi2pd, .VxQq), E(.cvtsi2ss, .VxEy), E(.cvtsi2sd, .VxEy)],
        0x2b: [E(.movAligned128, .WxVx, .memoryOnly), E(.movAligned128, .WxVx, .memoryOnly), ud, ud], // MOVNTPS/PD
        0x2c: [E(.cvttps2pi, .PqWq), E(.cvttpd2pi, .PqWx), E(.cvttss2si, .GyWd), E(.cvttsd2si, .GyWq)],
        0x2d: [E(.cvtps2pi, .PqWq), E(.cvtpd2pi, .PqWx), E(.cvtss2si, .GyWd), E(.cvtsd2si, .GyWq)],
        0x2e: [E(.ucomiss, .VxWd), E(.ucomisd, .VxWq), ud, ud],
        0x2f: [E(.comiss, .VxWd), E(.comisd, .VxWq), ud, ud],
        0x50: [E(.movmskps, .GdUx), E(.movmskpd, .GdUx), ud, ud],
        0x51: floatFamily(.sqrtps, .sqrtpd, .sqrtss, .sqrtsd),
        0x52: [E(.rsqrtps, .VxWx), ud, E(.rsqrtss, .VxWd), ud],
        0x53: [E(.rcpps, .VxWx), ud, E(.rcpss, .VxWd), ud],
        0x54: [E(.pand, .VxWx), E(.pand, .VxWx), ud, ud],             // ANDPS, ANDPD
        0x55: [E(.pandn, .VxWx), E(.pandn, .VxWx), ud, ud],           // ANDNPS, ANDNPD
        0x56: [E(.por, .VxWx), E(.por, .VxWx), ud, ud],               // ORPS, ORPD
        0x57: [E(.pxor, .VxWx), E(.pxor, .VxWx), ud, ud],             // XORPS, XORPD
        0x58: floatFamily(.addps, .addpd, .addss, .addsd),
        0x59: floatFamily(.mulps, .mulpd, .mulss, .mulsd),
        0x5a: [E(.cvtps2pd, .VxWq), E(.cvtpd2ps, .VxWx), E(.cvtss2sd, .VxWd), E(.cvtsd2ss, .VxWq)],
        0x5b: [E(.cvtdq2ps, .VxWx), E(.cvtps2dq, .VxWx), E(.cvttps2dq, .VxWx), ud],
        0x5c: floatFamily(.subps, .subpd, .subss, .subsd),
        0x5d: floatFamily(.minps, .minpd, .minss, .minsd),
        0x5e: floatFamily(.divps, .divpd, .divss, .divsd),
        0x5f: floatFamily(.maxps, .maxpd, .maxss, .maxsd),
        0x60: mmxOrXMM(.punpcklbw, mmx: .PqQd),
        0x61: mmxOrXMM(.punpcklwd, mmx: .PqQd),
        0x62: mmxOrXMM(.punpckldq, mmx: .PqQd),
        0x63: mmxOrXMM(.packsswb),
        0x64: mmxOrXMM(.pcmpgtb),
        0x65: mmxOrXMM(.pcmpgtw),
        0x66: mmxOrXMM(.pcmpgtd),
        0x67: mmxOrXMM(.packuswb),
        0x68: mmxOrXMM(.punpckhbw),
        0x69: mmxOrXMM(.punpckhwd),
        0x6a: mmxOrXMM(.punpckhdq),
        0x6b: mmxOrXMM(.packssdw),
        0x6c: [ud, E(.punpcklqdq, .VxWx), ud, ud],
        0x6d: [ud, E(.punpckhqdq, .VxWx), ud, ud],
        0x6e: [E(.movdq, .PyEy), E(.movdq, .VyEy), ud, ud],                               // MOVD/MOVQ
        0x6f: [E(.movdq, .PqQq), E(.movAligned128, .VxWx), E(.movUnaligned128, .VxWx), ud], // MOVQ, MOVDQA, MOVDQU
        0x70: [E(.pshufw, .PqQqIb), E(.pshufd, .VxWxIb), E(.pshufhw, .VxWxIb), E(.pshuflw, .VxWxIb)],
        0x71: [.group(.group12MMX, .NqIb), .group(.group12XMM, .UxIb), ud, ud],
        0x72: [.group(.group13MMX, .NqIb), .group(.group13XMM, .UxIb), ud, ud],
        0x73: [.group(.group14MMX, .NqIb), .group(.group14XMM, .UxIb), ud, ud],
        0x74: mmxOrXMM(.pcmpeqb),
        0x75: mmxOrXMM(.pcmpeqw),
        0x76: mmxOrXMM(.pcmpeqd),
        0x77: [E(.emms, .none), ud, ud, ud],
        0x7c: [ud, E(.haddpd, .VxWx), ud, E(.haddps, .VxWx)],
        0x7d: [ud, E(.hsubpd, .VxWx), ud, E(.hsubps, .VxWx)],
        0x7e: [E(.movdq, .EyPy), E(.movdq, .EyVy), E(.movdq, .VqWq), ud],                 // MOVD/MOVQ, F3 MOVQ
        0x7f: [E(.movdq, .QqPq), E(.movAligned128, .WxVx), E(.movUnaligned128, .WxVx), ud], // MOVQ, MOVDQA, MOVDQU
        0xc2: [E(.cmpps, .VxWxIb), E(.cmppd, .VxWxIb), E(.cmpss, .VxWdIb), E(.cmpsd, .VxWqIb)],
        0xc3: [E(.mov, .EyGy, .memoryOnly), ud, ud, ud],                                   // MOVNTI
        0xc4: [E(.pinsrw, .PqRdMwIb), E(.pinsrw, .VxRdMwIb), ud, ud],
        0xc5: [E(.pextrw, .GdNqIb), E(.pextrw, .GdUxIb), ud, ud],
        0xc6: [E(.shufps, .VxWxIb), E(.shufpd, .VxWxIb), ud, ud],
        0xd0: [ud, E(.addsubpd, .VxWx), ud, E(.addsubps, .VxWx)],
        0xd1: mmxOrXMM(.psrlw),
        0xd2: mmxOrXMM(.psrld),
        0xd3: mmxOrXMM(.psrlq),
        0xd4: mmxOrXMM(.paddq),
        0xd5: mmxOrXMM(.pmullw),
        0xd6: [ud, E(.movdq, .WqVq), E(.movdq, .VxNq), E(.movdq, .PqUx)],                 // MOVQ, MOVQ2DQ, MOVDQ2Q
        0xd7: [E(.pmovmskb, .GdNq), E(.pmovmskb, .GdUx), ud, ud],
        0xd8: mmxOrXMM(.psubusb),
        0xd9: mmxOrXMM(.psubusw),
        0xda: mmxOrXMM(.pminub),
        0xdb: mmxOrXMM(.pand),
        0xdc: mmxOrXMM(.paddusb),
        0xdd: mmxOrXMM(.paddusw),
        0xde: mmxOrXMM(.pmaxub),
        0xdf: mmxOrXMM(.pandn),
        0xe0: mmxOrXMM(.pavgb),
        0xe1: mmxOrXMM(.psraw),
        0xe2: mmxOrXMM(.psrad),
        0xe3: mmxOrXMM(.pavgw),
        0xe4: mmxOrXMM(.pmulhuw),
        0xe5: mmxOrXMM(.pmulhw),
        0xe6: [ud, E(.cvttpd2dq, .VxWx), E(.cvtdq2pd, .VxWq), E(.cvtpd2dq, .VxWx)],
        0xe7: [E(.movdq, .QqPq, .memoryOnly), E(.movAligned128, .WxVx, .memoryOnly), ud, ud], // MOVNTQ, MOVNTDQ
        0xe8: mmxOrXMM(.psubsb),
        0xe9: mmxOrXMM(.psubsw),
        0xea: mmxOrXMM(.pminsw),
        0xeb: mmxOrXMM(.por),
        0xec: mmxOrXMM(.paddsb),
        0xed: mmxOrXMM(.paddsw),
        0xee: mmxOrXMM(.pmaxsw),
        0xef: mmxOrXMM(.pxor),
        0xf0: [ud, ud, ud, E(.movUnaligned128, .VxWx, .memoryOnly)],                      // F2 LDDQU
        0xf1: mmxOrXMM(.psllw),
        0xf2: mmxOrXMM(.pslld),
        0xf3: mmxOrXMM(.psllq),
        0xf4: mmxOrXMM(.pmuludq),
        0xf5: mmxOrXMM(.pmaddwd),
        0xf6: mmxOrXMM(.psadbw),
        0xf7: [E(.maskmov, .PqNq), E(.maskmov, .VxUx), ud, ud],                           // MASKMOVQ, MASKMOVDQU
        0xf8: mmxOrXMM(.psubb),
        0xf9: mmxOrXMM(.psubw),
        0xfa: mmxOrXMM(.psubd),
        0xfb: mmxOrXMM(.psubq),
        0xfc: mmxOrXMM(.paddb),
        0xfd: mmxOrXMM(.paddw),
        0xfe: mmxOrXMM(.paddd),
    ]

    /// Groups 12-14 (0F 71-73): shifts of the register in ModRM.r/m by an immediate. Memory
    /// forms do not exist (the forms are register-only).
    static let simdGroups: [GroupID: GroupTable] = [
        .group12MMX: GroupTable(both: [ud, ud, E(.psrlw, .inherit), ud, E(.psraw, .inherit), ud, E(.psllw, .inherit), ud]),
        .group12XMM: GroupTable(both: [ud, ud, E(.psrlw, .inherit), ud, E(.psraw, .inherit), ud, E(.psllw, .inherit), ud]),
        .group13MMX: GroupTable(both: [ud, ud, E(.psrld, .inherit), ud, E(.psrad, .inherit), ud, E(.pslld, .inherit), ud]),
        .group13XMM: GroupTable(both: [ud, ud, E(.psrld, .inherit), ud, E(.psrad, .inherit), ud, E(.pslld, .inherit), ud]),
        .group14MMX: GroupTable(both: [ud, ud, E(.psrlq, .inherit), ud, ud, ud, E(.psllq, .inherit), ud]),
        .group14XMM: GroupTable(both: [
            ud, ud, E(.psrlq, .inherit), E(.psrldq, .inherit), ud, ud, E(.psllq, .inherit), E(.pslldq, .inherit),
        ]),
    ]

    /// [memory row, register row] of each `ModSplitID`.
    static let modSplits: [ModSplitID: [OpcodeEntry]] = [
        .movlpsOrMovhlps: [E(.movlp, .VxWq), E(.movhlps, .VxUx)],     // 0F 12 MOVLPS Vq,Mq / MOVHLPS Vq,Uq
        .movhpsOrMovlhps: [E(.movhp, .VxWq), E(.movlhps, .VxUx)],     // 0F 16 MOVHPS Vq,Mq / MOVLHPS Vq,Uq
    ]
}
