// The `bt` engine's per-vCPU translator and dispatcher: finds (or makes) the translated block
// for CS:RIP, runs it on the context block, and hands the CPU back to the step loop, which
// checks for interrupts, stop requests and the budget between blocks and runs through the
// interpreter whatever a block stopped before.
//
// Blocks are keyed by the guest-physical address of their first instruction, its RIP and the
// code mode: the code bakes in RIP-relative addresses and branch targets, so the same bytes
// reached at another RIP get a block of their own. A block never leaves its physical page but
// for its last instruction, which may cross into the next (see `Crossing`), and
// it decodes through the machine's decode cache, so every store that reaches a page with
// cached code (this vCPU's at once, another vCPU's at this one's next serializing point) drops
// the page's blocks before they can run again (`codeInvalidated`).
//
// Blocks jump to each other without coming back here: each block's end looks its next RIP up
// in a jump cache (RIP → block entry) and jumps there, until `instructionsPerEntry` have run.
// The cache is filled here, when a block is found or made for a RIP, and it stands for the
// current linear→physical mapping, code mode, CS base and limit, and CPL: all of them change only
// in the interpreter (between entries into translated code), so the cache is emptied at entry
// when any of them changed since the last, and whenever blocks are dropped. Two changes keep
// entries: a change of CPL, mode or CS under the same mapping takes up the tables that view
// had (`savedViews`), and a CR3 write drops only the entries for pages that are not global
// (logged as they are made), since global pages map alike in every address space.

import VisorCore
import VisorX86
import VisorX86Decode
#if canImport(Glibc)
import Glibc
#endif

/// What a `bt` vCPU translated and ran.
public struct BTStatistics: Sendable, Equatable {
    /// Blocks translated, and the guest instructions in them.
    public var blocksTranslated: UInt64 = 0
    public var instructionsTranslated: UInt64 = 0
    /// Host nanoseconds spent translating (decode, emit, install).
    public var translationNanoseconds: UInt64 = 0
    /// Entries into translated code (each runs blocks one after another, jumping between
    /// them, up to `BTExecutor.instructionsPerEntry` instructions), and the instructions they retired.
    public var entries: UInt64 = 0
    public var instructionsRun: UInt64 = 0
    /// Blocks dropped because their code was written, and times the code cache was emptied.
    public var blocksInvalidated: UInt64 = 0
    public var cacheResets: UInt64 = 0
    /// Loads and stores made through the callouts: the host TLB missed, or the access could
    /// not use it (FS/GS, 32- and 16-bit code, stores beside other vCPUs).
    public var loadCallouts: UInt64 = 0
    public var storeCallouts: UInt64 = 0
    /// Exits linked straight to the next block (same page).
    public var links: UInt64 = 0
    /// Jump cache misses answered from translated code (a call into Swift, no return to the
    /// step loop), SYSCALL's and SYSRET's included.
    public var chainLookups: UInt64 = 0
    /// Changes of CPL, mode or CS that found the new view's jump cache and host TLB entries
    /// still valid (seen since the mapping last changed).
    public var viewsResumed: UInt64 = 0
    /// Changes of address space (CR3 writes) after which the jump cache and host TLB kept their
    /// entries for global pages, dropping only the others.
    public var globalEntriesKept: UInt64 = 0
    /// Changes of mapping after which every view's jump cache and host TLB entries were dropped
    /// (paging turned on or off, a TLB flush, a CR3 write past the non-global log's limit).
    public var mappingsForgotten: UInt64 = 0
    /// SYSCALLs and SYSRETs run by translated code (a callout, without leaving it).
    public var systemCalls: UInt64 = 0
    /// Blocks translated whose last instruction crosses into the next page.
    public var crossingBlocks: UInt64 = 0
    /// Blocks translated that end in a retpoline thunk's CALL, MOV and RET made one jump.
    public var retpolineBlocks: UInt64 = 0
    /// Host bytes of translated code in the cache now.
    public var codeBytes: UInt64 = 0
    public init() {}
}

/// The translator and code cache of one `bt` vCPU. Not thread-safe: the vCPU's own thread
/// drives it (so its stored properties skip dynamic exclusivity checks, which cost several
/// percent of a Linux boot's time in `executeBlock`, measured with perf).
public final class BTExecutor: X86BlockExecutor {
    struct BlockKey: Hashable {
        let physical: UInt64
        let rip: UInt64
        let mode: CodeMode
    }

    /// A translated block, or a marker that the instruction at its key has none (the
    /// interpreter runs it).
    struct Block {
        let entry: UnsafeRawPointer?
        let instructions: Int
        /// Where the next page was when the block's last instruction, which crosses into it,
        /// was decoded; nil for a block within its page.
        var crossing: Crossing? = nil
    }

    /// The page a block's last instruction crosses into: its linear address and the
    /// guest-physical page it mapped to. Such a block depends on that mapping as well as its
    /// own page's, so it runs only once `holds` (checked where the jump cache is filled, which
    /// stands for one mapping), and no exit is ever linked to it.
    struct Crossing: Equatable {
        let linear: UInt64
        let physical: UInt64

        /// True when the next page still maps to the same place with execute rights (the
        /// machine's TLB then holds it, for `isGlobalPage`).
        func holds(_ machine: X86Machine) -> Bool {
            (try? machine.translate(linear, .execute)) == physical
        }
    }

    @exclusivity(unchecked) private var blocks: [BlockKey: Block] = [:]
    /// What the jump cache's entries stand for (see the header).
    @exclusivity(unchecked) private var view: X86CodeView?
    /// RIPs known to have no block under the current view (the interpreter runs them), in
    /// the jump cache's slots: answered without hashing, emptied with the jump cache.
    // SAFETY: `BTContext.jumpCacheEntries` tags, owned by this executor (freed in deinit),
    // indexed by masked jump cache slots.
    private let noBlock: UnsafeMutablePointer<UInt64>
    /// The jump cache's generation, as the context holds it (bits 62:48).
    @exclusivity(unchecked) private var jumpGeneration: UInt64 = 0
    /// The context's tables (`BTContext.tlbReadTags` ... `jumpBodies`) as UInt64 arrays; see
    /// `BTTables`.
    private let tables: BTTables
    /// The inline paths translated code takes (BMI2 on the host; stores unless SMP).
    @exclusivity(unchecked) private var fast = BTFastPaths(loads: BTFastPaths.hostHasBMI2, stores: false)
    @exclusivity(unchecked) private var fastPathsDecided = false
    /// The trampolines at the start of the code cache: enter(context, block) and exit.
    typealias Enter = @convention(c) (UnsafeMutableRawPointer, UnsafeRawPointer) -> UInt64
    @exclusivity(unchecked) private var enter: Enter
    /// Guest instructions translated code may retire, jumping from block to block, before it
    /// returns here (it stops at the first block end past them).
    static let instructionsPerEntry: UInt64 = 8192
    /// The keys of the blocks on each physical page, for invalidation.
    @exclusivity(unchecked) private var pageKeys: [UInt64: [BlockKey]] = [:]
    private let cache: CodeCache
    // SAFETY: `BTContext.size` bytes, 16-byte aligned, owned by this executor (freed in deinit);
    // translated code and the callouts access it only at the offsets in `BTContext`.
    private let context: UnsafeMutableRawPointer
    @exclusivity(unchecked) public private(set) var statistics = BTStatistics()

    /// Default code cache size per vCPU: address space reserved, not memory (pages are used as
    /// code fills them). A Linux boot to its shell translates about 30 MiB of code when
    /// nothing is dropped; a smaller cache empties itself and translates it all again.
    public static let defaultCacheBytes = 128 << 20

    public init(cacheBytes: Int = BTExecutor.defaultCacheBytes) throws {
        cache = try CodeCache(capacity: cacheBytes)
        // Zeroed, which makes every table empty (`BTContext.emptyTag`, `emptyStoredPageTag`).
        context = .allocate(byteCount: BTContext.size, alignment: 64)
        memset(context, 0, BTContext.size)
        tables = BTTables(context)
        noBlock = .allocate(capacity: BTContext.jumpCacheEntries)
        memset(noBlock, 0, 8 * BTContext.jumpCacheEntries)
        context.storeBytes(of: BTContext.tlbAddressMask, toByteOffset: Int(BTContext.tlbIndexMask), as: UInt64.self)
        context.storeBytes(of: UInt64(BTContext.jumpCacheEntries - 1), toByteOffset: Int(BTContext.jumpIndexMask), as: UInt64.self)
        for (slot, mask) in [(BTContext.statusFlagsMask, UInt64(BTContext.statusFlags)),
                             (BTContext.pushfImageMask, ~UInt64(BTContext.statusFlags | 0x3_0000)),
                             (BTContext.interruptFlagMask, 0x200), (BTContext.allButInterruptFlagMask, ~UInt64(0x200)),
                             (BTContext.ioplMask, 0x3000)] {
            context.storeBytes(of: mask, toByteOffset: Int(slot), as: UInt64.self)
        }
        // The trampolines and stubs, installed together (one W^X window), each 16-byte aligned.
        let pieces = [Self.enterTrampoline(), Self.exitTrampoline(), Self.accessStub(store: false),
                      Self.accessStub(store: true), Self.missStub(),
                      Self.accessStub(store: false, keepingFlags: true), Self.accessStub(store: true, keepingFlags: true)].compactMap { $0 }
        guard pieces.count == 7 else {
            context.deallocate(); noBlock.deallocate()
            throw CodeCacheError(description: "the trampolines could not be assembled")
        }
        var joined: [UInt8] = []
        var offsets: [Int] = []
        for piece in pieces {
            while joined.count % 16 != 0 { joined.append(0xcc) }
            offsets.append(joined.count)
            joined += piece
        }
        guard let base = cache.install(joined) else {
            context.deallocate(); noBlock.deallocate()
            throw CodeCacheError(description: "the code cache has no room for the trampolines")
        }
        let enterAddress = base + offsets[0], exitAddress = base + offsets[1]
        let loadStub = base + offsets[2], storeStub = base + offsets[3], missStub = base + offsets[4]
        context.storeBytes(of: UInt64(UInt(bitPattern: base + offsets[5])), toByteOffset: Int(BTContext.loadStubKeepingFlags), as: UInt64.self)
        context.storeBytes(of: UInt64(UInt(bitPattern: base + offsets[6])), toByteOffset: Int(BTContext.storeStubKeepingFlags), as: UInt64.self)
        cache.keepInstalled()
        // SAFETY: `enterAddress` holds the enter trampoline, a C function of this type.
        enter = unsafeBitCast(enterAddress, to: Enter.self)
        context.storeBytes(of: UInt64(UInt(bitPattern: exitAddress)), toByteOffset: Int(BTContext.exitAddress), as: UInt64.self)
        context.storeBytes(of: UInt64(UInt(bitPattern: loadStub)), toByteOffset: Int(BTContext.loadStub), as: UInt64.self)
        context.storeBytes(of: UInt64(UInt(bitPattern: storeStub)), toByteOffset: Int(BTContext.storeStub), as: UInt64.self)
        context.storeBytes(of: Self.callouts.load, toByteOffset: Int(BTContext.loadCallout), as: UInt64.self)
        context.storeBytes(of: Self.callouts.store, toByteOffset: Int(BTContext.storeCallout), as: UInt64.self)
        context.storeBytes(of: UInt64(UInt(bitPattern: missStub)), toByteOffset: Int(BTContext.missStub), as: UInt64.self)
        context.storeBytes(of: Self.callouts.lookup, toByteOffset: Int(BTContext.lookupCallout), as: UInt64.self)
        clearJumpCache()
        flushHostTLB()
        context.storeBytes(of: Unmanaged.passUnretained(self).toOpaque(), toByteOffset: Int(BTContext.executor),
                           as: UnsafeMutableRawPointer.self)
    }

    deinit {
        context.deallocate()
        noBlock.deallocate()
    }

    /// Empties the host TLB (the mapping, CPL or paging rights may have changed): a new
    /// generation, and a real clear only when the generations run out.
    private func flushHostTLB() {
        lastTLBGeneration += 1
        if lastTLBGeneration > BTContext.maximumTLBGeneration {
            lastTLBGeneration = 1
            for i in 0..<BTContext.hostTLBEntries {
                tables[BTContext.tlbReadTags, BTContext.tlbWord(i)] = BTContext.emptyStoredPageTag
                tables[BTContext.tlbWriteTags, BTContext.tlbWord(i)] = BTContext.emptyStoredPageTag
            }
            savedViews.removeAll()
        }
        context.storeBytes(of: lastTLBGeneration << 52, toByteOffset: Int(BTContext.tlbGeneration), as: UInt64.self)
    }

    /// The generations last handed out (never reused until they run out and the tables are
    /// cleared for real): views kept in `savedViews` may hold older ones.
    @exclusivity(unchecked) private var lastTLBGeneration: UInt64 = 0
    @exclusivity(unchecked) private var lastJumpGeneration: UInt64 = 0
    /// The jump cache and host TLB generations of the other views seen since the mapping last
    /// changed (another CPL, mode or CS: a system call, an interrupt from user mode). Their
    /// entries stay valid while the mapping does, so going back to such a view takes its
    /// generations up again instead of starting empty.
    @exclusivity(unchecked) private var savedViews: [(view: X86CodeView, jump: UInt64, tlb: UInt64)] = []
    static let savedViewLimit = 8

    /// Moves the jump cache and host TLB from `old` to `new`, views of the same mapping: the old
    /// one's generations are kept, the new one's taken up if it was seen, else new ones begun.
    /// The current view is never among `savedViews`: taking a saved view up puts the one left in
    /// its place (one pass over the list, twice per system call).
    private func switchView(from old: X86CodeView, to new: X86CodeView) {
        let left = (view: old, jump: jumpGeneration,
                    tlb: context.load(fromByteOffset: Int(BTContext.tlbGeneration), as: UInt64.self))
        if let i = savedViews.firstIndex(where: { $0.view == new }) {
            let seen = savedViews[i]
            savedViews[i] = left
            jumpGeneration = seen.jump
            context.storeBytes(of: jumpGeneration, toByteOffset: Int(BTContext.jumpGeneration), as: UInt64.self)
            context.storeBytes(of: seen.tlb, toByteOffset: Int(BTContext.tlbGeneration), as: UInt64.self)
            statistics.viewsResumed &+= 1
        } else {
            if savedViews.count >= Self.savedViewLimit { savedViews.removeFirst() }
            savedViews.append(left)
            clearJumpCache()
            flushHostTLB()
        }
    }

    /// Makes `now` the view the jump cache and host TLB stand for, keeping what still holds of
    /// the current one's entries: the same mapping, or the same global pages.
    private func moveToView(_ now: X86CodeView) {
        if let old = view, old.sameMapping(as: now) {
            switchView(from: old, to: now)
        } else if let old = view, old.sameGlobalMapping(as: now), !nonGlobal.overflowed {
            keepGlobalEntries(from: old, to: now)
        } else {
            forgetMapping()
        }
        view = now
    }

    /// Starts over: every view's jump cache and host TLB entries dropped (new generations).
    private func forgetMapping() {
        statistics.mappingsForgotten &+= 1
        savedViews.removeAll()
        clearJumpCache()
        flushHostTLB()
        nonGlobal.reset()
    }

    /// Moves from `old` to `new`, another address space with the same global pages: drops the
    /// entries the log names (every view's entries for pages that are not global, made since
    /// the last change of address space), so what is left, in every view, is for global pages
    /// and holds in the new address space too; the saved views are carried over to it.
    private func keepGlobalEntries(from old: X86CodeView, to new: X86CodeView) {
        for slot in nonGlobal.jumpSlots {
            tables[BTContext.jumpTags, BTContext.jumpWord(slot)] = BTContext.emptyTag
            tables[BTContext.jumpVictimTags, BTContext.jumpWord(slot)] = BTContext.emptyTag
            noBlock[slot] = BTContext.emptyTag
        }
        for slot in nonGlobal.tlbSlots {
            tables[BTContext.tlbReadTags, BTContext.tlbWord(slot)] = BTContext.emptyStoredPageTag
            tables[BTContext.tlbWriteTags, BTContext.tlbWord(slot)] = BTContext.emptyStoredPageTag
        }
        nonGlobal.reset()
        func carried(_ v: X86CodeView) -> X86CodeView {
            var v = v
            v.addressSpaceEpoch = new.addressSpaceEpoch
            v.tlbGeneration = new.tlbGeneration
            return v
        }
        for i in savedViews.indices { savedViews[i].view = carried(savedViews[i].view) }
        let oldCarried = carried(old)
        if oldCarried != new { switchView(from: oldCarried, to: new) }
        statistics.globalEntriesKept &+= 1
    }

    /// The slots of the jump cache (and no-block table) and host TLB filled for pages that are not
    /// global since the address space last changed: what a CR3 write must drop. Past `limit`
    /// slots, the next change of address space drops everything instead.
    struct NonGlobalLog {
        static let limit = 4096
        var jumpSlots: [Int] = []
        var tlbSlots: [Int] = []
        var overflowed = false

        init() {
            jumpSlots.reserveCapacity(Self.limit)
            tlbSlots.reserveCapacity(Self.limit)
        }

        mutating func noteJump(_ slot: Int) {
            guard !overflowed else { return }
            if jumpSlots.count < Self.limit { jumpSlots.append(slot) } else { overflowed = true }
        }

        mutating func noteTLB(_ slot: Int) {
            guard !overflowed else { return }
            if tlbSlots.count < Self.limit { tlbSlots.append(slot) } else { overflowed = true }
        }

        mutating func reset() {
            jumpSlots.removeAll(keepingCapacity: true)
            tlbSlots.removeAll(keepingCapacity: true)
            overflowed = false
        }
    }

    @exclusivity(unchecked) private var nonGlobal = NonGlobalLog()

    /// Records in the host TLB that linear page `access.linear >> 12` may be read (and written,
    /// with `write` or when the access found the page writable and dirty) at the current CPL at host address `access.host`'s page; `generation` is
    /// the context's (bits 63:52).
    @discardableResult
    static func fillTLB(_ tables: BTTables, _ access: TranslatedAccess, write: Bool, stores: Bool,
                        generation: UInt64) -> Int {
        let page = access.linear >> 12
        let stored = 0 &- (page &+ generation)
        let i = BTContext.tlbSlot(page)
        if tables[BTContext.tlbReadTags, BTContext.tlbWord(i)] != stored && tables[BTContext.tlbWriteTags, BTContext.tlbWord(i)] != stored {
            tables[BTContext.tlbReadTags, BTContext.tlbWord(i)] = BTContext.emptyStoredPageTag
            tables[BTContext.tlbWriteTags, BTContext.tlbWord(i)] = BTContext.emptyStoredPageTag
        }
        tables[BTContext.tlbReadTags, BTContext.tlbWord(i)] = stored
        // Never a write tag for a page holding code: each store there must be checked against
        // the code's chunks (the callout), not go straight to the page.
        if (write || access.writable) && stores && !access.onCodePage { tables[BTContext.tlbWriteTags, BTContext.tlbWord(i)] = stored }
        tables[BTContext.tlbAddends, BTContext.tlbWord(i)] = UInt64(UInt(bitPattern: access.host)) &- access.linear
        tables[BTContext.tlbPhysicalPages, BTContext.tlbWord(i)] = access.physical >> 12
        return i
    }

    /// enter(context, block): saves the callee-saved registers translated code uses, points R15
    /// into the context (`X86Emitter.contextBias`), pushes two bottom host-stack frames (return-address slots no RET
    /// matches: a RET reads the top two frames), notes RSP, and jumps to the block.
    static func enterTrampoline() -> [UInt8]? {
        var e = X86Emitter()
        e.push(.rbx); e.push(.rbp); e.push(.r12); e.push(.r13); e.push(.r14); e.push(.r15)
        e.adjustStack(-8)  // calls from translated code see a 16-byte-aligned RSP
        e.leaOffset(.r15, .rdi, X86Emitter.contextBias)
        e.moveImmediate(.rax, BTContext.bottomFrameTag)
        e.push(.rax); e.push(.rax); e.push(.rax); e.push(.rax)  // 32 bytes: still aligned
        e.store(.rsp, disp: BTContext.hostStackBase, size: 8)
        e.load(.r14, disp: BTContext.budget)
        e.jump(.rsi)
        return e.finished()
    }

    /// The shared slow path of translated loads (`store` false) and stores, called from a block
    /// whose host TLB probe missed, with the offset in R12, the callout's info in EDX and (a
    /// store) the value in RBX. It saves the guest's flags in `flagsBefore` (a refusal stops the
    /// block with them) and the caller-saved registers that may cache guest registers, calls
    /// the Swift callout, restores both, and returns RCX = 0 when the access was made (a load's
    /// value in RAX), non-zero when the machine refused it. Cached guest registers are not
    /// written back: the callouts do not read them, and a refusal's stop does it.
    /// With `keepingFlags`, the caller is in a region where the guest's flags are dead and saved
    /// elsewhere (`BTContext.flagsInRegion`): the stub neither saves nor restores the host's.
    static func accessStub(store: Bool, keepingFlags: Bool = false) -> [UInt8]? {
        var e = X86Emitter()
        if !keepingFlags { e.pushFlags(); e.popContext(disp: BTContext.flagsBefore) }
        let saved: [HostRegister] = [.r8, .r9, .r10, .r11]
        for (i, r) in saved.enumerated() { e.store(r, disp: BTContext.stubSaves + 8 * Int32(i), size: 8) }
        e.adjustStack(-8)  // the call to the stub left RSP 8 below a 16-byte boundary
        e.leaOffset(.rdi, .r15, -X86Emitter.contextBias)  // the context block
        e.move(.rsi, .r12)
        if store { e.move(.rcx, .rbx) }
        e.callThroughContext(disp: store ? BTContext.storeCallout : BTContext.loadCallout)
        e.adjustStack(8)
        for (i, r) in saved.enumerated() { e.load(r, disp: BTContext.stubSaves + 8 * Int32(i)) }
        if store {
            e.leaOffset(.rcx, .rax, -1)  // 1 (stored) -> 0
        } else {
            e.load(.rcx, disp: BTContext.status)
        }
        if !keepingFlags { e.pushContext(disp: BTContext.flagsBefore); e.popFlags() }
        e.ret()
        return e.finished()
    }

    /// Where a block's end goes when the jump cache missed (or the budget ran out), with the next
    /// RIP in the context and the guest's flags in `hostFlags`: asks Swift for the block
    /// (`lookupForChain`) and jumps to its body, or returns to Swift through the exit
    /// trampoline. A miss then costs a call, not a return to the step loop and a new entry.
    static func missStub() -> [UInt8]? {
        var e = X86Emitter()
        let exit = e.makeLabel()
        e.leaOffset(.rdi, .r15, -X86Emitter.contextBias)  // the context block
        e.load(.rsi, disp: BTContext.rip)
        e.move(.rdx, .r14)
        e.callThroughContext(disp: BTContext.lookupCallout)  // RSP is 16-byte aligned in translated code
        e.move(.rcx, .rax)
        e.jrcxz(exit)
        e.pushContext(disp: BTContext.hostFlags); e.popFlags()
        e.jump(.rcx)
        e.bind(exit)
        e.jumpThroughContext(disp: BTContext.exitAddress)
        return e.finished()
    }

    /// The body of the block for `rip` in the current (64-bit) view, translated now if need
    /// be, remembered in the jump cache; nil when Swift must decide (another mode, no block,
    /// a fault at the fetch). Called from translated code, between blocks.
    func lookupForChain(_ rip: UInt64, machine: X86Machine) -> UnsafeRawPointer? {
        guard let v = view, v.mode == .bits64, BlockTranslator.isCanonical(rip) else { return nil }
        let slot = BTContext.jumpSlot(rip)
        // The jump cache first: translated code asks only when it missed, but the SYSCALL and
        // SYSRET callout asks at every change of level, and mostly finds the block there.
        if let body = jumpCacheBody(rip) { return UnsafeRawPointer(bitPattern: UInt(body)) }
        if noBlock[slot] == rip &+ jumpGeneration { return nil }
        guard let physical = try? machine.translate(rip, .execute) else { return nil }
        var global = machine.isGlobalPage(rip)
        let key = BlockKey(physical: physical, rip: rip, mode: .bits64)
        let frames = hostFrameEpoch
        let block = self.block(for: key, machine: machine)
        guard hostFrameEpoch == frames else { return nil }
        guard let entry = block.entry else {
            noBlock[slot] = rip &+ jumpGeneration
            nonGlobal.noteJump(slot)
            return nil
        }
        if let c = block.crossing { global = global && machine.isGlobalPage(c.linear) }
        remember(rip: rip, entry: entry, global: global)
        statistics.chainLookups &+= 1
        return entry + BlockTranslator.bodyOffset
    }

    /// exit: returns the instructions retired (the budget minus what R14 has left) to enter's
    /// caller.
    static func exitTrampoline() -> [UInt8]? {
        var e = X86Emitter()
        e.store(.r14, disp: BTContext.budgetLeft, size: 8)
        e.load(.rax, disp: BTContext.budget)
        e.alu(5, .rax, .r14, size: 8)  // SUB rax, r14
        // The frames translated CALLs left (the guest's calls not returned from yet) and the
        // bottom frames dropped at once.
        e.load(.rsp, disp: BTContext.hostStackBase)
        e.adjustStack(32 + 8)
        e.pop(.r15); e.pop(.r14); e.pop(.r13); e.pop(.r12); e.pop(.rbp); e.pop(.rbx)
        e.ret()
        return e.finished()
    }

    /// Bumped when the host-stack frames translated CALLs push may no longer be returned
    /// through (`BlockTranslator.callExit`): the code cache was emptied (their return addresses
    /// are in dropped code) or the jump cache generations started over (a frame's generation
    /// may now be another view's). A callout that sees it change returns to Swift, whose exit
    /// drops the frames.
    @exclusivity(unchecked) private var hostFrameEpoch: UInt64 = 0

    /// Empties the jump cache and the no-block table: a new generation, and a real clear only
    /// when the generations run out.
    private func clearJumpCache() {
        lastJumpGeneration += 1
        if lastJumpGeneration > BTContext.maximumJumpGeneration {
            hostFrameEpoch &+= 1
            lastJumpGeneration = 1
            for i in 0..<BTContext.jumpCacheEntries {
                for field in [BTContext.jumpTags, BTContext.jumpBodies, BTContext.jumpVictimTags, BTContext.jumpVictimBodies] {
                    tables[field, BTContext.jumpWord(i)] = BTContext.emptyTag
                }
                noBlock[i] = BTContext.emptyTag
            }
            savedViews.removeAll()
        }
        jumpGeneration = lastJumpGeneration << 48
        context.storeBytes(of: jumpGeneration, toByteOffset: Int(BTContext.jumpGeneration), as: UInt64.self)
    }

    /// True when the jump cache holds a block for `rip` in the current view (tests).
    func jumpCacheHolds(_ rip: UInt64) -> Bool { jumpCacheBody(rip) != nil }

    /// The body address (`remember`) of the block the jump cache holds for `rip` in the
    /// current view, if it holds one.
    @inline(__always)
    private func jumpCacheBody(_ rip: UInt64) -> UInt64? {
        let word = BTContext.jumpWord(BTContext.jumpSlot(rip))
        let stored = 0 &- (rip &+ jumpGeneration)
        if tables[BTContext.jumpTags, word] == stored { return tables[BTContext.jumpBodies, word] }
        if tables[BTContext.jumpVictimTags, word] == stored { return tables[BTContext.jumpVictimBodies, word] }
        return nil
    }

    /// Enters `rip`'s block in its slot's first way, the entry there moving to the victim way
    /// (called only when neither way holds `rip`).
    private func remember(rip: UInt64, entry: UnsafeRawPointer, global: Bool) {
        let i = BTContext.jumpSlot(rip)
        let word = BTContext.jumpWord(i)
        // A non-global entry's slot is in the log whichever way it moves to: dropping a logged
        // slot empties both ways.
        if !global { nonGlobal.noteJump(i) }
        tables[BTContext.jumpVictimTags, word] = tables[BTContext.jumpTags, word]
        tables[BTContext.jumpVictimBodies, word] = tables[BTContext.jumpBodies, word]
        tables[BTContext.jumpTags, word] = 0 &- (rip &+ jumpGeneration)
        tables[BTContext.jumpBodies, word] = UInt64(UInt(bitPattern: entry)) &+ UInt64(BlockTranslator.bodyOffset)
    }

    // MARK: X86BlockExecutor

    public func executeBlock(on machine: X86Machine) -> Int {
        let (now, rip) = machine.codeView
        let mode = now.mode
        let linear: UInt64
        if mode == .bits64 {
            guard BlockTranslator.isCanonical(rip) else { return 0 }
            linear = rip
        } else {
            // Translated branches mask RIP to the mode's width and never check CS's limit:
            // only a code segment that reaches as far as RIP can is run translated.
            guard UInt64(now.csLimit) >= BlockTranslator.instructionPointerMask(mode),
                  let l = try? machine.linearAddress(segment: UInt8(X86CPU.cs), offset: rip, size: 1) else { return 0 }
            linear = l
        }
        if now != view { moveToView(now) }
        if !fastPathsDecided {
            // Decided on the first run, when the machine is known: inline stores only when no
            // other vCPU needs to hear of each store.
            fast.stores = fast.loads && !machine.tracksCrossModifyingCode
            context.storeBytes(of: fast.stores ? 1 : 0, toByteOffset: Int(BTContext.inlineStores), as: UInt64.self)
            fastPathsDecided = true
        }
        // The jump cache answers for the current view without hashing: a block for this RIP,
        // or (the no-block table) none.
        let slot = BTContext.jumpSlot(rip)
        let tag = rip &+ jumpGeneration
        if let body = jumpCacheBody(rip),
           let entry = UnsafeRawPointer(bitPattern: UInt(body &- UInt64(BlockTranslator.bodyOffset))) {
            return run(entry, machine: machine)
        }
        if noBlock[slot] == tag { return 0 }
        guard let physical = try? machine.translate(linear, .execute) else { return 0 }
        var global = machine.isGlobalPage(linear)
        let key = BlockKey(physical: physical, rip: rip, mode: mode)
        let block = self.block(for: key, machine: machine)
        guard let entry = block.entry else {
            noBlock[slot] = tag
            nonGlobal.noteJump(slot)
            return 0
        }
        if let c = block.crossing {
            // Made for the next page's mapping now (`block(for:)`): kept across a CR3 write
            // only if that page is global too.
            global = global && machine.isGlobalPage(c.linear)
        }
        remember(rip: rip, entry: entry, global: global)
        return run(entry, machine: machine)
    }

    public func codePageAdded(physicalPage page: UInt64) {
        // Stores to it must now go through the machine: drop the write tags that lead there.
        for i in 0..<BTContext.hostTLBEntries where tables[BTContext.tlbPhysicalPages, BTContext.tlbWord(i)] == page {
            tables[BTContext.tlbWriteTags, BTContext.tlbWord(i)] = BTContext.emptyStoredPageTag
        }
    }

    public func codeInvalidated(physicalPage page: UInt64?) {
        // Other views' jump cache entries may name dropped blocks too.
        savedViews.removeAll()
        clearJumpCache()
        guard let page else {
            statistics.blocksInvalidated &+= UInt64(blocks.count)
            blocks.removeAll(keepingCapacity: true)
            pageKeys.removeAll(keepingCapacity: true)
            pendingLinks.removeAll()
            return
        }
        pendingLinks.removeValue(forKey: page)
        guard let keys = pageKeys.removeValue(forKey: page) else { return }
        for key in keys where blocks.removeValue(forKey: key) != nil {
            statistics.blocksInvalidated &+= 1
        }
    }

    // MARK: Running

    private func run(_ entry: UnsafeRawPointer, machine: X86Machine) -> Int {
        // SAFETY: the context block has room for 16 registers at offset 0 (BTContext).
        let registers = context.assumingMemoryBound(to: UInt64.self)
        let (rip, flags) = machine.exportRegisters(to: registers)
        context.storeBytes(of: rip, toByteOffset: Int(BTContext.rip), as: UInt64.self)
        // The whole guest RFLAGS for callouts that read its other bits (DF), and the host
        // RFLAGS image translated code loads: the guest's status flags and bit 1 (the host keeps
        // its own IF; TF, DF and AC stay clear on the host).
        context.storeBytes(of: flags, toByteOffset: Int(BTContext.rflags), as: UInt64.self)
        context.storeBytes(of: (flags & UInt64(BTContext.statusFlags)) | 2, toByteOffset: Int(BTContext.hostFlags), as: UInt64.self)
        // The entry's budget: what the step loop may still run, at most `instructionsPerEntry`.
        let allowed = UInt64(clamping: max(1, machine.budgetLeft))
        context.storeBytes(of: min(Self.instructionsPerEntry, allowed), toByteOffset: Int(BTContext.budget), as: UInt64.self)
        context.storeBytes(of: Unmanaged.passUnretained(machine).toOpaque(), toByteOffset: Int(BTContext.machine),
                           as: UnsafeMutableRawPointer.self)
        // SAFETY: the context has room for six selectors at `BTContext.selectors` and three
        // bases at `BTContext.segmentBases` (FS, GS, then `kernelGSBase`).
        let cpl = machine.exportSegmentState(to: (context + Int(BTContext.selectors)).assumingMemoryBound(to: UInt64.self),
                                             bases: (context + Int(BTContext.segmentBases)).assumingMemoryBound(to: UInt64.self))
        context.storeBytes(of: UInt64(cpl), toByteOffset: Int(BTContext.cpl), as: UInt64.self)
        context.storeBytes(of: machine.hasInterruptWork ? 1 : 0, toByteOffset: Int(BTContext.interruptPending), as: UInt64.self)
        let gsBase = context.load(fromByteOffset: Int(BTContext.segmentBase(5)), as: UInt64.self)
        let retired = Int(enter(context, entry))
        // Stopped right after a translated STI: its shadow still covers the next instruction.
        let shadowRIP = context.load(fromByteOffset: Int(BTContext.shadowRIP), as: UInt64.self)
        if shadowRIP != 0 {
            if shadowRIP == context.load(fromByteOffset: Int(BTContext.rip), as: UInt64.self) {
                machine.cpu.interruptShadow = true
            }
            context.storeBytes(of: 0, toByteOffset: Int(BTContext.shadowRIP), as: UInt64.self)
        }
        // A translated SWAPGS exchanged the two.
        let gsBaseAfter = context.load(fromByteOffset: Int(BTContext.segmentBase(5)), as: UInt64.self)
        if gsBaseAfter != gsBase {
            machine.importGSBases(gs: gsBaseAfter,
                                  kernelGS: context.load(fromByteOffset: Int(BTContext.kernelGSBase), as: UInt64.self))
        }
        machine.importRegisters(from: registers,
                                rip: context.load(fromByteOffset: Int(BTContext.rip), as: UInt64.self),
                                statusFlags: context.load(fromByteOffset: Int(BTContext.hostFlags), as: UInt64.self),
                                systemFlags: context.load(fromByteOffset: Int(BTContext.rflags), as: UInt64.self))
        takeSensitiveCount(BTContext.pushfCount, .pushf, machine: machine)
        takeSensitiveCount(BTContext.movFromSegmentCount, .movFromSegment, machine: machine)
        statistics.entries &+= 1
        statistics.instructionsRun &+= UInt64(retired)
        statistics.loadCallouts = context.load(fromByteOffset: Int(BTContext.loadCallouts), as: UInt64.self)
        statistics.storeCallouts = context.load(fromByteOffset: Int(BTContext.storeCallouts), as: UInt64.self)
        return retired
    }

    /// Moves a sensitive-instruction counter of translated code to the machine's counts.
    private func takeSensitiveCount(_ slot: Int32, _ kind: SensitiveInstruction, machine: X86Machine) {
        let n = context.load(fromByteOffset: Int(slot), as: UInt64.self)
        guard n != 0 else { return }
        machine.countTranslatedSensitive(kind, times: n)
        context.storeBytes(of: 0, toByteOffset: Int(slot), as: UInt64.self)
    }

    // MARK: Translating

    /// Blocks translated and installed together at most: the one asked for and, breadth-first,
    /// the blocks its linkable exits reach on the same page. Installing code costs two
    /// mprotect calls whatever its size (W^X), which were most of the translation time, and
    /// those blocks usually run soon after.
    static let batchBlocks = 24
    /// Guest instructions in a batch beyond its first block at most: blocks made ahead that
    /// never run are translation time lost (a page of `add [rax], al`, zeros, makes 64-instruction
    /// blocks that a fuzzer's input never reaches).
    static let batchInstructions = 192

    /// The guest instructions of the block at `key` (empty when the first is not covered) and
    /// the RIP after them.
    private func decodeBlock(_ key: BlockKey, machine: X86Machine) -> (instructions: [GuestInstruction], next: UInt64, crossing: Crossing?) {
        let ipMask = BlockTranslator.instructionPointerMask(key.mode)
        var instructions: [GuestInstruction] = []
        var physical = key.physical
        var rip = key.rip
        while instructions.count < BlockTranslator.maximumInstructions {
            guard let insn = machine.decodeForTranslation(physical: physical, mode: key.mode) else {
                // An instruction that crosses into the next page (64-bit code) ends the block:
                // every exit of a block stays on its first page, so nothing after it is linked.
                if key.mode == .bits64, physical & 0xfff > 4096 - 15,
                   let (insn, second) = machine.decodeCrossingForTranslation(linear: rip, physical: physical) {
                    let next = rip &+ UInt64(insn.length)
                    if BlockTranslator.covers(insn, mode: key.mode, next: next) {
                        instructions.append(GuestInstruction(rip: rip, insn: insn))
                        return (instructions, next, Crossing(linear: (rip | 0xfff) &+ 1, physical: second))
                    }
                }
                break
            }
            let length = UInt64(insn.length)
            // The instruction must not wrap the instruction pointer (16- and 32-bit code).
            guard key.mode == .bits64 || rip &+ length - 1 <= ipMask else { break }
            let next = (rip &+ length) & ipMask
            guard BlockTranslator.covers(insn, mode: key.mode, next: next) else { break }
            instructions.append(GuestInstruction(rip: rip, insn: insn))
            if BlockTranslator.endsBlock(insn) {
                // A retpoline thunk's CALL over its speculation trap: its MOV and RET join
                // the block, which the translator makes one indirect jump.
                if instructions.count + 2 <= BlockTranslator.maximumInstructions,
                   let tail = retpolineTail(after: insn, at: rip, physical: physical, key: key, machine: machine) {
                    instructions += tail
                    break
                }
                // A direct JMP within the page is followed (once per target: a jump back into
                // the block ends it), the next instruction decoded at its target.
                guard BlockTranslator.followsJump(insn, at: rip, mode: key.mode, blockStart: key.rip),
                      instructions.count < BlockTranslator.maximumInstructions else { break }
                let target = BlockTranslator.branchTarget(insn, next: next, mode: key.mode)
                guard !instructions.contains(where: { $0.rip == target }) else { break }
                physical = (physical & ~0xfff) | (target & 0xfff)
                rip = target
                continue
            }
            physical &+= length
            rip = next
            if physical & 0xfff == 0 { break }  // the page ends here
        }
        // An STI is never last: the instruction after it must run before an interrupt can be
        // taken (its shadow), and at a block's end the step loop may take one.
        if let last = instructions.last, last.insn.operation == .sti {
            instructions.removeLast()
            rip = last.rip
        }
        return (instructions, rip, nil)
    }

    /// The MOV and RET of a retpoline thunk whose CALL, `insn` at `rip`, was just decoded: both
    /// on the CALL's page, 7 bytes past it (`BlockTranslator.retpolineRegister`); nil for any
    /// other CALL, or without the inline paths the translation of the three needs.
    private func retpolineTail(after insn: DecodedInstruction, at rip: UInt64, physical: UInt64, key: BlockKey,
                               machine: X86Machine) -> [GuestInstruction]? {
        guard fast.loads, key.mode == .bits64, let moveRIP = BlockTranslator.retpolineMoveRIP(insn, at: rip),
              moveRIP >> 12 == rip >> 12 else { return nil }
        let movePhysical = (physical & ~0xfff) | (moveRIP & 0xfff)
        guard let move = machine.decodeForTranslation(physical: movePhysical, mode: .bits64) else { return nil }
        let retRIP = moveRIP &+ UInt64(move.length)
        guard retRIP >> 12 == rip >> 12,
              let ret = machine.decodeForTranslation(physical: movePhysical &+ UInt64(move.length), mode: .bits64),
              BlockTranslator.retpolineTail(move, ret) != nil else { return nil }
        return [GuestInstruction(rip: moveRIP, insn: move), GuestInstruction(rip: retRIP, insn: ret)]
    }

    private func translate(_ key: BlockKey, machine: X86Machine) -> Block {
        let start = MonotonicClock.hostNanoseconds()
        defer { statistics.translationNanoseconds &+= MonotonicClock.hostNanoseconds() &- start }
        // The batch: the block asked for first, then blocks its exits reach (same page, not yet
        // translated), breadth-first.
        var batch: [(key: BlockKey, instructions: Int, block: TranslatedBlock, offset: Int, crossing: Crossing?)] = []
        var queue = [key]
        var queued: Set<BlockKey> = [key]
        var size = 0
        var index = 0
        var ahead = 0
        while index < queue.count && batch.count < Self.batchBlocks && ahead < Self.batchInstructions {
            let k = queue[index]
            index += 1
            let (instructions, next, crossing) = decodeBlock(k, machine: machine)
            if !batch.isEmpty { ahead += instructions.count }
            guard !instructions.isEmpty,
                  let translated = BlockTranslator.translate(instructions, next: next, mode: k.mode,
                                                             callouts: Self.callouts, fast: fast) else { continue }
            let offset = (size + 15) & ~15
            batch.append((k, instructions.count, translated, offset, crossing))
            size = offset + translated.code.count
            for site in translated.chainSites {
                let t = targetKey(site, from: k)
                if blocks[t] == nil && !queued.contains(t) {
                    queue.append(t)
                    queued.insert(t)
                }
            }
        }
        guard let first = batch.first, first.key == key, let base = place(size) else {
            // Nothing to run for the block asked for: the interpreter runs its instruction.
            let none = Block(entry: nil, instructions: 0)
            blocks[key] = none
            pageKeys[key.physical >> 12, default: []].append(key)
            return none
        }
        // Lay the batch out and link what can be linked before anything is installed: exits
        // to blocks of the batch or to blocks that exist.
        var code = [UInt8](repeating: 0xcc, count: size)  // INT3 in the padding
        var entryOf: [BlockKey: UnsafeRawPointer] = [:]
        for b in batch where b.crossing == nil { entryOf[b.key] = base + b.offset }
        var waiting: [(code: UnsafeRawPointer, key: BlockKey, sites: [ChainSite])] = []
        for b in batch {
            let address = base + b.offset
            var bytes = b.block.code
            var unlinked: [ChainSite] = []
            for site in b.block.chainSites {
                let target = targetKey(site, from: b.key)
                if let entry = entryOf[target] ?? blocks[target].flatMap({ $0.crossing == nil ? $0.entry : nil }),
                   let patches = linkPatches(site, of: address, to: entry) {
                    for p in patches {
                        let at = p.address - address
                        for i in 0..<4 { bytes[at + i] = UInt8(truncatingIfNeeded: UInt32(bitPattern: p.rel32) >> (8 * UInt32(i))) }
                    }
                    statistics.links &+= 1
                } else {
                    unlinked.append(site)
                }
            }
            code.replaceSubrange(b.offset..<(b.offset + bytes.count), with: bytes)
            waiting.append((address, b.key, unlinked))
        }
        // Exits of installed blocks that wait for blocks of this batch: linked in the same window.
        var patches: [(address: UnsafeRawPointer, rel32: Int32)] = []
        for b in batch where b.crossing == nil {
            guard let waiting = pendingLinks[b.key.physical >> 12]?.removeValue(forKey: b.key) else { continue }
            for w in waiting {
                if let p = linkPatches(w.site, of: w.code, to: base + b.offset) { patches += p }
            }
        }
        guard let installed = cache.install(code, patches: patches), installed == base else {
            let none = Block(entry: nil, instructions: 0)
            blocks[key] = none
            pageKeys[key.physical >> 12, default: []].append(key)
            return none
        }
        statistics.codeBytes = UInt64(cache.used)
        for b in batch {
            blocks[b.key] = Block(entry: base + b.offset, instructions: b.instructions, crossing: b.crossing)
            pageKeys[b.key.physical >> 12, default: []].append(b.key)
            // A store to the next page's part of its last instruction drops it too.
            if let c = b.crossing {
                pageKeys[c.physical >> 12, default: []].append(b.key)
                statistics.crossingBlocks &+= 1
            }
            if b.block.endsInRetpoline { statistics.retpolineBlocks &+= 1 }
            statistics.blocksTranslated &+= 1
            statistics.instructionsTranslated &+= UInt64(b.instructions)
        }
        statistics.links &+= UInt64(patches.count)
        if PerfMap.descriptor != nil {
            PerfMap.record(batch.map { (base + $0.offset, $0.block.code.count, $0.key.rip) })
        }
        // This batch's exits to blocks not made yet wait for them.
        for w in waiting {
            let page = w.key.physical >> 12
            for site in w.sites {
                pendingLinks[page, default: [:]][targetKey(site, from: w.key), default: []].append((w.code, site))
            }
        }
        return Block(entry: base, instructions: first.instructions, crossing: first.crossing)
    }

    /// The block at `key`, made now if there is none, or if its last instruction crosses into
    /// a page that no longer maps where it did.
    private func block(for key: BlockKey, machine: X86Machine) -> Block {
        if let b = blocks[key] {
            guard let c = b.crossing, !c.holds(machine) else { return b }
            blocks[key] = nil
        }
        return translate(key, machine: machine)
    }

    // MARK: Linking

    /// Exits of installed blocks waiting for the block at their target, by page and target.
    @exclusivity(unchecked) private var pendingLinks: [UInt64: [BlockKey: [(code: UnsafeRawPointer, site: ChainSite)]]] = [:]

    /// The key of the block a chain site jumps to (same page, same mode).
    private func targetKey(_ site: ChainSite, from key: BlockKey) -> BlockKey {
        BlockKey(physical: (key.physical & ~0xfff) | (site.target & 0xfff), rip: site.target, mode: key.mode)
    }

    /// The rel32 rewrite that links one exit: its jump to `target`'s body. Nil if the distance
    /// does not fit.
    private func linkPatches(_ site: ChainSite, of code: UnsafeRawPointer,
                             to target: UnsafeRawPointer) -> [(address: UnsafeRawPointer, rel32: Int32)]? {
        let fastJump = code + site.fastJump
        let body = target + BlockTranslator.bodyOffset
        guard let rel = Int32(exactly: body - (fastJump + 4)) else { return nil }
        return [(fastJump, rel)]
    }

    /// Where `count` bytes of code will be installed, emptying the cache (and dropping every
    /// block) first when they do not fit.
    private func place(_ count: Int) -> UnsafeRawPointer? {
        if let address = cache.nextAddress(for: count) { return address }
        codeInvalidated(physicalPage: nil)
        cache.reset()
        hostFrameEpoch &+= 1
        statistics.cacheResets &+= 1
        return cache.nextAddress(for: count)
    }

    // MARK: Callouts

    /// The callouts' addresses, once.
    static let callouts: BTCallouts = {
        let load: @convention(c) (UnsafeMutableRawPointer, UInt64, UInt64) -> UInt64 = { context, offset, info in
            withMachine(context) { machine in
                let size = Int((info >> 8) & 0xff)
                let forWrite = info & (1 << 16) != 0
                count(context, BTContext.loadCallouts)
                guard let access = machine.accessForTranslation(segment: UInt8(truncatingIfNeeded: info), offset: offset,
                                                                size: size, write: forWrite) else {
                    context.storeBytes(of: 1, toByteOffset: Int(BTContext.status), as: UInt64.self)
                    return 0
                }
                context.storeBytes(of: 0, toByteOffset: Int(BTContext.status), as: UInt64.self)
                fill(context, access, write: forWrite)
                // SAFETY: `access.host` addresses `size` bytes of guest RAM (accessForTranslation).
                let p = access.host
                switch size {
                case 1: return UInt64(p.load(as: UInt8.self))
                case 2: return UInt64(p.loadUnaligned(as: UInt16.self))
                case 4: return UInt64(p.loadUnaligned(as: UInt32.self))
                default: return p.loadUnaligned(as: UInt64.self)
                }
            }
        }
        let store: @convention(c) (UnsafeMutableRawPointer, UInt64, UInt64, UInt64) -> UInt64 = { context, offset, info, value in
            withMachine(context) { machine in
                let size = Int((info >> 8) & 0xff)
                count(context, BTContext.storeCallouts)
                guard let access = machine.accessForTranslation(segment: UInt8(truncatingIfNeeded: info), offset: offset,
                                                                size: size, write: true) else { return 0 }
                // SAFETY: as for `load`.
                let p = access.host
                switch size {
                case 1: p.storeBytes(of: UInt8(truncatingIfNeeded: value), as: UInt8.self)
                case 2: p.storeBytes(of: UInt16(truncatingIfNeeded: value), toByteOffset: 0, as: UInt16.self)
                case 4: p.storeBytes(of: UInt32(truncatingIfNeeded: value), toByteOffset: 0, as: UInt32.self)
                default: p.storeBytes(of: value, toByteOffset: 0, as: UInt64.self)
                }
                machine.noteTranslatedStore(physical: access.physical, size: size)
                fill(context, access, write: true)
                return 1
            }
        }
        let string: @convention(c) (UnsafeMutableRawPointer, UInt64) -> UInt64 = { context, info in
            withMachine(context) { machine in
                repeatString(machine, context, movs: info & 1 != 0, size: Int((info >> 8) & 0xff),
                             sourceSegment: UInt8(truncatingIfNeeded: info >> 16)).rawValue
            }
        }
        let lookup: @convention(c) (UnsafeMutableRawPointer, UInt64, UInt64) -> UInt64 = { context, rip, budgetLeft in
            // A spent budget goes back to Swift (R14 below zero).
            guard Int64(bitPattern: budgetLeft) >= 0 else { return 0 }
            return withExecutor(context) { executor in
                withMachine(context) { machine in
                    executor.lookupForChain(rip, machine: machine).map { UInt64(UInt(bitPattern: $0)) } ?? 0
                }
            }
        }
        let timeStamp: @convention(c) (UnsafeMutableRawPointer, UInt64) -> UInt64 = { context, rdtscp in
            withMachine(context) { machine in
                guard let read = machine.timeStampForTranslation() else { return 0 }
                // SAFETY: the context holds the 16 guest registers at offset 0 (spilled before the call).
                let registers = context.assumingMemoryBound(to: UInt64.self)
                registers[0] = read.counter & 0xffff_ffff
                registers[2] = read.counter >> 32
                if rdtscp != 0 { registers[1] = read.aux & 0xffff_ffff }
                return 1
            }
        }
        let systemCall: @convention(c) (UnsafeMutableRawPointer, UInt64, UInt64, UInt64) -> UInt64 = { context, sysret, next, budgetLeft in
            withExecutor(context) { executor in
                withMachine(context) { machine in
                    executor.systemCall(sysret: sysret != 0, next: next, budgetLeft: budgetLeft, machine: machine)
                }
            }
        }
        var callouts = BTCallouts(load: UInt64(UInt(bitPattern: unsafeBitCast(load, to: UnsafeRawPointer.self))),
                          store: UInt64(UInt(bitPattern: unsafeBitCast(store, to: UnsafeRawPointer.self))),
                          string: UInt64(UInt(bitPattern: unsafeBitCast(string, to: UnsafeRawPointer.self))),
                          lookup: UInt64(UInt(bitPattern: unsafeBitCast(lookup, to: UnsafeRawPointer.self))))
        callouts.timeStamp = UInt64(UInt(bitPattern: unsafeBitCast(timeStamp, to: UnsafeRawPointer.self)))
        callouts.systemCall = UInt64(UInt(bitPattern: unsafeBitCast(systemCall, to: UnsafeRawPointer.self)))
        return callouts
    }()

    /// What a translated SYSCALL or SYSRET callout answers (other values: the body of the next
    /// block to jump to).
    enum SystemCallOutcome: UInt64 {
        /// Nothing changed: the block stops before the instruction and the interpreter runs it.
        case refused = 0
        /// Done; back to Swift with RIP and RFLAGS in the context (an interrupt may be taken, a
        /// debug trap is armed, the budget is spent, the host-stack frames are stale, or the new
        /// RIP has no block).
        case done = 1
    }

    /// A translated SYSCALL (`sysret` false; `next` is the address after it) or SYSRET (64-bit)
    /// in 64-bit code, called with the guest's registers and flags in the context (spilled
    /// before the call): the machine makes the change of CS, SS, CPL and RFLAGS, the context
    /// takes the new registers, RIP and flags, the jump cache and host TLB move to the new
    /// CPL's view, and the block for the new RIP is looked up, as a jump cache miss is. What a
    /// system call costs then is a call, where it was an exit from translated code, the
    /// interpreter's step and a new entry, twice (about 0.6 M of each million instructions the
    /// interpreter ran during a TCP transfer).
    func systemCall(sysret: Bool, next: UInt64, budgetLeft: UInt64, machine: X86Machine) -> UInt64 {
        // SAFETY: the context holds the 16 guest registers at offset 0.
        let registers = context.assumingMemoryBound(to: UInt64.self)
        let frames = hostFrameEpoch
        let status = UInt64(BTContext.statusFlags)
        let rip: UInt64, newFlags: UInt64
        if sysret {
            guard let done = machine.systemReturnForTranslation(rcx: registers[1], r11: registers[11]) else {
                return SystemCallOutcome.refused.rawValue
            }
            (rip, newFlags) = (done.rip, done.rflags)
        } else {
            let rflags = (context.load(fromByteOffset: Int(BTContext.hostFlags), as: UInt64.self) & status)
                | (context.load(fromByteOffset: Int(BTContext.rflags), as: UInt64.self) & ~status)
            guard let done = machine.systemCallForTranslation(rflags: rflags, next: next) else {
                return SystemCallOutcome.refused.rawValue
            }
            registers[1] = next
            registers[11] = done.r11
            (rip, newFlags) = (done.rip, done.rflags)
        }
        statistics.systemCalls &+= 1
        context.storeBytes(of: rip, toByteOffset: Int(BTContext.rip), as: UInt64.self)
        context.storeBytes(of: newFlags, toByteOffset: Int(BTContext.rflags), as: UInt64.self)
        context.storeBytes(of: (newFlags & status) | 2, toByteOffset: Int(BTContext.hostFlags), as: UInt64.self)
        let selectors = machine.codeAndStackSelectors
        context.storeBytes(of: UInt64(selectors.cs), toByteOffset: Int(BTContext.selectors) + 8 * X86CPU.cs, as: UInt64.self)
        context.storeBytes(of: UInt64(selectors.ss), toByteOffset: Int(BTContext.selectors) + 8 * X86CPU.ss, as: UInt64.self)
        context.storeBytes(of: UInt64(selectors.cpl), toByteOffset: Int(BTContext.cpl), as: UInt64.self)
        // The new CPL's view of the same mapping: its jump cache and host TLB.
        let now = machine.codeView.view
        if now != view { moveToView(now) }
        // The step loop's turn: an interrupt that SYSRET's IF lets in, single-stepping, a spent
        // budget, host-stack frames that may not be returned through any more.
        let interruptible = newFlags & 0x200 != 0 && machine.hasInterruptWork
        if interruptible || newFlags & 0x100 != 0 || Int64(bitPattern: budgetLeft) < 0 || hostFrameEpoch != frames {
            return SystemCallOutcome.done.rawValue
        }
        return lookupForChain(rip, machine: machine).map { UInt64(UInt(bitPattern: $0)) } ?? SystemCallOutcome.done.rawValue
    }

    /// REP STOS / REP MOVS (64-bit addresses, either direction) in runs that stay inside a page
    /// on each side, each checked as the interpreter's accesses are; RCX, RSI and RDI in the
    /// context are updated after every run.
    /// What a REP STOS/MOVS callout did.
    enum StringRun: UInt64 {
        /// Nothing more it could do (an element across pages, a fault, MMIO, code): the
        /// interpreter goes on from the registers as they are.
        case refused = 0
        /// RCX reached 0: the instruction retired.
        case done = 1
        /// The per-call bound was reached with iterations left: run it again.
        case more = 2
    }

    static func repeatString(_ machine: X86Machine, _ context: UnsafeMutableRawPointer, movs: Bool, size: Int,
                             sourceSegment: UInt8) -> StringRun {
        let flags = context.load(fromByteOffset: Int(BTContext.rflags), as: UInt64.self)
        guard size == 1 || size == 2 || size == 4 || size == 8 else { return .refused }
        let down = flags & 0x400 != 0  // DF: addresses go down
        // SAFETY: the context holds the 16 guest registers at offset 0 (spilled before the call).
        let registers = context.assumingMemoryBound(to: UInt64.self)
        var count = registers[1], source = registers[6], destination = registers[7]
        let value = registers[0]
        /// Elements of a run from `address` that stay in its page (0 when the first element
        /// crosses into the next page).
        func room(_ address: UInt64) -> UInt64 {
            let offset = Int(address & 0xfff)
            guard offset + size <= 4096 else { return 0 }
            return UInt64(down ? offset / size + 1 : (4096 - offset) / size)
        }
        // At most this much per call, so a count near 2^64 over memory that never runs out (a
        // page mapped everywhere) still comes back to the step loop's stop and budget checks:
        // the block stops before the instruction and the next entry goes on with it.
        var budget = Self.stringBytesPerCall
        while count > 0 && budget > 0 {
            var elements = room(destination)
            if movs { elements = min(elements, room(source)) }
            elements = min(elements, count)
            guard elements > 0 else { return .refused }
            let bytes = Int(elements) * size
            // The run's lowest address on each side.
            let span = UInt64(bytes - size)
            let toLow = down ? destination &- span : destination
            let fromLow = down ? source &- span : source
            guard let to = machine.accessForTranslation(segment: 0, offset: toLow, size: bytes, write: true) else { return .refused }
            if movs {
                guard let from = machine.accessForTranslation(segment: sourceSegment, offset: fromLow, size: bytes, write: false) else {
                    return .refused
                }
                // SAFETY: `from` and `to` each address `bytes` bytes of guest RAM (accessForTranslation).
                let distance = UInt(bitPattern: to.host) &- UInt(bitPattern: from.host)
                let backward = UInt(bitPattern: from.host) &- UInt(bitPattern: to.host)
                if !down && distance > 0 && distance < UInt(bytes) {
                    // The destination starts inside the source, copying up: element by element
                    // as the instruction does (a repeating pattern, not memmove's result).
                    for i in stride(from: 0, to: bytes, by: size) {
                        (to.host + i).copyMemory(from: from.host + i, byteCount: size)
                    }
                } else if down && backward > 0 && backward < UInt(bytes) {
                    // The same copying down with the source above the destination.
                    for i in stride(from: bytes - size, through: 0, by: -size) {
                        (to.host + i).copyMemory(from: from.host + i, byteCount: size)
                    }
                } else {
                    to.host.copyMemory(from: from.host, byteCount: bytes)  // memmove
                }
            } else {
                // SAFETY: as above, for `to`.
                let mask: UInt64 = size == 8 ? ~0 : (1 << (8 * UInt64(size))) - 1
                let byte = UInt8(truncatingIfNeeded: value)
                if value & mask == UInt64(byte) &* 0x0101_0101_0101_0101 & mask {
                    // Every byte the same (zeroing, most often: clear_page, memset): one
                    // memset. An element loop was most of this callout's time (perf).
                    to.host.initializeMemory(as: UInt8.self, repeating: byte, count: bytes)
                } else {
                    switch size {
                    case 2: for i in stride(from: 0, to: bytes, by: 2) { (to.host + i).storeBytes(of: UInt16(truncatingIfNeeded: value), as: UInt16.self) }
                    case 4: for i in stride(from: 0, to: bytes, by: 4) { (to.host + i).storeBytes(of: UInt32(truncatingIfNeeded: value), as: UInt32.self) }
                    default: for i in stride(from: 0, to: bytes, by: 8) { (to.host + i).storeBytes(of: value, as: UInt64.self) }
                    }
                }
            }
            machine.noteTranslatedStore(physical: to.physical, size: bytes)
            count -= elements
            destination = down ? destination &- UInt64(bytes) : destination &+ UInt64(bytes)
            if movs { source = down ? source &- UInt64(bytes) : source &+ UInt64(bytes) }
            registers[1] = count
            registers[7] = destination
            if movs { registers[6] = source }
            budget -= bytes
        }
        return count == 0 ? .done : .more
    }

    /// Bytes one REP STOS/MOVS callout moves at most.
    static let stringBytesPerCall = 1 << 20

    private static func count(_ context: UnsafeMutableRawPointer, _ slot: Int32) {
        let n = context.load(fromByteOffset: Int(slot), as: UInt64.self)
        context.storeBytes(of: n &+ 1, toByteOffset: Int(slot), as: UInt64.self)
    }

    /// A callout's access into the context's host TLB (64-bit code only: elsewhere the linear
    /// address is not the offset the inline probe compares).
    private static func fill(_ context: UnsafeMutableRawPointer, _ access: TranslatedAccess, write: Bool) {
        let stores = context.load(fromByteOffset: Int(BTContext.inlineStores), as: UInt64.self) != 0
        let generation = context.load(fromByteOffset: Int(BTContext.tlbGeneration), as: UInt64.self)
        let slot = fillTLB(BTTables(context), access, write: write, stores: stores, generation: generation)
        if !access.global {
            withExecutor(context) { $0.nonGlobal.noteTLB(slot) }
        }
    }

    /// `body` on the machine whose code the context's block runs, not retained: a callout's
    /// retain and release were a few percent of a network transfer's time (perf).
    @inline(__always)
    private static func withMachine<R>(_ context: UnsafeMutableRawPointer, _ body: (X86Machine) -> R) -> R {
        // SAFETY: `context` is a BTExecutor's context block, whose machine slot `run` set to the
        // X86Machine running the block, alive (and so guaranteed) while it runs it.
        Unmanaged<X86Machine>.fromOpaque(context.load(fromByteOffset: Int(BTContext.machine), as: UnsafeRawPointer.self))
            ._withUnsafeGuaranteedRef(body)
    }

    /// `body` on the executor owning the context, not retained.
    @inline(__always)
    private static func withExecutor<R>(_ context: UnsafeMutableRawPointer, _ body: (BTExecutor) -> R) -> R {
        // SAFETY: the executor slot holds the executor owning this context (set at creation),
        // alive while its code runs.
        Unmanaged<BTExecutor>.fromOpaque(context.load(fromByteOffset: Int(BTContext.executor), as: UnsafeRawPointer.self))
            ._withUnsafeGuaranteedRef(body)
    }
}

/// The context's tables as arrays of UInt64: `tables[BTContext.jumpTags, BTContext.jumpWord(slot)]`,
/// `tables[BTContext.tlbAddends, BTContext.tlbWord(slot)]`.
struct BTTables {
    // SAFETY: points at a context block of `BTContext.size` bytes, which holds each table at
    // its offset in `BTContext` for `hostTLBEntries` or `jumpCacheEntries` slots; every
    // subscript's slot comes from `tlbSlot`/`jumpSlot` (masked to the table) or a loop below
    // the table's size, which the precondition checks.
    let context: UnsafeMutableRawPointer
    init(_ context: UnsafeMutableRawPointer) { self.context = context }
    subscript(table: Int32, slot: Int) -> UInt64 {
        get {
            precondition(slot >= 0 && Int(table) + 8 * slot + 8 <= BTContext.size)
            return context.load(fromByteOffset: Int(table) + 8 * slot, as: UInt64.self)
        }
        nonmutating set {
            precondition(slot >= 0 && Int(table) + 8 * slot + 8 <= BTContext.size)
            context.storeBytes(of: newValue, toByteOffset: Int(table) + 8 * slot, as: UInt64.self)
        }
    }
}
