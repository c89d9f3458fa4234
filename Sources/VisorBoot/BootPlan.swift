// Validate first, write second: every byte a load will put into guest memory is collected into a
// plan, every range is checked against usable RAM and against every other range, and only then is
// anything written. A load that fails therefore leaves guest memory untouched.

import VisorCore

/// One entry of the memory map reported to the guest.
public struct MemoryMapEntry: Sendable, Equatable {
    /// Multiboot type 1: usable RAM.
    public static let typeRAM: UInt32 = 1
    /// Multiboot type 2: reserved.
    public static let typeReserved: UInt32 = 2

    public var base: UInt64
    public var length: UInt64
    public var type: UInt32
    public init(base: UInt64, length: UInt64, type: UInt32) { self.base = base; self.length = length; self.type = type }
    public var end: UInt64 { base + length }
}

/// The guest's physical memory map as Visor reports it: RAM from `GuestMemory.regions` with the
/// legacy hole [0xA0000, 0x100000) carved out and reported as reserved. Sorted by address.
public func memoryMap(of memory: GuestMemory) -> [MemoryMapEntry] {
    var map: [MemoryMapEntry] = []
    var holeEmitted = false
    func emitHole() {
        map.append(MemoryMapEntry(base: BootLayout.lowMemoryHoleStart,
                                  length: BootLayout.lowMemoryHoleEnd - BootLayout.lowMemoryHoleStart,
                                  type: MemoryMapEntry.typeReserved))
        holeEmitted = true
    }
    for region in memory.regions {
        let start = region.guestStart.rawValue, end = region.guestEnd
        let below = (start, min(end, BootLayout.lowMemoryHoleStart))
        let above = (max(start, BootLayout.lowMemoryHoleEnd), end)
        if below.0 < below.1 {
            map.append(MemoryMapEntry(base: below.0, length: below.1 - below.0, type: MemoryMapEntry.typeRAM))
        }
        if !holeEmitted && start < BootLayout.lowMemoryHoleEnd { emitHole() }
        if above.0 < above.1 {
            map.append(MemoryMapEntry(base: above.0, length: above.1 - above.0, type: MemoryMapEntry.typeRAM))
        }
    }
    if !holeEmitted { emitHole() }
    return map.sorted { $0.base < $1.base }
}

/// Whether [address, address+length) lies inside one usable-RAM entry of `map`. An empty range is
/// usable when its address is inside or at the end of a usable entry.
func isUsable(_ address: UInt64, _ length: UInt64, in map: [MemoryMapEntry]) -> Bool {
    guard let end = address.checkedAdd(length) else { return false }
    return map.contains { $0.type == MemoryMapEntry.typeRAM && address >= $0.base && end <= $0.end }
}

/// The writes a load will make, checked before any is made.
struct BootPlan {
    struct Item {
        var name: String
        var start: UInt64
        var length: UInt64
        /// Written at `start`; the rest of `length` is zero-filled.
        var bytes: ArraySlice<UInt8>
    }

    let memory: GuestMemory
    let map: [MemoryMapEntry]
    private(set) var items: [Item] = []
    /// Where each of Visor's boot structures went, in the order they were placed.
    private(set) var bootData: [BootDataPlacement] = []

    init(memory: GuestMemory) {
        self.memory = memory
        self.map = memoryMap(of: memory)
    }

    /// Adds a range to write, after checking it is in RAM and overlaps nothing already planned.
    /// `outsideRAM` is the error to throw when the range is not usable RAM.
    mutating func add(_ name: String, at start: UInt64, length: UInt64, bytes: ArraySlice<UInt8> = [],
                      outsideRAM: BootError) throws(BootError) {
        precondition(UInt64(bytes.count) <= length, "plan item larger than its data")
        guard isUsable(start, length, in: map), memory.contains(GuestPhysicalAddress(start), length: length) else {
            throw outsideRAM
        }
        for other in items where overlaps(start, length, other.start, other.length) {
            throw .placementConflict("\(name) \(GuestRange(start: start, length: length))",
                                     "\(other.name) \(GuestRange(start: other.start, length: other.length))")
        }
        items.append(Item(name: name, start: start, length: length, bytes: bytes))
    }

    /// The lowest address where `size` bytes, aligned to `alignment` (a power of two), lie in
    /// usable RAM between `BootLayout.placementMinimum` and `limit` and overlap nothing planned;
    /// `preferred` first, when it qualifies.
    func freeSpace(size: UInt64, alignment: UInt64, preferred: UInt64? = nil, below limit: UInt64) -> UInt64? {
        func fits(_ start: UInt64) -> Bool {
            guard start >= BootLayout.placementMinimum, start % alignment == 0, let end = start.checkedAdd(size),
                  end <= limit, isUsable(start, size, in: map),
                  memory.contains(GuestPhysicalAddress(start), length: size) else { return false }
            return !items.contains { overlaps(start, size, $0.start, $0.length) }
        }
        if let preferred, fits(preferred) { return preferred }
        // A free stretch starts at the start of a RAM range, the end of a planned item, or the
        // placement minimum; the lowest such start (aligned) where the bytes fit is the answer.
        let starts = map.filter { $0.type == MemoryMapEntry.typeRAM }.map(\.base) + items.map { $0.start &+ $0.length }
        return starts.compactMap { alignUp(max($0, BootLayout.placementMinimum), alignment) }.sorted().first(where: fits)
    }

    /// The highest address where `size` bytes, aligned to `alignment` (a power of two), lie in
    /// usable RAM between `BootLayout.placementMinimum` and `limit` and overlap nothing planned:
    /// where Linux loaders put the initial RAM disk, so it stays clear of the kernel's early
    /// allocations from low memory up.
    func highestFreeSpace(size: UInt64, alignment: UInt64, below limit: UInt64) -> UInt64? {
        func fits(_ start: UInt64) -> Bool {
            guard start >= BootLayout.placementMinimum, let end = start.checkedAdd(size), end <= limit,
                  isUsable(start, size, in: map), memory.contains(GuestPhysicalAddress(start), length: size) else {
                return false
            }
            return !items.contains { overlaps(start, size, $0.start, $0.length) }
        }
        // A free stretch ends at the end of a RAM range, the start of a planned item, or the limit;
        // the highest such end from which the bytes fit, aligned down, is the answer.
        let ends = map.filter { $0.type == MemoryMapEntry.typeRAM }.map(\.end) + items.map(\.start) + [limit]
        return ends.compactMap { $0 >= size ? ($0 - size) & ~(alignment - 1) : nil }.filter(fits).max()
    }

    /// Adds firmware data (ACPI tables) at `start`, which must lie in a reserved range of the map
    /// that is backed by guest memory (the BIOS area below 1 MiB), overlapping nothing planned.
    mutating func addFirmware(_ name: String, at start: UInt64, bytes: [UInt8]) throws(BootError) {
        let length = UInt64(bytes.count)
        guard let end = start.checkedAdd(length),
              map.contains(where: { $0.type == MemoryMapEntry.typeReserved && start >= $0.base && end <= $0.end }),
              memory.contains(GuestPhysicalAddress(start), length: length) else {
            throw .firmwareOutsideReservedMemory(address: start, size: length)
        }
        for other in items where overlaps(start, length, other.start, other.length) {
            throw .placementConflict("\(name) \(GuestRange(start: start, length: length))",
                                     "\(other.name) \(GuestRange(start: other.start, length: other.length))")
        }
        items.append(Item(name: name, start: start, length: length, bytes: bytes[...]))
    }

    /// Places one of Visor's boot structures at its usual address `preferred` when that is free,
    /// else at the lowest free place below `BootLayout.bootDataLimit`; returns the address.
    /// `bytes` (at most `size`) can be supplied later with `setBytes` when they depend on it.
    mutating func placeBootData(_ name: String, size: UInt64, alignment: UInt64, preferred: UInt64,
                                bytes: [UInt8] = []) throws(BootError) -> UInt64 {
        guard let start = freeSpace(size: size, alignment: alignment, preferred: preferred,
                                    below: BootLayout.bootDataLimit) else {
            throw .noRoomForBootData(what: name, size: size)
        }
        try add(name, at: start, length: size, bytes: bytes[...], outsideRAM: .noRoomForBootData(what: name, size: size))
        bootData.append(BootDataPlacement(name: name, range: GuestRange(start: start, length: size)))
        return start
    }

    /// Sets the bytes of the item planned at `start` (as long as its length at most).
    mutating func setBytes(at start: UInt64, _ bytes: [UInt8]) {
        guard let index = items.firstIndex(where: { $0.start == start }) else {
            preconditionFailure("no plan item at \(hex(start))")
        }
        precondition(UInt64(bytes.count) <= items[index].length, "plan item larger than its space")
        items[index].bytes = bytes[...]
    }

    /// Performs every planned write. Ranges were validated, so failures here are Visor bugs.
    func commit() throws(BootError) {
        do {
            for item in items {
                try memory.write(item.bytes, at: GuestPhysicalAddress(item.start))
                let written = UInt64(item.bytes.count)
                if item.length > written {
                    try memory.fill(0, at: GuestPhysicalAddress(item.start + written), count: item.length - written)
                }
            }
        } catch {
            throw .guestMemory(error)
        }
    }
}

/// Rounds up to a multiple of `alignment` (a power of two), or nil on overflow.
func alignUp(_ value: UInt64, _ alignment: UInt64) -> UInt64? {
    guard let bumped = value.checkedAdd(alignment - 1) else { return nil }
    return bumped & ~(alignment - 1)
}

/// Appends little-endian integers to a byte buffer.
extension Array where Element == UInt8 {
    mutating func appendLE<T: FixedWidthInteger>(_ value: T) {
        for i in 0..<(T.bitWidth / 8) { append(UInt8(truncatingIfNeeded: value >> (i * 8))) }
    }
    mutating func putLE<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        for i in 0..<(T.bitWidth / 8) { self[offset + i] = UInt8(truncatingIfNeeded: value >> (i * 8)) }
    }
}
