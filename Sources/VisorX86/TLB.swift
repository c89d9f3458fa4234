// The translation lookaside buffer: a direct-mapped cache of linear-page → physical-page
// translations with the rights the walk found, so most accesses skip the page walk.
//
// Entries hold the *combined* rights of every level (writable and user only if every level
// says so, no-execute if any level says so) and whether the leaf's dirty bit is already set.
// Rights are checked against the current CPL, CR0.WP and EFER.NXE on every hit, so a CPL or
// WP change needs no flush. A write through an entry whose dirty bit is clear takes the slow
// path, which sets D in memory. Flushed on CR3 writes, CR0.PG/WP/PE, CR4.PAE/PSE/PGE and
// EFER writes; INVLPG drops one page (all pages, when any large page is cached). A CR3 write
// keeps the global pages (PTE.G with CR4.PGE), as the processor's TLB does (SDM Vol. 3A
// 4.10.4.1): the kernel's half of every address space survives a context switch, and `bt`'s
// tables keep theirs with it (`globalGeneration`).

/// A direct-mapped TLB of 4 KiB translations.
public struct X86TLB {
    public static let entryCount = 512

    /// Linear page number + 1 (0 = empty).
    @usableFromInline var tags = [UInt64](repeating: 0, count: entryCount)
    /// Physical page base.
    @usableFromInline var frames = [UInt64](repeating: 0, count: entryCount)
    /// Rights bits, `X86TLB.writable` ...
    @usableFromInline var rights = [UInt8](repeating: 0, count: entryCount)
    /// True once an entry came from a 2 MiB, 4 MiB or 1 GiB page (INVLPG then flushes all).
    @usableFromInline var holdsLargePages = false
    /// Which entries came from large pages (so a flush that keeps some knows whether any are).
    @usableFromInline var largeEntries = [Bool](repeating: false, count: entryCount)
    /// Bumped by every flush and invalidation (shortcuts that cache a translation check it).
    public private(set) var generation: UInt64 = 0
    /// Bumped by the flushes and invalidations that may drop a global page's translation (all
    /// but `flushNonGlobal`): what was learnt of global pages holds while it stays.
    public private(set) var globalGeneration: UInt64 = 0

    public static let writable: UInt8 = 1, user: UInt8 = 2, noExecute: UInt8 = 4, dirty: UInt8 = 8
    /// The translation is global (the leaf's G bit with CR4.PGE): a CR3 write keeps it.
    public static let global: UInt8 = 16

    public init() {}

    @inline(__always)
    static func slot(_ page: UInt64) -> Int { Int(truncatingIfNeeded: page) & (entryCount - 1) }

    /// The cached entry for `linear`, if any: (physical page base, rights).
    @inline(__always)
    public func lookup(_ linear: UInt64) -> (frame: UInt64, rights: UInt8)? {
        let page = linear >> 12
        let i = Self.slot(page)
        guard tags[i] == page &+ 1 else { return nil }
        return (frames[i], rights[i])
    }

    mutating func insert(linear: UInt64, frame: UInt64, rights r: UInt8, largePage: Bool) {
        let page = linear >> 12
        let i = Self.slot(page)
        tags[i] = page &+ 1
        frames[i] = frame
        rights[i] = r
        largeEntries[i] = largePage
        if largePage { holdsLargePages = true }
    }

    /// Drops every translation.
    public mutating func flush() {
        generation &+= 1
        globalGeneration &+= 1
        for i in 0..<Self.entryCount { tags[i] = 0 }
        holdsLargePages = false
    }

    /// Drops every translation but the global ones (MOV CR3).
    public mutating func flushNonGlobal() {
        generation &+= 1
        var large = false
        for i in 0..<Self.entryCount where tags[i] != 0 {
            if rights[i] & Self.global == 0 {
                tags[i] = 0
            } else if largeEntries[i] {
                large = true
            }
        }
        holdsLargePages = large
    }

    /// Drops the translation of the page holding `linear` (INVLPG).
    public mutating func invalidate(_ linear: UInt64) {
        generation &+= 1
        globalGeneration &+= 1
        if holdsLargePages { flush(); return }
        let page = linear >> 12
        let i = Self.slot(page)
        if tags[i] == page &+ 1 { tags[i] = 0 }
    }

    /// Number of valid entries (tests, statistics).
    public var count: Int { tags.reduce(0) { $0 + ($1 != 0 ? 1 : 0) } }
}
