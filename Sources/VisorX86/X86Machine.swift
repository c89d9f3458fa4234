// One software vCPU together with the platform it reaches: the object the interpreter runs on.

import Synchronization
import VisorCore
import VisorX86Decode

/// The kind of a memory access, for paging checks and page-fault error codes.
public enum AccessKind: UInt8, Sendable {
    case read, write, execute
}

/// The decoder the step loop uses: `Decoder.decode` unless a test or tool installs another.
public typealias X86DecodeFunction = @Sendable (UnsafeRawBufferPointer, CodeMode) -> DecodeResult

/// A flag another thread sets to make the step loop stop at the next instruction boundary.
public final class X86StopRequest: Sendable {
    private let flag = Atomic<Bool>(false)
    public init() {}
    /// Asks the CPU to stop soon. Any thread.
    public func request() { flag.store(true, ordering: .releasing) }
    /// True while a stop is requested and not yet taken (does not clear it).
    public var pending: Bool { flag.load(ordering: .relaxed) }
    /// True (once) if a stop was requested since the last call. Driving thread.
    @inline(__always)
    public func take() -> Bool {
        guard flag.load(ordering: .relaxed) else { return false }
        return flag.exchange(false, ordering: .acquiring)
    }
}

/// A software vCPU and its platform. The interpreter's families are extensions of this class,
/// one file each (`Interpreter+Arithmetic.swift`, `Interpreter+System.swift`, ...).
public final class X86Machine {
    public let cpu: X86CPU
    public let platform: any X86Platform

    /// Cached linear-to-physical translations (`TLB.swift`).
    @exclusivity(unchecked) public internal(set) var tlb = X86TLB()
    /// Decoded instructions by guest-physical address (`DecodeCache.swift`).
    @exclusivity(unchecked) public internal(set) var decodeCache: X86DecodeCache
    /// Bytes → instruction; `Decoder.decode` by default.
    public var decode: X86DecodeFunction
    /// An external interrupt waiting for IF = 1 and no interrupt shadow (`injectInterrupt`).
    @exclusivity(unchecked) public internal(set) var pendingInterrupt: UInt8?
    /// Set by a triple fault: the CPU is in shutdown and executes nothing more.
    @exclusivity(unchecked) public internal(set) var isShutdown = false
    /// Instructions retired by the step loop (faulting instructions do not count).
    @exclusivity(unchecked) public internal(set) var instructionsRetired: UInt64 = 0
    /// Settable from any thread: the step loop returns `.stopped` at the next boundary.
    public let stopRequest = X86StopRequest()

    public init(cpu: X86CPU = X86CPU(), platform: any X86Platform,
                decode: @escaping X86DecodeFunction = { Decoder.decode($0, mode: $1) }) {
        self.cpu = cpu
        self.platform = platform
        self.decode = decode
        self.decodeCache = X86DecodeCache(memory: platform.memory)
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
