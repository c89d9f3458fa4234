// Guest RAM: one host allocation laid out as the guest's physical memory, with bounds-checked access.
//
// Layout, as on a PC: RAM fills guest-physical [0, lowMemoryLimit); what does not fit below the
// 32-bit device hole continues at 4 GiB. Every access by guest-controlled address goes through
// `hostOffset(of:length:)`, which rejects anything outside RAM or straddling the hole.

#if canImport(Glibc)
import Glibc
#endif

/// What went wrong with a guest-memory access or allocation.
public enum GuestMemoryError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The range is not entirely inside guest RAM.
    case outOfBounds(address: UInt64, length: UInt64)
    /// The requested RAM size is zero, not a multiple of 4 KiB, or larger than Visor supports.
    case invalidSize(UInt64)
    /// The host refused to allocate the memory.
    case allocationFailed(size: UInt64, errno: Int32)

    public var description: String {
        switch self {
        case .outOfBounds(let address, let length):
            return "guest memory access of \(length) bytes at 0x\(String(address, radix: 16)) is outside guest RAM"
        case .invalidSize(let size):
            return "guest RAM size \(size) bytes is invalid: it must be a non-zero multiple of 4 KiB, at most \(GuestMemory.maximumSize >> 30) GiB"
        case .allocationFailed(let size, let errno):
            return "could not allocate \(size >> 20) MiB of guest RAM (errno \(errno))"
        }
    }
}

/// The guest's physical RAM.
///
/// Sendable because the bytes are shared with the guest by design: vCPUs (hardware or software)
/// and device models read and write them concurrently, as real RAM is shared between CPUs and DMA.
/// The object itself never changes after creation.
public final class GuestMemory: @unchecked Sendable {
    /// Page size of the guest's physical memory.
    public static let pageSize: UInt64 = 4096
    /// RAM below this address is mapped 1:1; the rest starts at `highMemoryStart` (the PCI hole).
    public static let lowMemoryLimit: UInt64 = 0xC000_0000  // 3 GiB
    /// Where RAM that does not fit below the hole continues.
    public static let highMemoryStart: UInt64 = 0x1_0000_0000  // 4 GiB
    /// The largest RAM Visor hands to one domain.
    public static let maximumSize: UInt64 = 64 << 30  // 64 GiB

    /// Total RAM in bytes.
    public let size: UInt64
    // SAFETY: `base` is a private anonymous mapping of exactly `size` bytes owned by this
    // object, unmapped only in deinit. Offsets into it are validated by `hostOffset`.
    // Visible to inlinable code only so the accessors below inline into other modules (the
    // software CPU's memory path); nothing outside this file touches it.
    @usableFromInline let base: UnsafeMutableRawPointer

    /// Allocates `size` bytes of zeroed RAM. Pages are committed lazily by the host.
    public init(size: UInt64) throws(GuestMemoryError) {
        guard size > 0, size % Self.pageSize == 0, size <= Self.maximumSize else {
            throw .invalidSize(size)
        }
        let mapped = mmap(nil, Int(size), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let mapped, mapped != MAP_FAILED else {
            throw .allocationFailed(size: size, errno: errno)
        }
        self.size = size
        self.base = mapped
    }

    deinit {
        munmap(base, Int(size))
    }

    /// The host addresses of the allocation, for measuring what of it is resident
    /// (`visor bench lifecycle` reads /proc/self/smaps); never dereferenced through this.
    package var hostAddresses: Range<UInt> {
        let start = UInt(bitPattern: base)
        return start ..< start + UInt(size)
    }

    /// One contiguous piece of guest RAM and where it lives in the host allocation.
    public struct Region: Sendable, Equatable {
        public var guestStart: GuestPhysicalAddress
        public var size: UInt64
        /// Offset of the region's first byte within the host allocation.
        public var hostOffset: UInt64
        public var guestEnd: UInt64 { guestStart.rawValue + size }
    }

    /// The RAM regions, lowest first: one below the 32-bit hole and, for large guests, one above 4 GiB.
    public var regions: [Region] {
        let low = min(size, Self.lowMemoryLimit)
        var result = [Region(guestStart: GuestPhysicalAddress(0), size: low, hostOffset: 0)]
        if size > low {
            result.append(Region(guestStart: GuestPhysicalAddress(Self.highMemoryStart), size: size - low, hostOffset: low))
        }
        return result
    }

    /// The host-side offset of `[address, address + length)`, or nil if any byte of it is not RAM.
    /// Overflow-safe for every input.
    @inlinable @inline(__always)
    public func hostOffset(of address: GuestPhysicalAddress, length: UInt64) -> UInt64? {
        let start = address.rawValue
        let (end, overflow) = start.addingReportingOverflow(length)
        guard !overflow else { return nil }
        let low = min(size, Self.lowMemoryLimit)
        if end <= low { return start }
        if start >= Self.highMemoryStart {
            let offset = start - Self.highMemoryStart
            let highSize = size - low
            guard offset <= highSize, length <= highSize - offset else { return nil }
            return low + offset
        }
        return nil
    }

    /// True when every byte of the range is guest RAM.
    public func contains(_ address: GuestPhysicalAddress, length: UInt64) -> Bool {
        hostOffset(of: address, length: length) != nil
    }

    @inlinable @inline(__always)
    func checkedOffset(_ address: GuestPhysicalAddress, _ length: UInt64) throws(GuestMemoryError) -> Int {
        guard let offset = hostOffset(of: address, length: length) else {
            throw .outOfBounds(address: address.rawValue, length: length)
        }
        return Int(offset)
    }

    /// Copies `count` bytes out of guest RAM.
    public func read(at address: GuestPhysicalAddress, count: Int) throws(GuestMemoryError) -> [UInt8] {
        guard count >= 0 else { throw .outOfBounds(address: address.rawValue, length: UInt64.max) }
        let offset = try checkedOffset(address, UInt64(count))
        return [UInt8](UnsafeRawBufferPointer(start: base + offset, count: count))
    }

    /// Copies bytes into guest RAM.
    public func write(_ bytes: some Collection<UInt8>, at address: GuestPhysicalAddress) throws(GuestMemoryError) {
        let offset = try checkedOffset(address, UInt64(bytes.count))
        let destination = UnsafeMutableRawBufferPointer(start: base + offset, count: bytes.count)
        destination.copyBytes(from: bytes)
    }

    /// Sets `count` bytes to `value`.
    public func fill(_ value: UInt8, at address: GuestPhysicalAddress, count: UInt64) throws(GuestMemoryError) {
        let offset = try checkedOffset(address, count)
        memset(base + offset, Int32(value), Int(count))
    }

    /// Reads a little-endian integer; the address need not be aligned.
    @inlinable
    public func load<T: FixedWidthInteger>(_ type: T.Type, at address: GuestPhysicalAddress) throws(GuestMemoryError) -> T {
        let offset = try checkedOffset(address, UInt64(MemoryLayout<T>.size))
        return T(littleEndian: (base + offset).loadUnaligned(as: T.self))
    }

    /// Writes a little-endian integer; the address need not be aligned.
    @inlinable
    public func store<T: FixedWidthInteger>(_ value: T, at address: GuestPhysicalAddress) throws(GuestMemoryError) {
        let offset = try checkedOffset(address, UInt64(MemoryLayout<T>.size))
        (base + offset).storeBytes(of: value.littleEndian, as: T.self)
    }

    /// The host virtual address of a region's first byte, for engines that hand RAM to a
    /// hardware VM (`KVM_SET_USER_MEMORY_REGION`). The pointer stays valid while `self` lives.
    public func hostAddress(of region: Region) -> UInt64 {
        UInt64(UInt(bitPattern: base)) + region.hostOffset
    }
}
