// A split virtqueue (virtio 1.x §2.7) read and written in guest RAM: the driver's descriptor
// table and available ring, the device's used ring.
//
//   descriptor table: size × { addr u64, len u32, flags u16, next u16 }            (align 16)
//   available ring:   flags u16, idx u16, ring[size] u16, used_event u16            (align 2)
//   used ring:        flags u16, idx u16, ring[size] { id u32, len u32 }, avail_event u16 (align 4)
//
// Everything in those areas is written by a guest that may be hostile. Each descriptor's buffer
// is checked to lie in guest RAM before it is handed on; a chain may not revisit a descriptor
// (a loop) or hold more descriptors than the queue (§2.7.5.3.1), an indirect table must be a
// whole number of descriptors in RAM and may not nest, and device-writable buffers come after
// device-readable ones (§2.7.4.2). Any breach is a `VirtqueueError`: the transport marks the
// device DEVICE_NEEDS_RESET rather than guess what the driver meant.

import VisorCore

/// Why a ring cannot be served. The description is the message the user sees.
public enum VirtqueueError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The available index ran ahead of the device by more than the queue holds.
    case availableIndexTooFarAhead(available: UInt16, seen: UInt16, size: UInt16)
    /// A descriptor index (a ring entry's head or a `next`) outside its table.
    case descriptorIndexOutOfRange(index: UInt16, tableSize: UInt32)
    /// A descriptor's buffer (or a ring) is not entirely inside guest RAM.
    case bufferOutsideRAM(address: UInt64, length: UInt64)
    /// The chain visits a descriptor it has already visited.
    case loop(index: UInt16)
    /// The chain holds more descriptors than the queue size.
    case chainTooLong(limit: UInt16)
    /// An indirect descriptor that is not allowed, or whose table is malformed.
    case badIndirectTable(String)
    /// A device-readable descriptor after a device-writable one.
    case readableAfterWritable(index: UInt16)
    /// The device needs a buffer the chain does not give it in the right direction or size.
    case malformedRequest(String)

    public var description: String {
        switch self {
        case .availableIndexTooFarAhead(let available, let seen, let size):
            return "the available index \(available) is more than the queue size \(size) ahead of the \(seen) buffers the device has taken"
        case .descriptorIndexOutOfRange(let index, let tableSize):
            return "descriptor index \(index) is outside its table of \(tableSize) descriptors"
        case .bufferOutsideRAM(let address, let length):
            return "a buffer of \(length) bytes at 0x\(String(address, radix: 16)) is not inside guest RAM"
        case .loop(let index):
            return "the descriptor chain loops back to descriptor \(index)"
        case .chainTooLong(let limit):
            return "the descriptor chain is longer than the queue size \(limit)"
        case .badIndirectTable(let why):
            return "bad indirect descriptor table: \(why)"
        case .readableAfterWritable(let index):
            return "descriptor \(index) is device-readable but follows a device-writable one"
        case .malformedRequest(let why):
            return why
        }
    }
}

/// Where a queue's three areas are and how many entries it has, as the driver configured them.
public struct VirtqueueLayout: Sendable, Equatable {
    public var size: UInt16
    public var descriptorTable: UInt64
    /// The available ring (the "driver area").
    public var availableRing: UInt64
    /// The used ring (the "device area").
    public var usedRing: UInt64

    public init(size: UInt16, descriptorTable: UInt64, availableRing: UInt64, usedRing: UInt64) {
        self.size = size; self.descriptorTable = descriptorTable
        self.availableRing = availableRing; self.usedRing = usedRing
    }

    /// Bytes of each area for a queue of `size` entries (with the event-index fields).
    public static func descriptorTableBytes(_ size: UInt16) -> UInt64 { 16 * UInt64(size) }
    public static func availableRingBytes(_ size: UInt16) -> UInt64 { 6 + 2 * UInt64(size) }
    public static func usedRingBytes(_ size: UInt16) -> UInt64 { 6 + 8 * UInt64(size) }

    /// Why the driver's configuration cannot be used, or nil when it can: a power-of-two size
    /// within `maximumSize`, each area aligned as §2.7 requires and entirely inside guest RAM.
    public func problem(maximumSize: UInt16, memory: GuestMemory) -> String? {
        guard size > 0, size <= maximumSize, size & (size &- 1) == 0 else {
            return "queue size \(size) is not a power of two between 1 and \(maximumSize)"
        }
        guard descriptorTable % 16 == 0, availableRing % 2 == 0, usedRing % 4 == 0 else {
            return "queue areas are misaligned (descriptor table 0x\(String(descriptorTable, radix: 16)), available ring 0x\(String(availableRing, radix: 16)), used ring 0x\(String(usedRing, radix: 16)))"
        }
        let areas: [(UInt64, UInt64)] = [(descriptorTable, Self.descriptorTableBytes(size)),
                                         (availableRing, Self.availableRingBytes(size)),
                                         (usedRing, Self.usedRingBytes(size))]
        for (address, length) in areas where !memory.contains(GuestPhysicalAddress(address), length: length) {
            return VirtqueueError.bufferOutsideRAM(address: address, length: length).description
        }
        return nil
    }
}

/// One guest buffer of a chain, already checked to lie inside guest RAM.
public struct VirtqueueBuffer: Sendable, Equatable {
    public var address: GuestPhysicalAddress
    public var length: UInt32
}

/// A descriptor chain the driver made available: its head (the id the used ring returns) and its
/// buffers, the device-readable ones first.
public struct DescriptorChain: Sendable, Equatable {
    public var head: UInt16
    public var readable: [VirtqueueBuffer] = []
    public var writable: [VirtqueueBuffer] = []

    public var readableLength: UInt64 { readable.reduce(0) { $0 + UInt64($1.length) } }
    public var writableLength: UInt64 { writable.reduce(0) { $0 + UInt64($1.length) } }

    /// Copies `count` bytes starting `offset` bytes into the readable buffers, as if they were
    /// one. The caller checks that `offset + count <= readableLength`.
    public func read(_ memory: GuestMemory, offset: UInt64, count: Int) throws(VirtqueueError) -> [UInt8] {
        var result: [UInt8] = []
        result.reserveCapacity(count)
        try walk(readable, offset: offset, count: UInt64(max(count, 0))) { (address, length) throws(VirtqueueError) in
            do { result += try memory.read(at: address, count: Int(length)) } catch {
                throw .bufferOutsideRAM(address: address.rawValue, length: length)
            }
        }
        return result
    }

    /// Copies `bytes` into the writable buffers, as if they were one, starting `offset` bytes in.
    public func write(_ bytes: [UInt8], _ memory: GuestMemory, offset: UInt64) throws(VirtqueueError) {
        var position = 0
        try walk(writable, offset: offset, count: UInt64(bytes.count)) { (address, length) throws(VirtqueueError) in
            let end = position + Int(length)
            do { try memory.write(bytes[position..<end], at: address) } catch {
                throw .bufferOutsideRAM(address: address.rawValue, length: length)
            }
            position = end
        }
    }

    /// Calls `body` with the pieces of `buffers` that make up bytes [offset, offset + count).
    private func walk(_ buffers: [VirtqueueBuffer], offset: UInt64, count: UInt64,
                      _ body: (GuestPhysicalAddress, UInt64) throws(VirtqueueError) -> Void) throws(VirtqueueError) {
        var skip = offset
        var remaining = count
        for buffer in buffers where remaining > 0 {
            let length = UInt64(buffer.length)
            if skip >= length { skip -= length; continue }
            let piece = min(length - skip, remaining)
            // In range: `skip < length` and the buffer was checked to lie inside RAM.
            guard let start = buffer.address.advanced(by: skip) else {
                throw .bufferOutsideRAM(address: buffer.address.rawValue, length: length)
            }
            try body(start, piece)
            skip = 0
            remaining -= piece
        }
        guard remaining == 0 else {
            throw .malformedRequest("the request's buffers are \(remaining) bytes shorter than the device needs")
        }
    }
}

/// A split virtqueue's device side: where the device is in the rings, and the walks over them.
/// A value: the transport keeps it and hands a copy to whoever serves the queue.
public struct SplitVirtqueue: Sendable, Equatable {
    public let layout: VirtqueueLayout
    /// VIRTIO_F_EVENT_IDX was negotiated: used_event and avail_event are live.
    public let eventIndex: Bool
    /// VIRTIO_F_INDIRECT_DESC was negotiated.
    public let indirectDescriptors: Bool
    /// The next available-ring entry the device will take (its free-running index).
    public private(set) var nextAvailable: UInt16 = 0
    /// The next used-ring entry the device will fill (the used ring's idx as the device sees it).
    public private(set) var nextUsed: UInt16 = 0

    public static let availableNoInterrupt: UInt16 = 1
    /// VIRTQ_USED_F_NO_NOTIFY, in the used ring's flags.
    public static let usedNoNotify: UInt16 = 1
    public static let descriptorNext: UInt16 = 1
    public static let descriptorWrite: UInt16 = 2
    public static let descriptorIndirect: UInt16 = 4

    public init(layout: VirtqueueLayout, eventIndex: Bool, indirectDescriptors: Bool) {
        self.layout = layout; self.eventIndex = eventIndex; self.indirectDescriptors = indirectDescriptors
    }

    private func load16(_ memory: GuestMemory, _ base: UInt64, _ offset: UInt64) throws(VirtqueueError) -> UInt16 {
        guard let address = GuestPhysicalAddress(base).advanced(by: offset) else {
            throw .bufferOutsideRAM(address: base, length: offset)
        }
        do { return try memory.load(UInt16.self, at: address) } catch {
            throw .bufferOutsideRAM(address: address.rawValue, length: 2)
        }
    }

    private func store<T: FixedWidthInteger>(_ value: T, _ memory: GuestMemory, _ base: UInt64, _ offset: UInt64) throws(VirtqueueError) {
        guard let address = GuestPhysicalAddress(base).advanced(by: offset) else {
            throw .bufferOutsideRAM(address: base, length: offset)
        }
        do { try memory.store(value, at: address) } catch {
            throw .bufferOutsideRAM(address: address.rawValue, length: UInt64(MemoryLayout<T>.size))
        }
    }

    /// The driver's available index (how many buffers it has ever made available, mod 2^16).
    public func availableIndex(_ memory: GuestMemory) throws(VirtqueueError) -> UInt16 {
        try load16(memory, layout.availableRing, 2)
    }

    /// True when the driver has made buffers available the device has not taken.
    public func hasAvailable(_ memory: GuestMemory) throws(VirtqueueError) -> Bool {
        try availableIndex(memory) != nextAvailable
    }

    /// Takes the next available chain, or nil when the device has taken them all.
    public mutating func popAvailable(_ memory: GuestMemory) throws(VirtqueueError) -> DescriptorChain? {
        let available = try availableIndex(memory)
        guard available != nextAvailable else { return nil }
        guard available &- nextAvailable <= layout.size else {
            throw .availableIndexTooFarAhead(available: available, seen: nextAvailable, size: layout.size)
        }
        // The size is a power of two, so the free-running index wraps onto the ring exactly.
        let slot = UInt64(nextAvailable % layout.size)
        let head = try load16(memory, layout.availableRing, 4 + 2 * slot)
        let chain = try walkChain(memory, head: head)
        nextAvailable &+= 1
        return chain
    }

    /// Reads descriptor `index` of the table at `table` holding `count` descriptors.
    private func descriptor(_ memory: GuestMemory, table: UInt64, count: UInt32, index: UInt16)
        throws(VirtqueueError) -> (address: UInt64, length: UInt32, flags: UInt16, next: UInt16)
    {
        guard UInt32(index) < count else { throw .descriptorIndexOutOfRange(index: index, tableSize: count) }
        guard let entry = GuestPhysicalAddress(table).advanced(by: 16 * UInt64(index)),
              let lengthAt = entry.advanced(by: 8), let flagsAt = entry.advanced(by: 12), let nextAt = entry.advanced(by: 14)
        else { throw .bufferOutsideRAM(address: table, length: 16 * UInt64(count)) }
        do {
            return (try memory.load(UInt64.self, at: entry), try memory.load(UInt32.self, at: lengthAt),
                    try memory.load(UInt16.self, at: flagsAt), try memory.load(UInt16.self, at: nextAt))
        } catch {
            throw .bufferOutsideRAM(address: entry.rawValue, length: 16)
        }
    }

    /// Follows the chain starting at descriptor `head`, checking every descriptor.
    func walkChain(_ memory: GuestMemory, head: UInt16) throws(VirtqueueError) -> DescriptorChain {
        var chain = DescriptorChain(head: head)
        var table = layout.descriptorTable
        var tableCount = UInt32(layout.size)
        var visited = [Bool](repeating: false, count: Int(tableCount))
        var inIndirect = false
        var total = 0
        var index = head
        while true {
            let d = try descriptor(memory, table: table, count: tableCount, index: index)
            guard !visited[Int(index)] else { throw .loop(index: index) }
            visited[Int(index)] = true
            if d.flags & Self.descriptorIndirect != 0 {
                guard indirectDescriptors else { throw .badIndirectTable("VIRTIO_F_INDIRECT_DESC was not negotiated") }
                guard !inIndirect else { throw .badIndirectTable("an indirect descriptor inside an indirect table") }
                guard d.flags & Self.descriptorNext == 0 else {
                    throw .badIndirectTable("an indirect descriptor with VIRTQ_DESC_F_NEXT set")
                }
                guard d.length > 0, d.length % 16 == 0 else {
                    throw .badIndirectTable("its length \(d.length) is not a non-zero multiple of 16")
                }
                guard memory.contains(GuestPhysicalAddress(d.address), length: UInt64(d.length)) else {
                    throw .bufferOutsideRAM(address: d.address, length: UInt64(d.length))
                }
                guard d.length / 16 <= UInt32(layout.size) else { throw .chainTooLong(limit: layout.size) }
                inIndirect = true
                table = d.address
                tableCount = d.length / 16
                visited = [Bool](repeating: false, count: Int(tableCount))
                index = 0
                continue
            }
            total += 1
            guard total <= Int(layout.size) else { throw .chainTooLong(limit: layout.size) }
            let buffer = VirtqueueBuffer(address: GuestPhysicalAddress(d.address), length: d.length)
            guard memory.contains(buffer.address, length: UInt64(d.length)) else {
                throw .bufferOutsideRAM(address: d.address, length: UInt64(d.length))
            }
            if d.flags & Self.descriptorWrite != 0 {
                if d.length > 0 { chain.writable.append(buffer) }
            } else {
                guard chain.writable.isEmpty else { throw .readableAfterWritable(index: index) }
                if d.length > 0 { chain.readable.append(buffer) }
            }
            guard d.flags & Self.descriptorNext != 0 else { return chain }
            index = d.next
        }
    }

    /// Puts a finished chain on the used ring: its head and the bytes the device wrote into it.
    /// Publishes the new used index after the entry (the guest reads them in that order).
    public mutating func pushUsed(_ memory: GuestMemory, head: UInt16, writtenLength: UInt32) throws(VirtqueueError) {
        let slot = UInt64(nextUsed % layout.size)
        try store(UInt32(head), memory, layout.usedRing, 4 + 8 * slot)
        try store(writtenLength, memory, layout.usedRing, 8 + 8 * slot)
        nextUsed &+= 1
        try store(nextUsed, memory, layout.usedRing, 2)
    }

    /// Whether the driver wants an interrupt now that the used index went from `oldUsed` to
    /// `nextUsed`: with EVENT_IDX, when the used index passed its used_event (§2.7.10);
    /// without, unless it set VIRTQ_AVAIL_F_NO_INTERRUPT.
    public func needsInterrupt(_ memory: GuestMemory, since oldUsed: UInt16) throws(VirtqueueError) -> Bool {
        guard nextUsed != oldUsed else { return false }
        if eventIndex {
            let usedEvent = try load16(memory, layout.availableRing, 4 + 2 * UInt64(layout.size))
            return Self.needsEvent(eventIndex: usedEvent, new: nextUsed, old: oldUsed)
        }
        return try load16(memory, layout.availableRing, 0) & Self.availableNoInterrupt == 0
    }

    /// Asks the driver to notify once it makes buffer `nextAvailable` available: with
    /// EVENT_IDX, avail_event in the used ring; without, VIRTQ_USED_F_NO_NOTIFY cleared. The
    /// caller fences before it looks at the available index again (`hasAvailable`), or a buffer
    /// the driver added meanwhile, having read the old setting, goes unnoticed.
    public func enableNotifications(_ memory: GuestMemory) throws(VirtqueueError) {
        if eventIndex {
            try store(nextAvailable, memory, layout.usedRing, 4 + 8 * UInt64(layout.size))
        } else {
            try store(UInt16(0), memory, layout.usedRing, 0)
        }
    }

    /// Asks the driver not to notify of new buffers, while the device polls the available ring
    /// (§2.7.10): with EVENT_IDX, avail_event one behind `nextAvailable`, an index the driver
    /// has already passed, so no new available index crosses it; without, VIRTQ_USED_F_NO_NOTIFY.
    /// Only a hint: a driver may notify anyway, which costs an exit and nothing else.
    public func suppressNotifications(_ memory: GuestMemory) throws(VirtqueueError) {
        if eventIndex {
            try store(nextAvailable &- 1, memory, layout.usedRing, 4 + 8 * UInt64(layout.size))
        } else {
            try store(Self.usedNoNotify, memory, layout.usedRing, 0)
        }
    }

    /// The event-index test of §2.7.10: did the index move from `old` to `new` past `eventIndex`?
    /// All in free-running 16-bit arithmetic.
    public static func needsEvent(eventIndex: UInt16, new: UInt16, old: UInt16) -> Bool {
        new &- eventIndex &- 1 < new &- old
    }
}
