// The SSE and x87 subset compiled guests and boot stubs use: 128-bit moves, MOVD/MOVQ, the
// bitwise logic ops, PSHUFD, PUNPCKLQDQ, LDMXCSR/STMXCSR, and the x87 control-word
// instructions FNINIT FNSTCW FLDCW FNSTSW.
//
// SSE raises #UD when CR0.EM = 1 or CR4.OSFXSR = 0, then #NM when CR0.TS = 1. The x87 ones
// raise #NM when CR0.EM or CR0.TS is set. Legacy-SSE 128-bit memory operands must be 16-byte
// aligned (#GP(0)) except for the unaligned moves.
//
// The tag word is kept in the abridged (FXSAVE) form X86CPU starts with: FNINIT sets it to 0,
// "all registers empty".

import VisorCore
import VisorX86Decode

extension X86Machine {
    static let cr0Emulation: UInt64 = 1 << 2
    static let cr0TaskSwitched: UInt64 = 1 << 3
    /// MXCSR bits that may be set (DAZ included); others make LDMXCSR raise #GP(0).
    static let mxcsrWritable: UInt32 = 0xffff

    private func checkSSE() throws(X86Interruption) {
        if cpu.cr0 & Self.cr0Emulation != 0 || cpu.cr4 & X86.cr4OSFXSR == 0 { throw .fault(.undefined) }
        if cpu.cr0 & Self.cr0TaskSwitched != 0 { throw .fault(.deviceNotAvailableFault) }
    }

    private func checkX87() throws(X86Interruption) {
        if cpu.cr0 & (Self.cr0Emulation | Self.cr0TaskSwitched) != 0 { throw .fault(.deviceNotAvailableFault) }
    }

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

    func executeSSE(_ insn: DecodedInstruction) throws(X86Interruption) {
        switch insn.operation {
        case .fninit, .fnstcw, .fldcw, .fnstsw:
            try checkX87()
            switch insn.operation {
            case .fninit:
                cpu.fcw = 0x037f; cpu.fsw = 0; cpu.ftw = 0
            case .fnstcw:
                try write(insn.destination, insn, UInt64(cpu.fcw))
            case .fldcw:
                cpu.fcw = UInt16(truncatingIfNeeded: try read(insn.source, insn))
            default:
                try write(insn.destination, insn, UInt64(cpu.fsw))
            }
            retire(insn)
            return
        default:
            try checkSSE()
        }
        switch insn.operation {
        case .movUnaligned128, .movAligned128:
            let aligned = insn.operation == .movAligned128
            try write128(insn.destination, insn, try read128(insn.source, insn, aligned: aligned), aligned: aligned)
        case .movdq:
            if insn.destination.kind == .xmm {
                let size = insn.source.size == 0 ? insn.destination.size : insn.source.size
                let value: UInt64
                if insn.source.kind == .xmm {
                    value = cpu.xmm[Int(insn.source.index & 15)].low & Self.mask(size)
                } else {
                    value = try read(insn.source, insn) & Self.mask(size)
                }
                cpu.xmm[Int(insn.destination.index & 15)] = (value, 0)
            } else {
                try write(insn.destination, insn, cpu.xmm[Int(insn.source.index & 15)].low)
            }
        case .pxor, .por, .pand, .pandn:
            let a = cpu.xmm[Int(insn.destination.index & 15)]
            let b = try read128(insn.source, insn, aligned: true)
            let r: (low: UInt64, high: UInt64)
            switch insn.operation {
            case .pxor: r = (a.low ^ b.low, a.high ^ b.high)
            case .por: r = (a.low | b.low, a.high | b.high)
            case .pand: r = (a.low & b.low, a.high & b.high)
            default: r = (~a.low & b.low, ~a.high & b.high)
            }
            cpu.xmm[Int(insn.destination.index & 15)] = r
        case .pshufd:
            let b = try read128(insn.source, insn, aligned: true)
            let dwords = [b.low & 0xffff_ffff, b.low >> 32, b.high & 0xffff_ffff, b.high >> 32]
            let order = insn.immediate
            func pick(_ i: UInt64) -> UInt64 { dwords[Int((order >> (2 * i)) & 3)] }
            cpu.xmm[Int(insn.destination.index & 15)] = (pick(0) | (pick(1) << 32), pick(2) | (pick(3) << 32))
        case .punpcklqdq:
            let b = try read128(insn.source, insn, aligned: true)
            cpu.xmm[Int(insn.destination.index & 15)].high = b.low
        case .ldmxcsr:
            let v = UInt32(truncatingIfNeeded: try read(insn.source.kind == .none ? insn.destination : insn.source,
                                                         insn))
            guard v & ~Self.mxcsrWritable == 0 else { throw .fault(.gp(0)) }
            cpu.mxcsr = v
        default:  // .stmxcsr
            try write(insn.destination.kind == .none ? insn.source : insn.destination, insn, UInt64(cpu.mxcsr))
        }
        retire(insn)
    }
}
