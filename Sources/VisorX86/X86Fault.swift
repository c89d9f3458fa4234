// Exceptions the software CPU raises, and the other reasons an instruction stops short.

import VisorCore

/// An architectural exception raised while executing an instruction. The instruction has no
/// architectural effect (RIP still points at it) unless noted; delivery goes through the IDT.
public struct X86Fault: Error, Equatable, Sendable {
    public var vector: UInt8
    /// The error code pushed for #DF, #TS, #NP, #SS, #GP, #PF, #AC; nil for the others.
    public var errorCode: UInt32?
    /// For #PF: the faulting linear address, which goes to CR2.
    public var faultingAddress: UInt64?

    public init(vector: UInt8, errorCode: UInt32? = nil, faultingAddress: UInt64? = nil) {
        self.vector = vector; self.errorCode = errorCode; self.faultingAddress = faultingAddress
    }

    public static let divideError: UInt8 = 0, debug: UInt8 = 1, nmi: UInt8 = 2, breakpoint: UInt8 = 3
    public static let overflow: UInt8 = 4, boundRange: UInt8 = 5, invalidOpcode: UInt8 = 6
    public static let deviceNotAvailable: UInt8 = 7, doubleFault: UInt8 = 8, invalidTSS: UInt8 = 10
    public static let segmentNotPresent: UInt8 = 11, stackFault: UInt8 = 12, generalProtection: UInt8 = 13
    public static let pageFault: UInt8 = 14, x87Error: UInt8 = 16, alignmentCheck: UInt8 = 17
    public static let machineCheck: UInt8 = 18, simdError: UInt8 = 19

    /// #DE
    public static let divide = X86Fault(vector: divideError)
    /// #UD
    public static let undefined = X86Fault(vector: invalidOpcode)
    /// #GP(code)
    public static func gp(_ code: UInt32 = 0) -> X86Fault { X86Fault(vector: generalProtection, errorCode: code) }
    /// #SS(code)
    public static func ss(_ code: UInt32 = 0) -> X86Fault { X86Fault(vector: stackFault, errorCode: code) }
    /// #NP(code)
    public static func np(_ code: UInt32) -> X86Fault { X86Fault(vector: segmentNotPresent, errorCode: code) }
    /// #TS(code)
    public static func ts(_ code: UInt32) -> X86Fault { X86Fault(vector: invalidTSS, errorCode: code) }
    /// #PF(code) at `address`.
    public static func pf(_ code: UInt32, address: UInt64) -> X86Fault {
        X86Fault(vector: pageFault, errorCode: code, faultingAddress: address)
    }
    /// #NM
    public static let deviceNotAvailableFault = X86Fault(vector: deviceNotAvailable)
    /// #MF: a pending unmasked x87 exception, delivered at the next waiting x87 instruction.
    public static let x87FloatingPoint = X86Fault(vector: x87Error)
    /// #XM: an unmasked SSE floating-point exception.
    public static let simdFloatingPoint = X86Fault(vector: simdError)

    /// Page-fault error-code bits.
    public static let pfPresent: UInt32 = 1 << 0, pfWrite: UInt32 = 1 << 1, pfUser: UInt32 = 1 << 2
    public static let pfReservedBit: UInt32 = 1 << 3, pfInstructionFetch: UInt32 = 1 << 4
}

/// Why an instruction stopped without completing or faulting: the hypervisor must act first.
public enum X86Stop: Error, Equatable, Sendable {
    /// Visor must answer `exit` (a port or MMIO read) before the instruction can complete; it
    /// will be executed again from the start once the value is there.
    case needsHypervisor(Exit)
    /// A locked instruction must start over: its operand changed under it (another vCPU stored
    /// there between its read and its compare-exchange), or it needs the machine-wide lock
    /// (`needsMachineLock`: the operand crosses an aligned 8-byte word). Internal to
    /// `X86Machine.executeLocked`; it never leaves `execute`.
    case retryLocked(needsMachineLock: Bool)
}

/// Either way an instruction can end short of retiring.
public enum X86Interruption: Error, Equatable, Sendable {
    case fault(X86Fault)
    case stop(X86Stop)
}
