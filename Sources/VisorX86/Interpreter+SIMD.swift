// The x87, MMX and SSE state as instructions see it: the availability checks, vector operands
// (MMX, XMM, memory), the x87-to-MMX transition, MXCSR, FXSAVE/FXRSTOR, and the dispatch to the
// families (`Interpreter+SIMDInteger.swift`, `Interpreter+SSEFloat.swift`, `X87.swift`).
//
// Checks, in the SDM's order (Vol. 3A 2.5, Vol. 1 ch. 11-12 and the exception tables of Vol. 2):
// - SSE (an XMM operand): #UD when CR0.EM = 1 or CR4.OSFXSR = 0, then #NM when CR0.TS = 1;
//   with an MMX operand as well (CVTPI2PS, MOVQ2DQ, ...) then #MF for a pending x87 exception.
// - MMX (MMX operands only, SSE's MMX additions included): #UD when CR0.EM = 1, #NM when
//   CR0.TS = 1, #MF when an x87 exception is pending. Every instruction with an MMX register
//   operand sets TOP to 0 and tags every register valid; writing MMn sets Rn's exponent to all ones.
//   EMMS tags every register empty and sets TOP to 0.
// - x87: #NM when CR0.EM or CR0.TS is set; then waiting instructions take #MF for a pending
//   unmasked exception (FSW.ES) — delivered whatever CR0.NE says (Visor has no FERR# line).
// - FXSAVE/FXRSTOR: #NM when CR0.EM or CR0.TS is set; #GP(0) for an operand not 16-byte aligned;
//   FXRSTOR #GP(0) for reserved MXCSR bits.
// Legacy-SSE 16-byte memory operands must be 16-byte aligned (#GP(0)) except in the unaligned
// moves; 4- and 8-byte ones need not be.
//
// The FXSAVE area (SDM Vol. 1 10.5.1): FCW, FSW, the abridged tag byte, FOP, FIP and FDP (64-bit
// with REX.W; otherwise 32-bit offsets with FCS and FDS), MXCSR, MXCSR_MASK, ST0-ST7 in 16-byte
// slots (bytes 10-15 written as zero), XMM0-XMM15 (XMM0-XMM7 outside 64-bit mode). Bytes 416-511
// are neither written nor read. The pointers are always saved (Intel; AMD saves them only while
// an exception is pending).

import VisorCore
import VisorX86Decode

extension X86Machine {
    static let cr0Emulation: UInt64 = 1 << 2
    static let cr0TaskSwitched: UInt64 = 1 << 3
    static let cr0MonitorCoprocessor: UInt64 = 1 << 1
    /// The MXCSR bits that may be set (flags, DAZ, masks, RC, FTZ); MXCSR_MASK in FXSAVE.
    static let mxcsrWritable: UInt32 = 0xffff
    static let mxcsrDefault: UInt32 = 0x1f80

    // MARK: Checks

    func checkSSE() throws(X86Interruption) {
        if cpu.cr0 & Self.cr0Emulation != 0 || cpu.cr4 & X86.cr4OSFXSR == 0 { throw .fault(.undefined) }
        if cpu.cr0 & Self.cr0TaskSwitched != 0 { throw .fault(.deviceNotAvailableFault) }
    }

    func checkMMX() throws(X86Interruption) {
        if cpu.cr0 & Self.cr0Emulation != 0 { throw .fault(.undefined) }
        if cpu.cr0 & Self.cr0TaskSwitched != 0 { throw .fault(.deviceNotAvailableFault) }
        if x87ExceptionPending { throw .fault(.x87FloatingPoint) }
    }

    /// #NM when the x87 is not available (CR0.EM or CR0.TS).
    func checkX87() throws(X86Interruption) {
        if cpu.cr0 & (Self.cr0Emulation | Self.cr0TaskSwitched) != 0 { throw .fault(.deviceNotAvailableFault) }
    }

    /// The checks of a waiting x87 instruction: #NM, then #MF for a pending exception.
    func checkX87Waiting() throws(X86Interruption) {
        try checkX87()
        if x87ExceptionPending { throw .fault(.x87FloatingPoint) }
    }

    /// FSW.ES: an unmasked x87 exception waits for the next waiting instruction.
    var x87ExceptionPending: Bool { cpu.fsw & 0x80 != 0 }

    /// An unmasked SSE exception: #XM, or #UD while the OS has not set CR4.OSXMMEXCPT.
    var simdException: X86Interruption {
        cpu.cr4 & X86.cr4OSXMMEXCPT != 0 ? .fault(.simdFloatingPoint) : .fault(.undefined)
    }

    /// The x87-to-MMX transition of an instruction with an MMX register operand: TOP = 0, every
    /// tag valid. It happens once the operands are read, before an SSE exception is raised (the
    /// state an #XM handler sees has it) but after an operand's #GP or #PF (which leaves it undone).
    @inline(__always)
    func mmxTransition(_ insn: DecodedInstruction) {
        if insn.destination.kind == .mmx || insn.source.kind == .mmx {
            cpu.fsw &= ~0x3800
            cpu.ftw = 0xff
        }
    }

    // MARK: Vector operands

    /// The linear address of a 16-byte memory operand, checked for alignment when `aligned`.
    private func linear128(_ insn: DecodedInstruction, aligned: Bool) throws(X86Interruption) -> UInt64 {
        let linear = try linearAddress(segment: insn.memory.segment, offset: effectiveAddress(insn), size: 16)
        if aligned && linear & 15 != 0 { throw .fault(.gp(0)) }
        return linear
    }

    /// Reads a 128-bit operand (an XMM register or memory).
    func read128(_ operand: Operand, _ insn: DecodedInstruction, aligned: Bool) throws(X86Interruption)
        -> (low: UInt64, high: UInt64)
    {
        switch operand.kind {
        case .xmm:
            return cpu.xmm[Int(operand.index & 15)]
        case .memory:
            let linear = try linear128(insn, aligned: aligned)
            return (try readLinear(linear, size: 8), try readLinear(linear &+ 8, size: 8))
        default:
            throw .fault(.undefined)
        }
    }

    /// Writes a 128-bit operand. Both pages of a memory operand are checked before either half
    /// is written.
    func write128(_ operand: Operand, _ insn: DecodedInstruction, _ value: (low: UInt64, high: UInt64),
                  aligned: Bool) throws(X86Interruption) {
        switch operand.kind {
        case .xmm:
            cpu.xmm[Int(operand.index & 15)] = value
        case .memory:
            let linear = try linear128(insn, aligned: aligned)
            if linear & 0xfff > 0xff0 { _ = try translate(linear &+ 15, .write) }
            try writeLinear(linear, size: 8, value: value.low)
            try writeLinear(linear &+ 8, size: 8, value: value.high)
        default:
            throw .fault(.undefined)
        }
    }

    /// Reads a vector operand as 128 bits: an XMM register, an MMX register (64 bits), a
    /// general-purpose register, or `operand.size` bytes of memory (16-byte ones aligned when
    /// `aligned`).
    func readVector(_ operand: Operand, _ insn: DecodedInstruction, aligned: Bool = false) throws(X86Interruption)
        -> UInt128
    {
        switch operand.kind {
        case .xmm:
            let v = cpu.xmm[Int(operand.index & 15)]
            return UInt128(v.high) << 64 | UInt128(v.low)
        case .mmx:
            return UInt128(cpu.fpr[Int(operand.index & 7)].significand)
        case .memory where operand.size == 16:
            let v = try read128(operand, insn, aligned: aligned)
            return UInt128(v.high) << 64 | UInt128(v.low)
        case .memory, .register:
            return UInt128(try read(operand, insn))
        default:
            throw .fault(.undefined)
        }
    }

    /// Writes a vector operand: all of an XMM register, the low 64 bits to an MMX register (its
    /// exponent set to all ones), a general-purpose register or `operand.size` bytes of memory.
    func writeVector(_ operand: Operand, _ insn: DecodedInstruction, _ value: UInt128,
                     aligned: Bool = false) throws(X86Interruption) {
        switch operand.kind {
        case .xmm:
            cpu.xmm[Int(operand.index & 15)] = (UInt64(truncatingIfNeeded: value), UInt64(truncatingIfNeeded: value >> 64))
        case .mmx:
            cpu.fpr[Int(operand.index & 7)] = Float80Bits(significand: UInt64(truncatingIfNeeded: value),
                                                          signExponent: 0xffff)
        case .memory where operand.size == 16:
            try write128(operand, insn, (UInt64(truncatingIfNeeded: value), UInt64(truncatingIfNeeded: value >> 64)),
                         aligned: aligned)
        case .memory, .register:
            try write(operand, insn, UInt64(truncatingIfNeeded: value))
        default:
            throw .fault(.undefined)
        }
    }

    // MARK: Dispatch

    /// Executes `insn` if it is an x87, MMX or SSE instruction; false if it is not one.
    func executeFloatingPoint(_ insn: DecodedInstruction) throws(X86Interruption) -> Bool {
        switch insn.operation {
        case .fninit, .fnstcw, .fldcw, .fnstsw, .fnclex, .fnstenv, .fldenv, .fnsave, .frstor, .fwait, .fnIgnored,
             .fld, .fild, .fbld, .fst, .fstp, .fstpnce, .fist, .fistp, .fisttp, .fbstp, .fxch, .fcmovcc, .ffree, .ffreep,
             .fld1, .fldl2t, .fldl2e, .fldpi, .fldlg2, .fldln2, .fldz,
             .fadd, .faddp, .fiadd, .fsub, .fsubp, .fisub, .fsubr, .fsubrp, .fisubr,
             .fmul, .fmulp, .fimul, .fdiv, .fdivp, .fidiv, .fdivr, .fdivrp, .fidivr,
             .fcom, .fcomp, .fcompp, .ficom, .ficomp, .fucom, .fucomp, .fucompp, .fcomi, .fcomip, .fucomi, .fucomip,
             .ftst, .fxam, .fchs, .fabs, .fsqrt, .frndint, .fscale, .fxtract, .fprem, .fprem1,
             .f2xm1, .fyl2x, .fyl2xp1, .fptan, .fpatan, .fsin, .fcos, .fsincos, .fdecstp, .fincstp, .fnop:
            try executeX87(insn)
            return true
        case .fxsave, .fxrstor:
            try executeFXSaveRestore(insn)
        case .ldmxcsr, .stmxcsr:
            try checkSSE()
            if insn.operation == .ldmxcsr {
                let v = UInt32(truncatingIfNeeded: try read(insn.source, insn))
                guard v & ~Self.mxcsrWritable == 0 else { throw .fault(.gp(0)) }
                cpu.mxcsr = v
            } else {
                try write(insn.destination, insn, UInt64(cpu.mxcsr))
            }
        case .emms:
            // Every tag empty, TOP 0 (SDM Vol. 1 table 9-2).
            try checkMMX()
            cpu.ftw = 0
            cpu.fsw &= ~0x3800
        default:
            if try !executeSIMDInteger(insn) {
                guard try executeSSEFloat(insn) else { return false }
            }
            mmxTransition(insn)
        }
        retire(insn)
        return true
    }

    /// The availability checks of a vector instruction: SSE's when it has an XMM operand or is an
    /// SSE instruction whatever its operands (`sse`), adding #MF when it also has an MMX
    /// operand; MMX's when its vector operands are MMX registers only.
    func checkVectorInstruction(_ insn: DecodedInstruction, sse: Bool) throws(X86Interruption) {
        let mmx = insn.destination.kind == .mmx || insn.source.kind == .mmx
        if sse || insn.destination.kind == .xmm || insn.source.kind == .xmm {
            try checkSSE()
            if mmx && x87ExceptionPending { throw .fault(.x87FloatingPoint) }
        } else if mmx {
            try checkMMX()
        } else {
            throw .fault(.undefined)
        }
    }

    // MARK: FXSAVE / FXRSTOR

    private func executeFXSaveRestore(_ insn: DecodedInstruction) throws(X86Interruption) {
        try checkX87()
        let restore = insn.operation == .fxrstor
        let operand = restore ? insn.source : insn.destination
        guard operand.kind == .memory else { throw .fault(.undefined) }
        let linear = try linearAddress(segment: insn.memory.segment, offset: effectiveAddress(insn), size: 512)
        guard linear & 15 == 0 else { throw .fault(.gp(0)) }
        let pointers64 = insn.operandSize == 8
        let xmmCount = cpu.codeMode == .bits64 ? 16 : 8
        let length = 160 + 16 * xmmCount
        if restore {
            var image = [UInt8](repeating: 0, count: length)
            for i in stride(from: 0, to: length, by: 8) {
                let v = try readLinear(linear &+ UInt64(i), size: 8)
                for j in 0..<8 { image[i + j] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(j))) }
            }
            try fxrstor(image, pointers64: pointers64, xmmCount: xmmCount)
        } else {
            let image = fxsaveImage(pointers64: pointers64, xmmCount: xmmCount)
            // Every page is checked before anything is written.
            try probeWritable(linear, length: length)
            for i in stride(from: 0, to: length, by: 8) {
                var v: UInt64 = 0
                for j in 0..<8 { v |= UInt64(image[i + j]) << (8 * UInt64(j)) }
                try writeLinear(linear &+ UInt64(i), size: 8, value: v)
            }
        }
    }

    /// The first 160 + 16 × `xmmCount` bytes of the FXSAVE image of the current state.
    public func fxsaveImage(pointers64: Bool, xmmCount: Int = 16) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: 160 + 16 * max(0, min(16, xmmCount)))
        func put(_ value: UInt64, at offset: Int, _ count: Int) {
            for i in 0..<count { b[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
        }
        put(UInt64(cpu.fcw), at: 0, 2)
        put(UInt64(cpu.fsw), at: 2, 2)
        b[4] = cpu.ftw
        put(UInt64(cpu.fop), at: 6, 2)
        if pointers64 {
            put(cpu.fip, at: 8, 8)
            put(cpu.fdp, at: 16, 8)
        } else {
            put(cpu.fip, at: 8, 4)
            put(UInt64(cpu.fcs), at: 12, 2)
            put(cpu.fdp, at: 16, 4)
            put(UInt64(cpu.fds), at: 20, 2)
        }
        put(UInt64(cpu.mxcsr), at: 24, 4)
        put(UInt64(Self.mxcsrWritable), at: 28, 4)
        let top = Int(cpu.fsw >> 11) & 7
        for i in 0..<8 {
            let r = cpu.fpr[(top + i) & 7]
            put(r.significand, at: 32 + 16 * i, 8)
            put(UInt64(r.signExponent), at: 40 + 16 * i, 2)
        }
        for i in 0..<(b.count - 160) / 16 {
            put(cpu.xmm[i].low, at: 160 + 16 * i, 8)
            put(cpu.xmm[i].high, at: 168 + 16 * i, 8)
        }
        return b
    }

    /// Loads the state from an FXSAVE image (at least 160 + 16 × `xmmCount` bytes); #GP(0) for
    /// reserved MXCSR bits, with nothing changed. ES and B are derived from the loaded flags and
    /// masks, whatever the image says.
    public func fxrstor(_ b: [UInt8], pointers64: Bool, xmmCount: Int = 16) throws(X86Interruption) {
        let count = max(0, min(16, xmmCount))
        guard b.count >= 160 + 16 * count else { throw .fault(.gp(0)) }
        func get(_ offset: Int, _ n: Int) -> UInt64 {
            var v: UInt64 = 0
            for i in 0..<n { v |= UInt64(b[offset + i]) << (8 * UInt64(i)) }
            return v
        }
        let mxcsr = UInt32(truncatingIfNeeded: get(24, 4))
        guard mxcsr & ~Self.mxcsrWritable == 0 else { throw .fault(.gp(0)) }
        cpu.mxcsr = mxcsr
        cpu.fcw = UInt16(truncatingIfNeeded: get(0, 2))
        cpu.fsw = UInt16(truncatingIfNeeded: get(2, 2))
        cpu.ftw = b[4]
        cpu.fop = UInt16(truncatingIfNeeded: get(6, 2)) & 0x7ff
        if pointers64 {
            // The 64-bit format has no selectors: FXRSTOR64 clears them.
            cpu.fip = get(8, 8)
            cpu.fdp = get(16, 8)
            cpu.fcs = 0
            cpu.fds = 0
        } else {
            cpu.fip = get(8, 4)
            cpu.fcs = UInt16(truncatingIfNeeded: get(12, 2))
            cpu.fdp = get(16, 4)
            cpu.fds = UInt16(truncatingIfNeeded: get(20, 2))
        }
        let top = Int(cpu.fsw >> 11) & 7
        for i in 0..<8 {
            cpu.fpr[(top + i) & 7] = Float80Bits(significand: get(32 + 16 * i, 8),
                                                 signExponent: UInt16(truncatingIfNeeded: get(40 + 16 * i, 2)))
        }
        for i in 0..<count {
            cpu.xmm[i] = (get(160 + 16 * i, 8), get(168 + 16 * i, 8))
        }
        updateErrorSummary()
    }
}
