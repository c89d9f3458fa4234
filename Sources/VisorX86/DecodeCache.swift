// Decoded instructions cached by guest-PHYSICAL address, so an instruction is decoded once however
// many virtual mappings reach it, and a write through any mapping (kernels patch their own code
// through temporary mappings: text_poke) invalidates it.
//
// Per 4 KiB physical page: a table from page offset to a decoded instruction, tagged with the
// code mode it was decoded in, and a mask of the page's 64-byte chunks that hold bytes of
// cached instructions. A bitmap over physical pages says which pages hold cached code; every
// store the CPU makes to RAM (`writePhysical`, A/D updates) tests it, and a store to a chunk
// with cached code drops the whole page. A store elsewhere on the page drops nothing: code and
// data share pages (Linux's boot decompressor writes its variables beside its code thousands
// of times), and dropping the page on each such store made `bt` translate its code again and
// again. Instructions that straddle two pages are not cached here (the step loop keeps a few
// aside, `CrossingFetch`, their bytes marked as code on both pages: `markCode`). Writes that
// do not go through this CPU are not seen here: other vCPUs' stores reach it at this CPU's
// next serializing point through the machine-wide code-write log (`SMP.swift`);
// for device DMA or the host, whoever writes calls `invalidate(physicalPage:)` or `invalidateAll()`.
//
// Every drop of a page bumps `invalidations`; the step loop's fetch shortcut (`Step.swift`)
// holds an unretained reference to the current code page and is valid only while that counter
// (among others) is unchanged, so it never outlives the page.

import VisorCore
import VisorX86Decode

/// The decoded-instruction cache of one software CPU.
public struct X86DecodeCache {
    /// Pages with cached code beyond this count make the cache start over (bounds host memory).
    public static let maximumPages = 4096

    /// The decoded instructions of one physical page.
    final class Page {
        // SAFETY: `slots` points to exactly 4096 elements and `entries` to `capacity` elements
        // (the first `count` initialized), both allocated and owned by this page and freed in
        // deinit. Slot indexes are masked to 0...4095, and a non-zero slot always names an entry
        // below `count` (entries are only appended), so every access stays in bounds.
        /// Page offset → (entry index + 1) << 2 | code mode (0: nothing cached there).
        let slots: UnsafeMutablePointer<UInt32>
        @exclusivity(unchecked) var entries: UnsafeMutablePointer<DecodedInstruction>
        @exclusivity(unchecked) var count = 0
        @exclusivity(unchecked) var capacity = 16
        /// Bit n: bytes 64n ..< 64n + 64 of the page hold (part of) a cached instruction.
        @exclusivity(unchecked) var codeChunks: UInt64 = 0

        init() {
            slots = .allocate(capacity: 4096)
            slots.initialize(repeating: 0, count: 4096)
            entries = .allocate(capacity: capacity)
        }

        deinit {
            slots.deallocate()
            entries.deinitialize(count: count)
            entries.deallocate()
        }

        /// The instruction at page offset `offset` decoded in `mode`, if any.
        @inline(__always)
        func lookup(_ offset: UInt64, mode: CodeMode) -> DecodedInstruction? {
            let slot = slots[Int(truncatingIfNeeded: offset & 0xfff)]
            guard slot & 3 == UInt32(mode.rawValue), slot >> 2 != 0 else { return nil }
            return entries[Int(slot >> 2) - 1]
        }

        func store(_ offset: UInt64, mode: CodeMode, _ insn: DecodedInstruction) {
            let i = Int(truncatingIfNeeded: offset & 0xfff)
            codeChunks |= X86DecodeCache.chunks(offset: i, size: Int(insn.length))
            let slot = slots[i]
            if slot >> 2 != 0 {
                entries[Int(slot >> 2) - 1] = insn
            } else {
                if count == capacity {
                    // At most one entry per offset: count never exceeds 4096.
                    let grown = UnsafeMutablePointer<DecodedInstruction>.allocate(capacity: capacity * 2)
                    grown.moveInitialize(from: entries, count: count)
                    entries.deallocate()
                    entries = grown
                    capacity *= 2
                }
                (entries + count).initialize(to: insn)
                count += 1
            }
            slots[i] = UInt32(truncatingIfNeeded: (slot >> 2 != 0 ? Int(slot >> 2) : count) << 2)
                | UInt32(mode.rawValue)
        }
    }

    private var pages: [UInt64: Page] = [:]
    /// One bit per physical page number below `bitmapPages`: set while the page has entries.
    private var codeBits: [UInt64]
    private let bitmapPages: UInt64
    private var lastPageNumber: UInt64 = .max
    private var lastPage: Page?
    /// Lookups answered from the cache, and decodes stored (statistics, tests).
    public internal(set) var hits: UInt64 = 0
    public private(set) var fills: UInt64 = 0, invalidations: UInt64 = 0
    /// Told of every page dropped (nil: all of them): the `bt` engine drops its translations of
    /// the same code, which it decodes through this cache so that writes reach both.
    var onInvalidate: ((UInt64?) -> Void)?
    /// Told of every page that begins to hold code.
    var onCodePage: ((UInt64) -> Void)?

    public init(memory: GuestMemory) {
        let end = memory.regions.last.map { $0.guestEnd } ?? 0
        bitmapPages = (end + 4095) >> 12
        codeBits = [UInt64](repeating: 0, count: Int((bitmapPages + 63) >> 6))
    }

    /// Number of physical pages with cached instructions.
    public var pageCount: Int { pages.count }

    /// The cached page of physical page `number`, if any.
    mutating func page(_ number: UInt64) -> Page? {
        if number == lastPageNumber, let p = lastPage { return p }
        guard let p = pages[number] else { return nil }
        lastPageNumber = number; lastPage = p
        return p
    }

    /// The instruction decoded earlier at `physical` in `mode`, if still valid.
    public mutating func lookup(_ physical: UInt64, mode: CodeMode) -> DecodedInstruction? {
        guard let insn = page(physical >> 12)?.lookup(physical, mode: mode) else { return nil }
        hits &+= 1
        return insn
    }

    /// Remembers `insn`, decoded from RAM at `physical` in `mode` (ignored if it crosses a page).
    public mutating func insert(_ physical: UInt64, mode: CodeMode, _ insn: DecodedInstruction) {
        let number = physical >> 12
        let offset = Int(physical & 0xfff)
        guard offset + Int(insn.length) <= 4096, number < bitmapPages else { return }
        holdingPage(number).store(physical, mode: mode, insn)
        fills &+= 1
    }

    /// The page of physical page `number` (below `bitmapPages`), made now if it held no code
    /// (starting over first when there are `maximumPages`).
    private mutating func holdingPage(_ number: UInt64) -> Page {
        if let p = pages[number] { return p }
        if pages.count >= Self.maximumPages { invalidateAll() }
        let page = Page()
        pages[number] = page
        codeBits[Int(number >> 6)] |= 1 << (number & 63)
        onCodePage?(number)
        return page
    }

    /// Marks `length` bytes at `physical` (on one page) as code without caching an instruction
    /// there: a store to them drops the page, as for cached instructions (the bytes of an
    /// instruction that crosses into the next page, which callers cache elsewhere).
    public mutating func markCode(_ physical: UInt64, length: Int) {
        let number = physical >> 12
        guard number < bitmapPages, length > 0 else { return }
        holdingPage(number).codeChunks |= Self.chunks(offset: Int(physical & 0xfff), size: length)
    }

    /// True when the physical page `number` holds cached instructions.
    @inline(__always)
    public func holdsCode(physicalPage number: UInt64) -> Bool {
        number < bitmapPages && codeBits[Int(number >> 6)] & (1 << (number & 63)) != 0
    }

    /// Called for every store to RAM: drops cached code on the pages `[address, address+size)`
    /// touches where it writes a chunk holding cached instructions.
    @inline(__always)
    public mutating func noteWrite(_ address: UInt64, size: Int) {
        let first = address >> 12
        let last = (address &+ UInt64(max(size, 1) - 1)) >> 12
        if holdsCode(physicalPage: first) { writeToCodePage(first, address, size: size) }
        if last != first && holdsCode(physicalPage: last) { writeToCodePage(last, address, size: size) }
    }

    /// The mask of 64-byte chunks that bytes `offset ..< offset + size` of a page touch
    /// (`offset` below 4096; the part beyond the page is ignored).
    static func chunks(offset: Int, size: Int) -> UInt64 {
        let firstChunk = offset >> 6
        let lastChunk = min(offset + max(size, 1) - 1, 4095) >> 6
        let count = lastChunk - firstChunk + 1
        let run: UInt64 = count >= 64 ? .max : (1 << UInt64(count)) &- 1
        return run << UInt64(firstChunk)
    }

    /// Whether bytes `[address, address + size)` (on one or two pages) touch a chunk holding
    /// cached instructions.
    public mutating func overlapsCode(_ address: UInt64, size: Int) -> Bool {
        let first = address >> 12
        let last = (address &+ UInt64(max(size, 1) - 1)) >> 12
        var page = first
        while true {
            if holdsCode(physicalPage: page), let p = self.page(page),
               p.codeChunks & Self.chunks(onPage: page, of: address, size: size) != 0 { return true }
            if page == last { return false }
            page &+= 1
        }
    }

    /// The mask of page `number`'s chunks that bytes `[address, address + size)`, which touch
    /// it, cover.
    static func chunks(onPage number: UInt64, of address: UInt64, size: Int) -> UInt64 {
        let lastByte = address &+ UInt64(max(size, 1) - 1)
        let start = number == address >> 12 ? Int(address & 0xfff) : 0
        let end = number == lastByte >> 12 ? Int(lastByte & 0xfff) : 4095
        return chunks(offset: start, size: end - start + 1)
    }

    /// A store of `[address, address + size)` reached code page `number`: drops the page when
    /// it writes a chunk holding cached instructions.
    @inline(never)
    private mutating func writeToCodePage(_ number: UInt64, _ address: UInt64, size: Int) {
        guard let p = page(number) else { return }
        if p.codeChunks & Self.chunks(onPage: number, of: address, size: size) != 0 { invalidate(physicalPage: number) }
    }

    /// Drops every instruction cached from physical page `number`.
    public mutating func invalidate(physicalPage number: UInt64) {
        guard pages.removeValue(forKey: number) != nil else { return }
        if number < bitmapPages { codeBits[Int(number >> 6)] &= ~(1 << (number & 63)) }
        if lastPageNumber == number { lastPageNumber = .max; lastPage = nil }
        invalidations &+= 1
        onInvalidate?(number)
    }

    /// Drops everything (new memory contents loaded by the host, state restored).
    public mutating func invalidateAll() {
        pages.removeAll(keepingCapacity: true)
        for i in codeBits.indices { codeBits[i] = 0 }
        lastPageNumber = .max; lastPage = nil
        invalidations &+= 1
        onInvalidate?(nil)
    }
}
