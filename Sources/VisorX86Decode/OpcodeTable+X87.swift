// The x87 escapes D8-DF as data, after the Intel SDM volume 2, appendix A.4 ("Escape Opcode
// Instructions"): for each escape, eight rows for a memory r/m by ModRM.reg (the memory size
// gives the data type: 4/8/10-byte reals, 2/4/8-byte integers, 10-byte BCD), and eight rows for
// a register r/m by ModRM.reg whose operand is ST(i) with i = ModRM.rm, or an rm table where
// each of the eight encodings is its own instruction (D9 E0 FCHS, ...).
//
// The undocumented aliases that hardware executes are kept (D9 D8+i FSTPNCE, DC D0+i FCOM,
// DC D8+i FCOMP, DD C8+i FXCH, DE D0+i FCOMP, DF C0+i FFREEP, DF C8+i FXCH, DF D0+i and D8+i
// FSTP), as are the 8087/287 leftovers the 387 and later ignore (DB E0 FNENI, DB E1 FNDISI,
// DB E4 FNSETPM). FISTTP (DB /1, DD /1, DF /1) is SSE3's.

extension OpcodeTables {
    /// The eight ST(0), ST(i) arithmetic rows shared by D8 (and, with ST(i), ST(0), by DC and DE).
    private static func arithmeticMemoryRows(_ form: OperandForm) -> [OpcodeEntry] {
        [
            E(.fadd, form, .operandIsSource),            // /0 FADD
            E(.fmul, form, .operandIsSource),            // /1 FMUL
            E(.fcom, form, .operandIsSource),            // /2 FCOM
            E(.fcomp, form, .operandIsSource),           // /3 FCOMP
            E(.fsub, form, .operandIsSource),            // /4 FSUB
            E(.fsubr, form, .operandIsSource),           // /5 FSUBR
            E(.fdiv, form, .operandIsSource),            // /6 FDIV
            E(.fdivr, form, .operandIsSource),           // /7 FDIVR
        ]
    }

    private static func integerArithmeticRows(_ form: OperandForm) -> [OpcodeEntry] {
        [
            E(.fiadd, form, .operandIsSource),           // /0 FIADD
            E(.fimul, form, .operandIsSource),           // /1 FIMUL
            E(.ficom, form, .operandIsSource),           // /2 FICOM
            E(.ficomp, form, .operandIsSource),          // /3 FICOMP
            E(.fisub, form, .operandIsSource),           // /4 FISUB
            E(.fisubr, form, .operandIsSource),          // /5 FISUBR
            E(.fidiv, form, .operandIsSource),           // /6 FIDIV
            E(.fidivr, form, .operandIsSource),          // /7 FIDIVR
        ]
    }

    static let x87Groups: [GroupID: GroupTable] = [
        .x87D8: GroupTable(memory: arithmeticMemoryRows(.Md), register: [
            E(.fadd, .ST0STi),                           // C0+i FADD ST(0),ST(i)
            E(.fmul, .ST0STi),                           // C8+i FMUL ST(0),ST(i)
            E(.fcom, .STi, .operandIsSource),            // D0+i FCOM ST(i)
            E(.fcomp, .STi, .operandIsSource),           // D8+i FCOMP ST(i)
            E(.fsub, .ST0STi),                           // E0+i FSUB ST(0),ST(i)
            E(.fsubr, .ST0STi),                          // E8+i FSUBR ST(0),ST(i)
            E(.fdiv, .ST0STi),                           // F0+i FDIV ST(0),ST(i)
            E(.fdivr, .ST0STi),                          // F8+i FDIVR ST(0),ST(i)
        ]),
        .x87D9: GroupTable(memory: [
            E(.fld, .Md, .operandIsSource),              // /0 FLD m32fp
            ud,                                          // /1
            E(.fst, .Md),                                // /2 FST m32fp
            E(.fstp, .Md),                               // /3 FSTP m32fp
            E(.fldenv, .Menv, .operandIsSource),         // /4 FLDENV m14/28
            E(.fldcw, .Mw, .operandIsSource),            // /5 FLDCW m2byte
            E(.fnstenv, .Menv),                          // /6 FNSTENV m14/28
            E(.fnstcw, .Mw),                             // /7 FNSTCW m2byte
        ], register: [
            E(.fld, .STi, .operandIsSource),             // C0+i FLD ST(i)
            E(.fxch, .STi),                              // C8+i FXCH ST(i)
            .rmTable(.x87D9Reg2),                        // D0 FNOP
            E(.fstpnce, .STi),                           // D8+i FSTPNCE ST(i) (undocumented)
            .rmTable(.x87D9Reg4),                        // E0-E7 FCHS FABS FTST FXAM
            .rmTable(.x87D9Reg5),                        // E8-EF the constants
            .rmTable(.x87D9Reg6),                        // F0-F7 F2XM1 ... FINCSTP
            .rmTable(.x87D9Reg7),                        // F8-FF FPREM ... FCOS
        ]),
        .x87DA: GroupTable(memory: integerArithmeticRows(.Md), register: [
            E(.fcmovcc, .ST0STi, aux: 0x2),              // C0+i FCMOVB
            E(.fcmovcc, .ST0STi, aux: 0x4),              // C8+i FCMOVE
            E(.fcmovcc, .ST0STi, aux: 0x6),              // D0+i FCMOVBE
            E(.fcmovcc, .ST0STi, aux: 0xa),              // D8+i FCMOVU
            ud,                                          // E0-E7
            .rmTable(.x87DAReg5),                        // E9 FUCOMPP
            ud, ud,                                      // F0-FF
        ]),
        .x87DB: GroupTable(memory: [
            E(.fild, .Md, .operandIsSource),             // /0 FILD m32int
            E(.fisttp, .Md),                             // /1 FISTTP m32int (SSE3)
            E(.fist, .Md),                               // /2 FIST m32int
            E(.fistp, .Md),                              // /3 FISTP m32int
            ud,                                          // /4
            E(.fld, .Mt, .operandIsSource),              // /5 FLD m80fp
            ud,                                          // /6
            E(.fstp, .Mt),                               // /7 FSTP m80fp
        ], register: [
            E(.fcmovcc, .ST0STi, aux: 0x3),              // C0+i FCMOVNB
            E(.fcmovcc, .ST0STi, aux: 0x5),              // C8+i FCMOVNE
            E(.fcmovcc, .ST0STi, aux: 0x7),              // D0+i FCMOVNBE
            E(.fcmovcc, .ST0STi, aux: 0xb),              // D8+i FCMOVNU
            .rmTable(.x87DBReg4),                        // E0-E7 FNENI FNDISI FNCLEX FNINIT FNSETPM
            E(.fucomi, .ST0STi),                         // E8+i FUCOMI ST(0),ST(i)
            E(.fcomi, .ST0STi),                          // F0+i FCOMI ST(0),ST(i)
            ud,                                          // F8-FF
        ]),
        .x87DC: GroupTable(memory: arithmeticMemoryRows(.Mq), register: [
            E(.fadd, .STiST0),                           // C0+i FADD ST(i),ST(0)
            E(.fmul, .STiST0),                           // C8+i FMUL ST(i),ST(0)
            E(.fcom, .STi, .operandIsSource),            // D0+i FCOM ST(i) (undocumented alias)
            E(.fcomp, .STi, .operandIsSource),           // D8+i FCOMP ST(i) (undocumented alias)
            E(.fsubr, .STiST0),                          // E0+i FSUBR ST(i),ST(0)
            E(.fsub, .STiST0),                           // E8+i FSUB ST(i),ST(0)
            E(.fdivr, .STiST0),                          // F0+i FDIVR ST(i),ST(0)
            E(.fdiv, .STiST0),                           // F8+i FDIV ST(i),ST(0)
        ]),
        .x87DD: GroupTable(memory: [
            E(.fld, .Mq, .operandIsSource),              // /0 FLD m64fp
            E(.fisttp, .Mq),                             // /1 FISTTP m64int (SSE3)
            E(.fst, .Mq),                                // /2 FST m64fp
            E(.fstp, .Mq),                               // /3 FSTP m64fp
            E(.frstor, .Mstate, .operandIsSource),       // /4 FRSTOR m94/108
            ud,                                          // /5
            E(.fnsave, .Mstate),                         // /6 FNSAVE m94/108
            E(.fnstsw, .Mw),                             // /7 FNSTSW m2byte
        ], register: [
            E(.ffree, .STi),                             // C0+i FFREE ST(i)
            E(.fxch, .STi),                              // C8+i FXCH ST(i) (undocumented alias)
            E(.fst, .STi),                               // D0+i FST ST(i)
            E(.fstp, .STi),                              // D8+i FSTP ST(i)
            E(.fucom, .STi, .operandIsSource),           // E0+i FUCOM ST(i)
            E(.fucomp, .STi, .operandIsSource),          // E8+i FUCOMP ST(i)
            ud, ud,                                      // F0-FF
        ]),
        .x87DE: GroupTable(memory: integerArithmeticRows(.Mw), register: [
            E(.faddp, .STiST0),                          // C0+i FADDP ST(i),ST(0)
            E(.fmulp, .STiST0),                          // C8+i FMULP ST(i),ST(0)
            E(.fcomp, .STi, .operandIsSource),           // D0+i FCOMP ST(i) (undocumented alias)
            .rmTable(.x87DEReg3),                        // D9 FCOMPP
            E(.fsubrp, .STiST0),                         // E0+i FSUBRP ST(i),ST(0)
            E(.fsubp, .STiST0),                          // E8+i FSUBP ST(i),ST(0)
            E(.fdivrp, .STiST0),                         // F0+i FDIVRP ST(i),ST(0)
            E(.fdivp, .STiST0),                          // F8+i FDIVP ST(i),ST(0)
        ]),
        .x87DF: GroupTable(memory: [
            E(.fild, .Mw, .operandIsSource),             // /0 FILD m16int
            E(.fisttp, .Mw),                             // /1 FISTTP m16int (SSE3)
            E(.fist, .Mw),                               // /2 FIST m16int
            E(.fistp, .Mw),                              // /3 FISTP m16int
            E(.fbld, .Mt, .operandIsSource),             // /4 FBLD m80bcd
            E(.fild, .Mq, .operandIsSource),             // /5 FILD m64int
            E(.fbstp, .Mt),                              // /6 FBSTP m80bcd
            E(.fistp, .Mq),                              // /7 FISTP m64int
        ], register: [
            E(.ffreep, .STi),                            // C0+i FFREEP ST(i) (undocumented on Intel)
            E(.fxch, .STi),                              // C8+i FXCH ST(i) (undocumented alias)
            E(.fstp, .STi),                              // D0+i FSTP ST(i) (undocumented alias)
            E(.fstp, .STi),                              // D8+i FSTP ST(i) (undocumented alias)
            .rmTable(.x87DFReg4),                        // E0 FNSTSW AX
            E(.fucomip, .ST0STi),                        // E8+i FUCOMIP ST(0),ST(i)
            E(.fcomip, .ST0STi),                         // F0+i FCOMIP ST(0),ST(i)
            ud,                                          // F8-FF
        ]),
    ]

    static let x87RMTables: [RMTableID: [OpcodeEntry]] = [
        .x87D9Reg2: [
            E(.fnop, .none),                             // D9 D0 FNOP
            ud, ud, ud, ud, ud, ud, ud,                  // D9 D1-D7
        ],
        .x87D9Reg4: [
            E(.fchs, .none),                             // D9 E0 FCHS
            E(.fabs, .none),                             // D9 E1 FABS
            ud, ud,                                      // D9 E2-E3
            E(.ftst, .none),                             // D9 E4 FTST
            E(.fxam, .none),                             // D9 E5 FXAM
            ud, ud,                                      // D9 E6-E7
        ],
        .x87D9Reg5: [
            E(.fld1, .none),                             // D9 E8 FLD1
            E(.fldl2t, .none),                           // D9 E9 FLDL2T
            E(.fldl2e, .none),                           // D9 EA FLDL2E
            E(.fldpi, .none),                            // D9 EB FLDPI
            E(.fldlg2, .none),                           // D9 EC FLDLG2
            E(.fldln2, .none),                           // D9 ED FLDLN2
            E(.fldz, .none),                             // D9 EE FLDZ
            ud,                                          // D9 EF
        ],
        .x87D9Reg6: [
            E(.f2xm1, .none),                            // D9 F0 F2XM1
            E(.fyl2x, .none),                            // D9 F1 FYL2X
            E(.fptan, .none),                            // D9 F2 FPTAN
            E(.fpatan, .none),                           // D9 F3 FPATAN
            E(.fxtract, .none),                          // D9 F4 FXTRACT
            E(.fprem1, .none),                           // D9 F5 FPREM1
            E(.fdecstp, .none),                          // D9 F6 FDECSTP
            E(.fincstp, .none),                          // D9 F7 FINCSTP
        ],
        .x87D9Reg7: [
            E(.fprem, .none),                            // D9 F8 FPREM
            E(.fyl2xp1, .none),                          // D9 F9 FYL2XP1
            E(.fsqrt, .none),                            // D9 FA FSQRT
            E(.fsincos, .none),                          // D9 FB FSINCOS
            E(.frndint, .none),                          // D9 FC FRNDINT
            E(.fscale, .none),                           // D9 FD FSCALE
            E(.fsin, .none),                             // D9 FE FSIN
            E(.fcos, .none),                             // D9 FF FCOS
        ],
        .x87DAReg5: [
            ud,                                          // DA E8
            E(.fucompp, .none),                          // DA E9 FUCOMPP
            ud, ud, ud, ud, ud, ud,                      // DA EA-EF
        ],
        .x87DBReg4: [
            E(.fnIgnored, .none),                        // DB E0 FNENI (8087; ignored since the 387)
            E(.fnIgnored, .none),                        // DB E1 FNDISI (8087)
            E(.fnclex, .none),                           // DB E2 FNCLEX
            E(.fninit, .none),                           // DB E3 FNINIT
            E(.fnIgnored, .none),                        // DB E4 FNSETPM (287)
            ud, ud, ud,                                  // DB E5-E7
        ],
        .x87DEReg3: [
            ud,                                          // DE D8
            E(.fcompp, .none),                           // DE D9 FCOMPP
            ud, ud, ud, ud, ud, ud,                      // DE DA-DF
        ],
        .x87DFReg4: [
            E(.fnstsw, .AX),                             // DF E0 FNSTSW AX
            ud, ud, ud, ud, ud, ud, ud,                  // DF E1-E7
        ],
    ]
}
