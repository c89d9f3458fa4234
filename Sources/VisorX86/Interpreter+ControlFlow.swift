// Near control transfers: JMP/CALL (relative and indirect), Jcc, RET (imm16), LOOP/LOOPE/
// LOOPNE/JrCXZ. Far transfers, INT and IRET belong to the system family.
//
// A target is truncated to the operand size outside 64-bit mode (16 or 32 bits) and checked
// against the CS limit (#GP(0)); in 64-bit mode it must be canonical (#GP(0)). The checks
// happen before anything is written (the return-address push, rSP, rCX, RIP).

import VisorX86Decode

extension X86Machine {
    /// A near branch target, truncated and checked as the mode requires.
    func nearBranchTarget(_ raw: UInt64, _ insn: DecodedInstruction) throws(X86Interruption) -> UInt64 {
        if cpu.codeMode == .bits64 {
            let target = insn.operandSize == 2 ? raw & 0xffff : raw
            guard Self.isCanonical(target) else { throw .fault(.gp(0)) }
            return target
        }
        let target = raw & (insn.operandSize == 2 ? 0xffff : 0xffff_ffff)
        // The descriptor cache holds the limit in bytes (granularity already applied).
        guard target <= UInt64(cpu.segments[X86CPU.cs].limit) else { throw .fault(.gp(0)) }
        return target
    }

    /// Width of a near branch's return address and of an indirect target.
    @inline(__always)
    private func branchSize(_ insn: DecodedInstruction) -> UInt8 {
        cpu.codeMode == .bits64 && insn.operandSize != 2 ? 8 : insn.operandSize
    }

    func executeControlFlow(_ insn: DecodedInstruction) throws(X86Interruption) {
        let next = cpu.rip &+ UInt64(insn.length)
        switch insn.operation {
        case .jmpRelative:
            cpu.rip = try nearBranchTarget(next &+ insn.immediate, insn)
        case .jcc:
            if conditionHolds(insn.condition) {
                cpu.rip = try nearBranchTarget(next &+ insn.immediate, insn)
            } else {
                retire(insn)
            }
        case .callRelative:
            let target = try nearBranchTarget(next &+ insn.immediate, insn)
            let size = branchSize(insn)
            try push(next & Self.mask(size), size: size)
            cpu.rip = target
        case .jmpIndirect:
            let size = branchSize(insn)
            cpu.rip = try nearBranchTarget(try readValue(insn.source, insn, size: size), insn)
        case .callIndirect:
            let size = branchSize(insn)
            let target = try nearBranchTarget(try readValue(insn.source, insn, size: size), insn)
            try push(next & Self.mask(size), size: size)
            cpu.rip = target
        case .ret:
            let size = branchSize(insn)
            let width = stackAddressSize
            let rsp = readRegister(4, size: width)
            let raw = try readMemory(segment: UInt8(X86CPU.ss), offset: rsp, size: Int(size))
            let target = try nearBranchTarget(raw, insn)
            let release = UInt64(size) &+ (insn.immediate & 0xffff)
            writeRegister(4, size: width, (rsp &+ release) & Self.mask(width))
            cpu.rip = target
        default:  // .loop, .loopEqual, .loopNotEqual, .jumpIfCXZero
            let width = insn.addressSize
            var count = readRegister(1, size: width)
            let taken: Bool
            if insn.operation == .jumpIfCXZero {
                taken = count == 0
            } else {
                count = (count &- 1) & Self.mask(width)
                switch insn.operation {
                case .loopEqual: taken = count != 0 && flag(RFlag.zero)
                case .loopNotEqual: taken = count != 0 && !flag(RFlag.zero)
                default: taken = count != 0
                }
            }
            var target: UInt64 = 0
            if taken { target = try nearBranchTarget(next &+ insn.immediate, insn) }
            if insn.operation != .jumpIfCXZero { writeRegister(1, size: width, count) }
            if taken { cpu.rip = target } else { retire(insn) }
        }
    }
}
