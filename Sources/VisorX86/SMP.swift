// What the software vCPUs of one machine share, and the two guarantees x86 gives software
// running on several processors over one memory:
//
// Locked read-modify-write. A LOCK-prefixed instruction, and XCHG with a memory operand, is
// atomic with respect to every other processor's accesses (SDM Vol. 3A 9.1.2). The handlers
// that can be locked (ALU, INC/DEC/NOT/NEG, XCHG/XADD/CMPXCHG, BTS/BTR/BTC, CMPXCHG8B) check the
// prefix and run the instruction in "atomic" mode, reaching their destination through
// `readRMW`/`writeRMW`: the operand's one read is an atomic load that is remembered, and its
// write is a host compare-exchange against that value. No other instruction or access pays for
// any of this. If another vCPU changed the operand in
// between, the exchange fails, nothing is written, and the instruction runs again from the
// start (the handlers write memory before registers, so a failed attempt has no effect). A
// LOCK CMPXCHG that fails writes its operand's own value back, which here is a compare-exchange
// from that value to itself: it can never put back a stale value over another vCPU's store.
// Operands inside one aligned 8-byte word use the host atomics (a misaligned one through the
// containing word); an operand that crosses such a word (a "split lock", which Intel and Linux
// treat as a bug) runs under a machine-wide mutex instead, atomic only against other split
// locks. Accessed and dirty bits in paging entries are set with an atomic OR, as the hardware's
// page walker does with locked cycles.
//
// Cross-modifying code. A processor executing code another one wrote must execute a
// serializing instruction first (SDM Vol. 3A 9.1.3); so a vCPU need not see another's code
// writes at once, only by its next serializing point. Each vCPU decodes into its own cache; a
// machine-wide bitmap marks physical pages some vCPU has decoded (set before the bytes are
// read). A store that hits a marked page clears the mark and appends the page to a short
// machine-wide log, bumping its epoch. At its serializing points (entering `run()`, delivering
// an interrupt or exception, CPUID, IRET, MOV to CRn other than CR8 or to DRn, WRMSR,
// LGDT/LIDT/LLDT/LTR, INVLPG, INVD/WBINVD) a vCPU whose seen epoch is behind drops the logged
// pages from its cache, or everything if the log has wrapped. One vCPU alone never logs: its own
// stores already drop its cache at once. Known gap: when vCPU B decodes a page at the very moment
// vCPU A makes the first store to it, the host may order A's check of the mark before A's store
// becomes visible (x86 store-to-load reordering) while B reads the old bytes; B then keeps the
// old decode past its next serializing point. Closing that would put a fence on every guest store.

import CX86Atomics
import Synchronization
import VisorCore
import VisorX86Decode

/// State the vCPUs of one software machine share: guest RAM's host address for atomics, the
/// split-lock mutex, and cross-modifying-code tracking. Thread-safe.
public final class X86SharedState: @unchecked Sendable {
    // @unchecked: the stored properties are immutable, `Mutex`/`Atomic`, or the `codePages`
    // bitmap, which is only touched through the C atomics.
    public let memory: GuestMemory
    // SAFETY: the host address of guest RAM's first byte (`GuestMemory` maps all regions as one
    // allocation, `regions[0]` at host offset 0). `memory` is held, so the mapping outlives this
    // object; every offset added to it comes from `memory.hostOffset(of:length:)`.
    let ramBase: UnsafeMutableRawPointer?
    /// Serializes locked instructions whose operand crosses an aligned 8-byte word.
    let splitLock = Mutex(())

    /// True when more than one vCPU runs on this memory: only then are code writes logged.
    public let tracksCrossModifyingCode: Bool
    // SAFETY: `pageWords` words, allocated here and freed in deinit, accessed only by index
    // `page >> 6` with `page < bitmapPages` and only through the C atomics.
    private let codePages: UnsafeMutablePointer<UInt64>
    private let bitmapPages: UInt64
    private let pageWords: Int
    private let log = Mutex(CodeWriteLog())
    /// Mirrors `log`'s epoch so the serializing-point check is one load.
    private let epoch = Atomic<UInt64>(0)

    /// Entries the code-write log keeps; a vCPU further behind drops its whole cache.
    static let logCapacity = 256

    struct CodeWriteLog {
        var pages = [UInt64](repeating: 0, count: X86SharedState.logCapacity)
        var writers = [Int](repeating: 0, count: X86SharedState.logCapacity)
        var epoch: UInt64 = 0
    }

    /// Shared state for the vCPUs over `memory`; `vcpuCount` > 1 turns on code-write tracking.
    public init(memory: GuestMemory, vcpuCount: Int) {
        self.memory = memory
        let first = memory.regions.first.map { memory.hostAddress(of: $0) } ?? 0
        ramBase = UnsafeMutableRawPointer(bitPattern: UInt(first))
        tracksCrossModifyingCode = vcpuCount > 1
        let end = memory.regions.last.map { $0.guestEnd } ?? 0
        // A lone vCPU never consults the bitmap: give it none.
        bitmapPages = tracksCrossModifyingCode ? (end + 4095) >> 12 : 0
        pageWords = Int((bitmapPages + 63) >> 6)
        codePages = .allocate(capacity: max(pageWords, 1))
        codePages.initialize(repeating: 0, count: max(pageWords, 1))
    }

    deinit {
        codePages.deallocate()
    }

    // MARK: Host pointers

    /// The host address of guest-physical `[physical, physical + length)`, or nil if any of it
    /// is not RAM.
    @inline(__always)
    func hostPointer(_ physical: UInt64, length: UInt64) -> UnsafeMutableRawPointer? {
        guard let ramBase, let offset = memory.hostOffset(of: GuestPhysicalAddress(physical), length: length) else {
            return nil
        }
        return ramBase + Int(offset)
    }

    // MARK: Cross-modifying code

    /// The log's epoch now (a relaxed load: the log itself is read under its mutex).
    @inline(__always)
    var codeWriteEpoch: UInt64 { epoch.load(ordering: .relaxed) }

    /// Marks physical page `page` as decoded by some vCPU. Called before the bytes are read, so
    /// a store that lands after the read sees the mark.
    @inline(__always)
    func markDecoded(page: UInt64) {
        guard page < bitmapPages else { return }
        let word = codePages + Int(page >> 6)
        let bit: UInt64 = 1 << (page & 63)
        if cx86_load64_relaxed(word) & bit == 0 { _ = cx86_fetch_or64(word, bit) }
    }

    /// A store by vCPU `writer` touched physical page `page`: log it if some vCPU decoded there.
    @inline(__always)
    func noteStore(page: UInt64, writer: Int) {
        guard page < bitmapPages else { return }
        let word = codePages + Int(page >> 6)
        let bit: UInt64 = 1 << (page & 63)
        if cx86_load64_relaxed(word) & bit != 0 { logCodeWrite(word: word, bit: bit, page: page, writer: writer) }
    }

    @inline(never)
    private func logCodeWrite(word: UnsafeMutablePointer<UInt64>, bit: UInt64, page: UInt64, writer: Int) {
        // Only the store that clears the mark logs; later ones find it clear until a vCPU
        // decodes the page again (and that vCPU reads the bytes after marking).
        guard cx86_fetch_andnot64(word, bit) & bit != 0 else { return }
        log.withLock { log in
            let slot = Int(log.epoch % UInt64(Self.logCapacity))
            log.pages[slot] = page
            log.writers[slot] = writer
            log.epoch &+= 1
            epoch.store(log.epoch, ordering: .releasing)
        }
    }

    /// The pages written since `seen` by vCPUs other than `reader`, and the new epoch; nil
    /// pages when the log no longer reaches back to `seen` (the reader must drop everything).
    func codeWrites(since seen: UInt64, reader: Int) -> (pages: [UInt64]?, epoch: UInt64) {
        log.withLock { log in
            guard log.epoch &- seen <= UInt64(Self.logCapacity) else { return (nil, log.epoch) }
            var pages: [UInt64] = []
            var e = seen
            while e != log.epoch {
                let slot = Int(e % UInt64(Self.logCapacity))
                if log.writers[slot] != reader { pages.append(log.pages[slot]) }
                e &+= 1
            }
            return (pages, log.epoch)
        }
    }
}

/// How the operands of the current instruction are accessed (`X86Machine.lockMode`).
enum X86LockMode: UInt8 {
    /// Ordinary accesses.
    case none
    /// A locked instruction's memory operand: atomic load, then compare-exchange.
    case atomic
    /// A locked instruction under the machine-wide split-lock mutex: ordinary accesses.
    case exclusive
}

extension X86Machine {
    // MARK: Locked instructions

    /// Executes a LOCK-prefixed instruction (or XCHG with memory) atomically with respect to the
    /// other vCPUs: compare-exchange attempts until one succeeds, or under the split-lock mutex.
    func executeLocked(_ insn: DecodedInstruction) throws(X86Interruption) {
        lockMode = .atomic
        defer { lockMode = .none; lockedOperand = nil }
        while true {
            lockedOperand = nil
            do {
                try execute(insn)
                return
            } catch .stop(.retryLocked(let needsMachineLock)) {
                // Another vCPU changed the operand between the load and the exchange: run the
                // instruction again on the new value. Lock-free: the other vCPU made progress.
                if needsMachineLock { break }
            }
        }
        lockedOperand = nil
        lockMode = .exclusive
        try shared.splitLock.withLock { _ throws(X86Interruption) in try execute(insn) }
    }

    // The read-modify-write handlers (ALU, INC/DEC/NOT/NEG, XCHG/XADD/CMPXCHG, BTS/BTR/BTC,
    // CMPXCHG8B) reach their destination through these, so only they pay for the lock check and
    // only when the operand is memory; every other memory access is untouched.

    /// Reads an RMW destination: an atomic load when it is a locked instruction's memory operand.
    @inline(__always)
    func readRMW(_ operand: Operand, _ insn: DecodedInstruction) throws(X86Interruption) -> UInt64 {
        if operand.kind == .memory && lockMode == .atomic {
            let size = Int(operand.size)
            return try lockedRead(try linearAddress(segment: insn.memory.segment, offset: effectiveAddress(insn),
                                                    size: size), size: size)
        }
        return try read(operand, insn)
    }

    /// Writes an RMW destination: a compare-exchange when it is a locked instruction's operand.
    @inline(__always)
    func writeRMW(_ operand: Operand, _ insn: DecodedInstruction, _ value: UInt64) throws(X86Interruption) {
        if operand.kind == .memory && lockMode == .atomic {
            try writeMemoryRMW(segment: insn.memory.segment, offset: effectiveAddress(insn), size: Int(operand.size),
                               value: value)
            return
        }
        try write(operand, insn, value)
    }

    /// `readMemory` for an RMW operand the handler addresses itself (BT*'s word, CMPXCHG8B).
    func readMemoryRMW(segment: UInt8, offset: UInt64, size: Int) throws(X86Interruption) -> UInt64 {
        let linear = try linearAddress(segment: segment, offset: offset, size: size)
        if lockMode == .atomic { return try lockedRead(linear, size: size) }
        return try readLinear(linear, size: size)
    }

    /// `writeMemory` for an RMW operand: the compare-exchange of a locked instruction's operand.
    func writeMemoryRMW(segment: UInt8, offset: UInt64, size: Int, value: UInt64) throws(X86Interruption) {
        let linear = try linearAddress(segment: segment, offset: offset, size: size)
        if lockMode == .atomic, try lockedWrite(linear, size: size, value: value) { return }
        try writeLinear(linear, size: size, value: value)
    }

    /// A locked instruction's read of its memory operand at `linear` (atomic mode only).
    func lockedRead(_ linear: UInt64, size: Int) throws(X86Interruption) -> UInt64 {
        guard lockedOperand == nil, Int(linear & 0xfff) + size <= 4096 else {
            throw .stop(.retryLocked(needsMachineLock: true))
        }
        watchData(linear, size: size, write: false)
        // Write intent: a locked operand is always written, and faults as a write.
        let physical = try translate(linear, .write)
        let wordAddress = physical & ~7
        let shift = (physical & 7) * 8
        guard (physical & 7) + UInt64(size) <= 8, let word = shared.hostPointer(wordAddress, length: 8) else {
            if !memory.contains(GuestPhysicalAddress(physical), length: UInt64(size)) {
                // MMIO: a device register, not shared RAM; the access is an exit like any other.
                return try readPhysical(physical, size: size)
            }
            throw .stop(.retryLocked(needsMachineLock: true))
        }
        let value: UInt64
        // SAFETY: `word` is guest RAM (checked by hostPointer) and 8-byte aligned (guest-physical
        // alignment equals host alignment: RAM starts page-aligned), so naturally aligned
        // narrower accesses at `physical` inside it are aligned too.
        switch size {
        case 1: value = UInt64(cx86_load8(word + Int(physical & 7)))
        case 2 where physical & 1 == 0: value = UInt64(cx86_load16(word + Int(physical & 7)))
        case 4 where physical & 3 == 0: value = UInt64(cx86_load32(word + Int(physical & 7)))
        default: value = (cx86_load64(word) >> shift) & Self.mask(UInt8(size))
        }
        lockedOperand = LockedOperand(linear: linear, physical: physical, size: size, value: value)
        return value
    }

    /// A locked instruction's write at `linear`: a compare-exchange against the value read if
    /// it is the locked operand (atomic mode only). False when it is some other access.
    func lockedWrite(_ linear: UInt64, size: Int, value new: UInt64) throws(X86Interruption) -> Bool {
        guard let operand = lockedOperand, operand.linear == linear, operand.size == size else { return false }
        watchData(linear, size: size, write: true)
        let physical = operand.physical
        guard let word = shared.hostPointer(physical & ~7, length: 8) else {
            throw .stop(.retryLocked(needsMachineLock: true))
        }
        let m = Self.mask(UInt8(size))
        let old = operand.value & m
        let value = new & m
        let exchanged: Bool
        // SAFETY: as in `lockedRead`: guest RAM, aligned for each width used.
        switch size {
        case 1: exchanged = cx86_cas8(word + Int(physical & 7), UInt8(old), UInt8(value))
        case 2 where physical & 1 == 0:
            exchanged = cx86_cas16(word + Int(physical & 7), UInt16(old), UInt16(value))
        case 4 where physical & 3 == 0:
            exchanged = cx86_cas32(word + Int(physical & 7), UInt32(old), UInt32(value))
        case 8:
            exchanged = cx86_cas64(word, old, value)
        default:
            // Misaligned inside one 8-byte word: exchange the whole word, the other bytes as read.
            let shift = (physical & 7) * 8
            let current = cx86_load64(word)
            guard (current >> shift) & m == old else { throw .stop(.retryLocked(needsMachineLock: false)) }
            exchanged = cx86_cas64(word, current, (current & ~(m << shift)) | (value << shift))
        }
        guard exchanged else { throw .stop(.retryLocked(needsMachineLock: false)) }
        lockedOperand = nil
        if old != value { noteStore(physical, size: size) }
        return true
    }

    // MARK: Cross-modifying code

    /// Every RAM store ends here: drops this vCPU's cached code on the pages, and logs the
    /// pages for the other vCPUs when they may have decoded there.
    @inline(__always)
    func noteStore(_ address: UInt64, size: Int) {
        decodeCache.noteWrite(address, size: size)
        if let watch = codeWatch {
            let first = address >> 12
            watch.noteStore(page: first, writer: vcpuIndex)
            let last = (address &+ UInt64(max(size, 1) - 1)) >> 12
            if last != first { watch.noteStore(page: last, writer: vcpuIndex) }
        }
    }

    /// A serializing point: drops cached code that other vCPUs have written since the last one.
    @inline(__always)
    public func serialize() {
        if let watch = codeWatch, watch.codeWriteEpoch != seenCodeWriteEpoch { dropCodeWrittenElsewhere(watch) }
    }

    @inline(never)
    private func dropCodeWrittenElsewhere(_ watch: X86SharedState) {
        let (pages, now) = watch.codeWrites(since: seenCodeWriteEpoch, reader: vcpuIndex)
        if let pages {
            for page in pages { decodeCache.invalidate(physicalPage: page) }
        } else {
            decodeCache.invalidateAll()
        }
        seenCodeWriteEpoch = now
    }
}

/// The memory operand a locked instruction read, awaiting its compare-exchange.
struct LockedOperand {
    var linear: UInt64
    var physical: UInt64
    var size: Int
    var value: UInt64
}
