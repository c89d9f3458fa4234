// One software vCPU together with the bus it reaches: the object the interpreter runs on.

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

/// A software vCPU and its bus. The interpreter's families are extensions of this class,
/// one file each (`Interpreter+Arithmetic.swift`, `Interpreter+System.swift`, ...).
public final class X86Machine {
    public let cpu: X86CPU
    public let bus: any X86Bus
    /// `bus.memory`, read once: guest RAM (its identity never changes).
    public let memory: GuestMemory
    /// `bus` when it is the `interp` engine's own bus: the per-instruction
    /// notifications then go to it directly instead of through the existential, unretained
    /// (sound: `bus` holds the same object strongly for the machine's lifetime).
    let interpBus: Unmanaged<InterpBus>?

    /// Cached linear-to-physical translations (`TLB.swift`).
    @exclusivity(unchecked) public internal(set) var tlb = X86TLB()
    /// Decoded instructions by guest-physical address (`DecodeCache.swift`).
    @exclusivity(unchecked) public internal(set) var decodeCache: X86DecodeCache
    /// Bytes → instruction; `Decoder.decode` by default.
    public var decode: X86DecodeFunction
    /// An external interrupt waiting for IF = 1 and no interrupt shadow (`injectInterrupt`).
    @exclusivity(unchecked) public internal(set) var pendingInterrupt: UInt8? {
        didSet { updateAttention() }
    }
    /// While set, the step loop returns `.interruptWindow` before an instruction at which an
    /// external interrupt could be taken and none is pending (`VirtualCPU.requestInterruptWindow`).
    @exclusivity(unchecked) public var interruptWindowRequested = false {
        didSet { updateAttention() }
    }
    /// A non-maskable interrupt waiting for delivery (`injectNMI`): one is held, and any more
    /// arriving before it is delivered collapse into it.
    @exclusivity(unchecked) public internal(set) var nmiPending = false {
        didSet { updateAttention() }
    }
    /// NMIs are blocked from the delivery of one until the next IRET (SDM Vol. 3A 6.7.1): a new
    /// one waits in `nmiPending` meanwhile.
    @exclusivity(unchecked) public internal(set) var nmiBlocked = false {
        didSet { updateAttention() }
    }
    /// `pendingInterrupt != nil || interruptWindowRequested || (nmiPending && !nmiBlocked)`:
    /// the step loop's one check for interrupt work before each instruction.
    @exclusivity(unchecked) private(set) var needsInterruptCheck = false
    /// Set by a triple fault: the CPU is in shutdown and executes nothing more.
    @exclusivity(unchecked) public internal(set) var isShutdown = false
    /// Instructions retired by the step loop (faulting instructions do not count).
    @exclusivity(unchecked) public internal(set) var instructionsRetired: UInt64 = 0
    /// Robin and Irvine's sensitive instructions executed, by kind and CPL (`SensitiveInstructions.swift`).
    @exclusivity(unchecked) public internal(set) var sensitiveInstructions = SensitiveInstructionCounts()
    /// DR6 bits of the data and I/O breakpoints the current instruction met (`Debug.swift`).
    @exclusivity(unchecked) var debugTrapHits: UInt64 = 0
    /// Runs translated code ahead of the interpreter (the `bt` engine); nil for `interp`.
    public var blockExecutor: (any X86BlockExecutor)? {
        didSet {
            let executor = blockExecutor
            stepExecutor = executor
            decodeCache.onInvalidate = executor.map { e in { page in e.codeInvalidated(physicalPage: page) } }
            decodeCache.onCodePage = executor.map { e in { page in e.codePageAdded(physicalPage: page) } }
        }
    }
    /// `blockExecutor` as the step loop reads it before every instruction: not retained there
    /// (`blockExecutor` keeps it alive) and without a dynamic exclusivity check, which together
    /// cost a few percent of a network transfer's time on `bt` (perf).
    @exclusivity(unchecked) unowned(unsafe) var stepExecutor: (any X86BlockExecutor)?
    /// Instructions the last translated block retired (the step loop's budget counts them).
    @exclusivity(unchecked) var blockRetired = 0
    /// Instructions `run(budget:)` may still retire: a block executor runs no more than this
    /// (to the end of the block that passes it).
    @exclusivity(unchecked) public internal(set) var budgetLeft = Int.max
    /// Settable from any thread: the step loop returns `.stopped` at the next boundary.
    public let stopRequest = X86StopRequest()

    /// What this CPU shares with the other vCPUs over the same memory (`SMP.swift`).
    public let shared: X86SharedState
    /// `shared` when it tracks cross-modifying code (more than one vCPU), else nil: the store
    /// path's one check.
    let codeWatch: X86SharedState?
    /// This vCPU's number among those sharing `shared`.
    public let vcpuIndex: Int
    /// The code-write log epoch this CPU has caught up with (`serialize()`).
    @exclusivity(unchecked) var seenCodeWriteEpoch: UInt64 = 0
    /// How the current instruction's memory operands are accessed (locked instructions).
    @exclusivity(unchecked) var lockMode = X86LockMode.none
    /// The locked instruction's operand, between its read and its compare-exchange.
    @exclusivity(unchecked) var lockedOperand: LockedOperand?

    // The fetch shortcut (`fetchInstruction`): the linear page RIP was last fetched from and
    // the decode-cache tables of its physical page, valid while `fetchEpoch` equals
    // `fetchEpochNow` (a sum of counters that only grow, so it changes whenever any does).
    @exclusivity(unchecked) var fetchLinearPage: UInt64 = .max
    @exclusivity(unchecked) var fetchEpoch: UInt64 = .max
    // SAFETY: unretained pointers into a decode-cache page (`X86DecodeCache.Page`). The cache
    // frees or moves them only when it drops a page or stores an entry, and both bump a counter
    // in `fetchEpochNow`, which invalidates the shortcut before they are read again.
    @exclusivity(unchecked) var fetchSlots: UnsafeMutablePointer<UInt32>?
    @exclusivity(unchecked) var fetchEntries: UnsafeMutablePointer<DecodedInstruction>?
    /// Instructions that cross from one page into the next, decoded lately (`fetchSlow`), which
    /// the decode cache, one page per entry, does not hold: by linear RIP, direct-mapped.
    @exclusivity(unchecked) var crossingFetches = [CrossingFetch?](repeating: nil, count: CrossingFetch.slots)

    /// A CPU over `bus`. vCPUs of one machine pass the same `shared` state (made for
    /// `bus.memory`) and their own `vcpuIndex`; nil makes a private one (a lone CPU).
    public init(cpu: X86CPU = X86CPU(), bus: any X86Bus,
                decode: @escaping X86DecodeFunction = { Decoder.decode($0, mode: $1) },
                shared: X86SharedState? = nil, vcpuIndex: Int = 0) {
        self.cpu = cpu
        self.bus = bus
        self.memory = bus.memory
        self.interpBus = (bus as? InterpBus).map { Unmanaged.passUnretained($0) }
        self.decode = decode
        self.decodeCache = X86DecodeCache(memory: bus.memory)
        let shared = shared ?? X86SharedState(memory: bus.memory, vcpuCount: 1)
        precondition(shared.memory === bus.memory, "X86SharedState is for another memory")
        self.shared = shared
        self.codeWatch = shared.tracksCrossModifyingCode ? shared : nil
        self.vcpuIndex = vcpuIndex
    }

    private func updateAttention() {
        needsInterruptCheck = pendingInterrupt != nil || interruptWindowRequested || (nmiPending && !nmiBlocked)
    }

    /// Executes one decoded instruction whose bytes start at `cpu.rip`. On success RIP and all
    /// state reflect the instruction having retired; on a thrown fault or stop, RIP still points
    /// at it (string instructions may have completed some iterations, as on hardware).
    public func execute(_ insn: DecodedInstruction) throws(X86Interruption) {
        if try executeGeneral(insn) { return }
        if try executeSystem(insn) { return }
        if try executeFloatingPoint(insn) { return }
        throw .fault(.undefined)
    }
}
