// One software vCPU together with the platform it reaches: the object the interpreter runs on.

import VisorCore
import VisorX86Decode

/// The kind of a memory access, for paging checks and page-fault error codes.
public enum AccessKind: UInt8, Sendable {
    case read, write, execute
}

/// A software vCPU and its platform. The interpreter's families are extensions of this class,
/// one file each (`Interpreter+Arithmetic.swift`, `Interpreter+System.swift`, ...).
public final class X86Machine {
    public let cpu: X86CPU
    public let platform: any X86Platform

    public init(cpu: X86CPU = X86CPU(), platform: any X86Platform) {
        self.cpu = cpu
        self.platform = platform
    }

    /// Executes one decoded instruction whose bytes start at `cpu.rip`. On success RIP and all
    /// state reflect the instruction having retired; on a thrown fault or stop, RIP still points
    /// at it (string instructions may have completed some iterations, as on hardware).
    public func execute(_ insn: DecodedInstruction) throws(X86Interruption) {
        if try executeGeneral(insn) { return }
        if try executeSystem(insn) { return }
        throw .fault(.undefined)
    }
}
