// String instructions: MOVS CMPS STOS LODS SCAS, with REP / REPE / REPNE.
//
// rSI, rDI and rCX are used at the address size; the element is `operandSize` bytes; DF picks
// the direction. The source (rSI) is in DS or the override segment, the destination (rDI)
// always in ES. Each iteration reads, then writes memory, then commits the registers, so a
// fault leaves the completed iterations done and RIP on the instruction, as on hardware.
// Between iterations a pending exit (an MMIO write, say) stops the loop with RIP still on
// the instruction: executing it again resumes. Each completed iteration commits its port/MMIO
// reads (`commitAccesses`), so a resumed instruction does not replay them. A long REP also
// stops after `repeatIterationsPerStep` iterations, the way hardware takes interrupts between
// iterations: a guest's REP with a count near 2^64 over memory that never runs out must not hold
// the vCPU thread past its budget or a stop request. INS/OUTS are in the system family.

import VisorX86Decode

extension X86Machine {
    /// Iterations one execution of a REP string instruction may do before yielding (RIP stays
    /// on it, so the next step resumes it).
    static let repeatIterationsPerStep = 4096

    func executeString(_ insn: DecodedInstruction) throws(X86Interruption) {
        let operation = insn.operation
        let size = insn.operandSize
        let width = insn.addressSize
        let addressMask = Self.mask(width)
        let step = flag(RFlag.direction) ? 0 &- UInt64(size) : UInt64(size)
        let sourceSegment = insn.memory.segment  // DS or the override
        let destinationSegment = UInt8(X86CPU.es)
        let repetition = insn.prefixes.repetition
        let compares = operation == .cmps || operation == .scas
        if repetition != .none && readRegister(1, size: width) == 0 {
            retire(insn)
            return
        }
        var iterations = 0
        while true {
            let rsi = readRegister(6, size: width)
            let rdi = readRegister(7, size: width)
            switch operation {
            case .movs:
                let v = try readMemory(segment: sourceSegment, offset: rsi, size: Int(size))
                try writeMemory(segment: destinationSegment, offset: rdi, size: Int(size), value: v)
                writeRegister(6, size: width, (rsi &+ step) & addressMask)
                writeRegister(7, size: width, (rdi &+ step) & addressMask)
            case .stos:
                try writeMemory(segment: destinationSegment, offset: rdi, size: Int(size),
                                value: readRegister(0, size: size))
                writeRegister(7, size: width, (rdi &+ step) & addressMask)
            case .lods:
                let v = try readMemory(segment: sourceSegment, offset: rsi, size: Int(size))
                writeRegister(0, size: size, v)
                writeRegister(6, size: width, (rsi &+ step) & addressMask)
            case .cmps:
                let a = try readMemory(segment: sourceSegment, offset: rsi, size: Int(size))
                let b = try readMemory(segment: destinationSegment, offset: rdi, size: Int(size))
                setFlags(FlagMath.sub(a, b, (a &- b) & Self.mask(size), size))
                writeRegister(6, size: width, (rsi &+ step) & addressMask)
                writeRegister(7, size: width, (rdi &+ step) & addressMask)
            default:  // .scas
                let a = readRegister(0, size: size)
                let b = try readMemory(segment: destinationSegment, offset: rdi, size: Int(size))
                setFlags(FlagMath.sub(a, b, (a &- b) & Self.mask(size), size))
                writeRegister(7, size: width, (rdi &+ step) & addressMask)
            }
            if repetition == .none { break }
            let count = (readRegister(1, size: width) &- 1) & addressMask
            writeRegister(1, size: width, count)
            // This iteration is done: its MMIO reads took effect and are not replayed to the next
            // (a retry after an exit resumes at the next iteration), as INS/OUTS do.
            commitAccesses()
            if count == 0 { break }
            if compares {
                let zero = flag(RFlag.zero)
                if repetition == .repeatWhileEqual && !zero { break }
                if repetition == .repeatWhileNotEqual && zero { break }
            }
            // Stop between iterations for the hypervisor, or to let the step loop check its
            // budget and stop requests; RIP stays on the instruction.
            iterations &+= 1
            // RF = 1 (SDM 17.3.1.1): an event taken between iterations pushes it, and the
            // continuation does not hit an instruction breakpoint on this instruction again.
            // A data breakpoint met in this iteration is a trap after it.
            if hasPendingExit || iterations >= Self.repeatIterationsPerStep || debugTrapHits != 0 {
                cpu.rflags |= RFlag.resume
                return
            }
        }
        retire(insn)
    }
}
