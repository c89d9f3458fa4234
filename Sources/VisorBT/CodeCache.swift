// The code cache: host memory that translated blocks are copied into and run from. W^X: no
// page is ever writable and executable at once. The region is reserved whole at creation
// (inaccessible); installing a block makes just the pages it touches writable, copies it, and
// makes them executable (and not writable) again before anything can run from them. Each vCPU
// has its own cache, so no page changes rights while another thread runs from it.
//
// Bounded: when a block does not fit, the owner drops every translation and starts over
// (`reset`), as QEMU's TCG does when its buffer fills.

#if canImport(Glibc)
import Glibc
#endif

/// Why a code cache could not be made.
public struct CodeCacheError: Error, CustomStringConvertible {
    public let description: String
}

/// A bounded region of executable host memory holding translated code.
final class CodeCache {
    /// Bytes reserved.
    let capacity: Int
    /// Bytes holding code (blocks are 16-byte aligned).
    private(set) var used = 0
    /// Times the cache was emptied to make room.
    private(set) var resets = 0
    // SAFETY: `base` is a `capacity`-byte mapping owned by this object (unmapped in deinit);
    // writes go only to `[base + used, base + used + count)`, checked against `capacity`.
    private let base: UnsafeMutableRawPointer
    private static let pageSize = 4096

    init(capacity: Int) throws {
        let rounded = (max(capacity, Self.pageSize) + Self.pageSize - 1) / Self.pageSize * Self.pageSize
        let p = mmap(nil, rounded, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let p, p != MAP_FAILED else {
            throw CodeCacheError(description: "cannot reserve \(rounded) bytes for translated code: \(String(cString: strerror(errno)))")
        }
        base = p
        self.capacity = rounded
    }

    deinit { munmap(base, capacity) }

    /// Copies `code` in and returns where it can be run from, or nil when it does not fit (or
    /// the host refused to change a page's rights). `patches` (rel32 rewrites of installed
    /// code, as for `patch`) close below the new code are made in the same W^X window: each
    /// window costs two mprotect calls, most of the translation time when there were several.
    func install(_ code: [UInt8], patches: [(address: UnsafeRawPointer, rel32: Int32)] = []) -> UnsafeRawPointer? {
        let start = (used + 15) & ~15
        guard !code.isEmpty, start + code.count <= capacity else { return nil }
        var firstPage = start / Self.pageSize * Self.pageSize
        var far: [(address: UnsafeRawPointer, rel32: Int32)] = []
        var near: [(offset: Int, rel32: Int32)] = []
        for p in patches {
            guard contains(p.address), contains(p.address + 3) else { continue }
            let offset = p.address - UnsafeRawPointer(base)
            if offset + 4 <= start && start - offset <= Self.nearPatchBytes {
                near.append((offset, p.rel32))
                firstPage = min(firstPage, offset / Self.pageSize * Self.pageSize)
            } else {
                far.append(p)
            }
        }
        let end = start + code.count
        let length = (end + Self.pageSize - 1) / Self.pageSize * Self.pageSize - firstPage
        guard mprotect(base + firstPage, length, PROT_READ | PROT_WRITE) == 0 else { return nil }
        code.withUnsafeBytes { bytes in
            if let source = bytes.baseAddress { (base + start).copyMemory(from: source, byteCount: code.count) }
        }
        for p in near { (base + p.offset).storeBytes(of: p.rel32.littleEndian, as: Int32.self) }
        guard mprotect(base + firstPage, length, PROT_READ | PROT_EXEC) == 0 else { return nil }
        used = end
        guard patch(far) else { return nil }
        return UnsafeRawPointer(base + start)
    }

    /// How far below new code a patch may be to share its W^X window.
    static let nearPatchBytes = 64 << 10

    /// Where `install` would put `count` bytes now, or nil when they do not fit.
    func nextAddress(for count: Int) -> UnsafeRawPointer? {
        let start = (used + 15) & ~15
        guard count > 0, start + count <= capacity else { return nil }
        return UnsafeRawPointer(base + start)
    }

    /// Rewrites the 4 bytes at each address (branches' rel32 in installed code), making the
    /// pages they span writable (and not executable) for just that long, once for them all.
    /// False when the host refused or an address is not in the cache.
    func patch(_ patches: [(address: UnsafeRawPointer, rel32: Int32)]) -> Bool {
        guard !patches.isEmpty else { return true }
        var low = Int.max, high = 0
        for p in patches {
            guard contains(p.address), contains(p.address + 3) else { return false }
            let offset = p.address - UnsafeRawPointer(base)
            low = min(low, offset)
            high = max(high, offset + 4)
        }
        let firstPage = low / Self.pageSize * Self.pageSize
        let length = (high + Self.pageSize - 1) / Self.pageSize * Self.pageSize - firstPage
        guard mprotect(base + firstPage, length, PROT_READ | PROT_WRITE) == 0 else { return false }
        for p in patches {
            (base + (p.address - UnsafeRawPointer(base))).storeBytes(of: p.rel32.littleEndian, as: Int32.self)
        }
        return mprotect(base + firstPage, length, PROT_READ | PROT_EXEC) == 0
    }

    /// Bytes at the start that `reset` keeps (the trampolines).
    private var kept = 0

    /// Makes everything installed so far permanent: `reset` keeps it.
    func keepInstalled() { kept = (used + Self.pageSize - 1) / Self.pageSize * Self.pageSize }

    /// Forgets every block installed after `keepInstalled` (their addresses must not be run
    /// again) and makes their pages inaccessible, so a stale pointer faults instead of running
    /// garbage.
    func reset() {
        if used > kept { mprotect(base + kept, capacity - kept, PROT_NONE) }
        used = kept
        resets += 1
    }

    /// True while `address` lies in the region (tests).
    func contains(_ address: UnsafeRawPointer) -> Bool {
        address >= UnsafeRawPointer(base) && address < UnsafeRawPointer(base + capacity)
    }
}
