// The block of memory translated code works on: the guest's general registers, RIP and
// RFLAGS while a block runs, two slots that keep RFLAGS across calls into Swift, the machine
// the callouts act on, and the callouts' status. R15 holds its address inside translated code.

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
    /// `Unmanaged<X86Machine>` of the vCPU running the block (callouts).
    static let machine: Int32 = 160
    /// 0 when the last load callout succeeded.
    static let status: Int32 = 168
    /// Guest status flags as a host RFLAGS image, across jumps from block to block (each
    /// block starts by loading them into the host's RFLAGS).
    static let hostFlags: Int32 = 176
    /// Block-to-block jumps left before translated code returns to Swift.
    static let budget: Int32 = 184
    /// Guest instructions retired since translated code was entered.
    static let retired: Int32 = 192
    /// The jump cache's address: `jumpCacheEntries` of (RIP, block entry), looked up at every
    /// block's end.
    static let jumpCache: Int32 = 200
    /// Where translated code goes to return to Swift (the exit trampoline).
    static let exitAddress: Int32 = 208
    /// The host TLB's address (`hostTLBEntries` of 32 bytes: read tag, write tag, addend,
    /// physical page), probed inline by translated loads and stores.
    static let hostTLB: Int32 = 216
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
    static let size = 264

    /// Host TLB entries, direct-mapped by `tlbSlot`.
    static let hostTLBEntries = 1024
    /// The host TLB slot of a linear page: the page number plus itself shifted down 10, mod
    /// 1024 — so buffers at aligned addresses (a copy from 1 MiB to 2 MiB, say) do not share
    /// every slot, as they did when the slot was the page number's low bits.
    static func tlbSlot(_ page: UInt64) -> Int { Int(truncatingIfNeeded: (page &+ (page >> 10)) & 1023) }
    /// Host TLB entry fields, in bytes.
    static let tlbReadTag: Int8 = 0, tlbWriteTag: Int8 = 8, tlbAddend: Int8 = 16, tlbPhysicalPage = 24
    /// A tag no page number plus generation equals (generations stop below 0xfff).
    static let emptyPageTag: UInt64 = .max
    static let maximumTLBGeneration: UInt64 = 0xffe
    /// Jump cache generations are 1...0x7fff.
    static let maximumJumpGeneration: UInt64 = 0x7fff

    /// Jump cache entries (a power of two), by `jumpSlot`.
    static let jumpCacheEntries = 4096
    /// The jump cache slot of a RIP: (RIP + RIP >> 12) mod 4096 (adds and shifts only, so
    /// translated code computes it without touching the flags).
    static func jumpSlot(_ rip: UInt64) -> Int { Int(truncatingIfNeeded: (rip &+ (rip >> 12)) & 4095) }
    /// A jump cache tag no RIP can equal (not canonical, and above 32 bits).
    static let emptyTag: UInt64 = 0x8000_0000_0000_0000

    /// The RFLAGS bits translated code keeps in the host's RFLAGS: CF, PF, AF, ZF, SF, OF.
    /// (DF stays clear on the host, as the C calling convention wants; instructions that read
    /// or write any other flag are left to the interpreter.)
    static let statusFlags: UInt32 = 0x8d5
}
