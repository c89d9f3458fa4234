// Counting Robin and Irvine's sensitive-but-unprivileged instructions (VisorCore's
// `SensitiveInstruction`) as the software CPU executes them, for `visor run --stats`.
//
// Where: one increment in the handler of each family (Interpreter+Stack.swift for PUSHF, POPF
// and PUSH Sreg; Interpreter+System.swift for the rest), not a lookup in the step loop, so the
// instructions that are not sensitive pay nothing; PUSH pays one compare of its source's kind.
// The `bt` engine's callouts run the same handlers and so count the same way.
//
// What counts: every execution attempted, at the CPL it started at — an instruction that
// faults (SLDT in real mode, POPF in virtual-8086 mode with IOPL < 3, MOV to a segment register
// with a bad selector, a far CALL to a segment the CPL may not reach) counts like one that
// retires, since a trap-and-emulate monitor would have had to see both. An instruction the
// decoder rejects (INTO, PUSH DS, direct far JMP/CALL in 64-bit mode) never executes and does
// not count. An instruction that is run again after Visor answered its MMIO read (a POP Sreg
// from MMIO, say) counts once per attempt.

import VisorCore
import VisorX86Decode

extension X86Machine {
    /// Counts one execution of `kind` at the current privilege level (0 in real mode).
    @inline(__always)
    func countSensitive(_ kind: SensitiveInstruction) {
        sensitiveInstructions.record(kind, cpl: cpu.cr0 & X86.cr0ProtectionEnable == 0 ? 0 : cpu.cpl)
    }

    /// The control transfers among the sensitive instructions: far CALL/JMP/RET, INT n, INT3, INTO
    /// (not INT1, IRET or the fast system calls, which Robin and Irvine do not list).
    @inline(__always)
    func countSensitiveControlTransfer(_ operation: Operation) {
        switch operation {
        case .callFar: countSensitive(.callFar)
        case .jmpFar: countSensitive(.jmpFar)
        case .retFar: countSensitive(.retFar)
        case .int: countSensitive(.intImmediate)
        case .int3: countSensitive(.int3)
        case .into: countSensitive(.into)
        default: break
        }
    }
}

extension InterpVirtualCPU: SensitiveInstructionCounting {
    /// This vCPU's counts (driving thread, or after it ended).
    public var sensitiveInstructionCounts: SensitiveInstructionCounts { machine.sensitiveInstructions }
}
