// The block of memory translated code works on: the guest's general registers, RIP and
// RFLAGS while a block runs, two slots that keep RFLAGS across calls into Swift, the machine
// the callouts act on, and the callouts' status. R15 holds its address plus `X86Emitter.contextBias`
// inside translated code.

/// Byte offsets in the context block.
enum BTContext {
    /// Guest RAX ... R15 (8 bytes each, encoding order).
    static func register(_ index: UInt8) -> Int32 { Int32(index & 15) * 8 }
    static let rip: Int32 = 128
    /// The guest RFLAGS as the block was entered (callouts read its DF; the status flags live
    /// in `hostFlags` and the host RFLAGS meanwhile).
    static let rflags: Int32 = 136
    /// Guest RFLAGS as of the start of the instruction in progress (saved before its first
    /// callout; what a block leaves in `rflags` when it stops before that instruction).
    static let flagsBefore: Int32 = 144
    /// Guest RFLAGS an instruction produced, kept across its final store's callout.
    static let flagsAfter: Int32 = 152
    /// The guest's status flags as a region where they are dead saved them (LAHF's AH in the
    /// high byte, OF in the low: `BlockTranslator.enterFlagRegion`), for the region's stops.
    static let flagsInRegion: Int32 = 160
    /// 0 when the last load callout succeeded.
    static let status: Int32 = 168
    /// Guest status flags as a host RFLAGS image, across jumps from block to block (each
    /// block starts by loading them into the host's RFLAGS).
    static let hostFlags: Int32 = 176
    /// Guest instructions translated code may retire before it returns to Swift, as set at
    /// entry. R14 counts them down inside translated code (each block's end subtracts its
    /// instructions; the first link back, return site or jump cache lookup that finds it below
    /// zero returns to Swift: forward links do not look, see `BlockTranslator.exit`), and the exit
    /// trampoline leaves R14 here and returns this value minus R14: the instructions retired.
    static let budget: Int32 = 184
    /// R14 as translated code left it (the exit trampoline's copy).
    static let budgetLeft: Int32 = 192
    /// The `pext` masks that give a host TLB slot from a linear address and a jump cache
    /// slot from (RIP + RIP >> 12): constants, read by translated code as memory operands.
    static let tlbIndexMask: Int32 = 200
    static let jumpIndexMask: Int32 = 208
    /// Where translated code goes to return to Swift (the exit trampoline).
    static let exitAddress: Int32 = 216
    /// Non-zero when stores may take the inline path (no other vCPU watches this one's stores).
    static let inlineStores: Int32 = 224
    /// The jump cache's generation in bits 62:48: an entry's tag is RIP plus this, so
    /// emptying the cache is one increment. Tags of canonical or 32-bit RIPs stay distinct (two
    /// canonical RIPs never differ by a multiple of 2^48) and never equal `emptyTag`.
    static let jumpGeneration: Int32 = 232
    /// The host TLB's generation in bits 63:52: a tag is the page number plus this.
    static let tlbGeneration: Int32 = 240
    /// Loads and stores that went through the callouts (the host TLB missed or was not used).
    static let loadCallouts: Int32 = 248
    static let storeCallouts: Int32 = 256
    /// The selectors of ES, CS, SS, DS, FS and GS (8 bytes each) and the CPL, as of entry:
    /// only the interpreter changes them. A translated MOV from a segment register reads the
    /// first; a translated CLI compares the CPL with IOPL.
    static let selectors: Int32 = 264
    static let cpl: Int32 = 312
    /// Sensitive instructions translated code ran (PUSHF; MOV from a segment register): added
    /// to the machine's counts, at the CPL of the entry, when it returns.
    static let pushfCount: Int32 = 320
    static let movFromSegmentCount: Int32 = 328
    /// The shared slow paths of translated loads and stores (`BTExecutor.loadStub`,
    /// `storeStub`), called through these slots, and the Swift callouts they call.
    static let loadStub: Int32 = 336
    static let storeStub: Int32 = 344
    static let loadCallout: Int32 = 352
    static let storeCallout: Int32 = 360
    /// Where the stubs keep R8-R11 (guest registers cached by the block) across the callout.
    static let stubSaves: Int32 = 368
    /// The executor (unretained: it owns this block), the Swift callout that finds the block
    /// for a RIP the jump cache missed, and the stub that calls it (`BTExecutor.missStub`).
    static let executor: Int32 = 400
    static let lookupCallout: Int32 = 408
    static let missStub: Int32 = 416
    /// FS's and GS's bases as of entry (only the interpreter changes them: SWAPGS, WRMSR, MOV
    /// to FS or GS): 64-bit code adds them to its FS and GS offsets itself, so those accesses
    /// take the host TLB too (Linux reaches its per-CPU data through GS, user code its
    /// thread-local storage through FS).
    static let segmentBases: Int32 = 424
    static func segmentBase(_ segment: UInt8) -> Int32 { segmentBases + (segment == 5 ? 8 : 0) }
    /// IA32_KERNEL_GS_BASE as of entry, after GS's base (a translated SWAPGS exchanges the two;
    /// the exit gives both back to the machine).
    static let kernelGSBase: Int32 = 440
    /// Non-zero when an interrupt (or an interrupt window) was waiting as the block was
    /// entered: a translated STI then stops, so the interpreter runs it and the interrupt is
    /// taken after its shadow. (Interrupts become pending only between entries.)
    static let interruptPending: Int32 = 448
    /// The RIP after the last translated STI that set IF (0: none since the exit last looked):
    /// when translated code stops there, the instruction in the STI's shadow has not run, and
    /// the exit sets the CPU's interrupt shadow for the interpreter.
    static let shadowRIP: Int32 = 456
    /// The host RSP as the enter trampoline left it, over the two bottom host-stack frames (see
    /// `BlockTranslator.callExit`): where the exit trampoline puts RSP back, however many
    /// frames translated CALLs left on the host stack.
    static let hostStackBase: Int32 = 464
    /// Masks for PEXT and PDEP (`X86Emitter.andMask`), which change RFLAGS bits held in
    /// registers without touching the host's flags (the guest's live there): the status
    /// flags; all but the status flags, RF and VM (PUSHF's image); IF; all but IF; IOPL.
    static let statusFlagsMask: Int32 = 472
    static let pushfImageMask: Int32 = 480
    static let interruptFlagMask: Int32 = 488
    static let allButInterruptFlagMask: Int32 = 496
    static let ioplMask: Int32 = 504
    /// The access stubs' variants that neither save nor restore the host's flags
    /// (`BTExecutor.accessStub`), for accesses in a region where the guest's flags are dead and
    /// saved in `flagsInRegion` (`BlockTranslator.flagsDeadBefore`).
    static let loadStubKeepingFlags: Int32 = 512
    static let storeStubKeepingFlags: Int32 = 520
    /// `Unmanaged<X86Machine>` of the vCPU running the block (callouts).
    static let machine: Int32 = 528
    /// Bit CPL * 4 + IOPL set where CLI and STI fault (CPL above IOPL).
    static let ioplTooLow: UInt64 = 1 << 4 | 1 << 8 | 1 << 9 | 1 << 12 | 1 << 13 | 1 << 14
    /// What the bottom frames' return-address slots hold: no guest return address plus any
    /// jump cache generation equals it (`BlockTranslator.returnThroughHostStack`), so a RET
    /// without a frame of its own never takes the host RET they guard.
    static let bottomFrameTag: UInt64 = 0xffff_0000_0000_0000

    // The tables translated code indexes, inside the context so that one `[r15 + index * 8 +
    // field]` operand reaches an entry: no base address to load first. Each table keeps an
    // entry's fields side by side (`tlbWord`, `jumpWord`). Tags are stored negated, so that "tag wanted + stored" is zero on a hit
    // (an LEA and a JRCXZ: flags untouched).

    /// Host TLB: per slot, 32 bytes: the negated read tag, the negated write tag, the addend
    /// (host = linear + addend), and the physical page (to drop write tags when the page comes
    /// to hold code). Side by side, a probe's tag and addend share one cache line; as UInt64
    /// words, slot n's fields are word `tlbWord(n)` from each field's offset.
    static let tlbReadTags: Int32 = 4096
    static let tlbWriteTags: Int32 = tlbReadTags + 8
    static let tlbAddends: Int32 = tlbReadTags + 16
    static let tlbPhysicalPages: Int32 = tlbReadTags + 24
    /// The UInt64 word of host TLB slot `slot` (from any field's offset).
    static func tlbWord(_ slot: Int) -> Int { 4 * slot }
    /// Jump cache: per slot, 32 bytes, two ways: the negated tag (RIP + generation) and the
    /// block's body address (past its flag-loading prologue: where a jump from another block
    /// lands) of the entry made last, then of the one it displaced (the victim way). Side by
    /// side, a lookup touches one cache line of the 1 MiB table. As UInt64 words (`BTTables`),
    /// slot n's fields are word `jumpWord(n)` from `jumpTags`, `jumpBodies`, `jumpVictimTags`
    /// and `jumpVictimBodies`. With one way, pairs of hot RIPs sharing a slot (which pairs
    /// depends on where KASLR put the kernel) took most of a TCP download's jump cache misses.
    static let jumpTags: Int32 = tlbReadTags + 32 * Int32(hostTLBEntries)
    static let jumpBodies: Int32 = jumpTags + 8
    static let jumpVictimTags: Int32 = jumpTags + 16
    static let jumpVictimBodies: Int32 = jumpTags + 24
    static let size = Int(jumpTags) + 32 * jumpCacheEntries
    /// The UInt64 word of jump cache slot `slot` (from any field's offset).
    static func jumpWord(_ slot: Int) -> Int { 4 * slot }

    /// Host TLB entries, direct-mapped by `tlbSlot`. With 1024, Linux's receive path (kernel
    /// stack, per-CPU data, socket buffers, the reader's user pages) had enough pages sharing
    /// slots that a TCP download made 2.5 times the load callouts it makes with 4096 (counted
    /// with `--stats`); the tables are then 128 KiB, of which a workload touches its own pages'.
    static let hostTLBEntries = 4096
    /// The linear-address bits that make a host TLB slot, packed (`pext`): the page number's
    /// low twelve bits. 4096 consecutive pages never share a slot, and neither do buffers 1, 2,
    /// 4 or 8 MiB apart (a copy between aligned buffers thrashed one slot when the index was
    /// the page's low bits alone, with fewer entries).
    static let tlbAddressMask: UInt64 = 0xfff << 12
    /// The host TLB slot of a linear page (what `pext` with `tlbAddressMask` gives for an
    /// address in it).
    static func tlbSlot(_ page: UInt64) -> Int { Int(truncatingIfNeeded: page & 0xfff) }
    /// An empty host TLB slot's stored tag: zero, the negation of no page number plus
    /// generation (page numbers stop below bit 52; generations are 1...0xffe in bits 63:52).
    /// So a zeroed table is an empty one.
    static let emptyStoredPageTag: UInt64 = 0
    static let maximumTLBGeneration: UInt64 = 0xffe
    /// Jump cache generations are 1...0x7fff.
    static let maximumJumpGeneration: UInt64 = 0x7fff

    /// Jump cache entries (a power of two), by `jumpSlot`.
    static let jumpCacheEntries = 32768
    /// The jump cache slot of a RIP: (RIP + RIP >> 12) mod `jumpCacheEntries` (a shift, an add
    /// and a `pext`, so translated code computes it without touching the flags).
    static func jumpSlot(_ rip: UInt64) -> Int {
        Int(truncatingIfNeeded: (rip &+ (rip >> 12)) & UInt64(jumpCacheEntries - 1))
    }
    /// An empty jump cache or no-block slot: zero, which no RIP plus generation equals or
    /// negates to (RIP = -(generation << 48) has bits 63:48 set and bit 47 clear: not canonical,
    /// and not below 2^32), so a zeroed table is an empty one.
    static let emptyTag: UInt64 = 0

    /// The RFLAGS bits translated code keeps in the host's RFLAGS: CF, PF, AF, ZF, SF, OF.
    /// (DF stays clear on the host, as the C calling convention wants; instructions that read
    /// or write any other flag are left to the interpreter.)
    static let statusFlags: UInt32 = 0x8d5
}
