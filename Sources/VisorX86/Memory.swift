// Guest memory as the software CPU sees it: linear addresses through paging (when on) to
// physical addresses, then RAM or MMIO. (Paging, TLB and access checks are being filled in:
// for now linear == physical.)

import VisorCore

extension X86Machine {
    /// Translates a linear address for an access of `kind`; raises #PF when paging forbids it.
    public func translate(_ linear: UInt64, _ kind: AccessKind) throws(X86Interruption) -> UInt64 {
        linear
    }

    /// Reads `size` (1, 2, 4 or 8) bytes at a physical address: RAM, or MMIO through the platform.
    public func readPhysical(_ address: UInt64, size: Int) throws(X86Interruption) -> UInt64 {
        let memory = platform.memory
        let a = GuestPhysicalAddress(address)
        if memory.contains(a, length: UInt64(size)) {
            do {
                switch size {
                case 1: return UInt64(try memory.load(UInt8.self, at: a))
                case 2: return UInt64(try memory.load(UInt16.self, at: a))
                case 4: return UInt64(try memory.load(UInt32.self, at: a))
                default: return try memory.load(UInt64.self, at: a)
                }
            } catch {
                throw .fault(.gp())
            }
        }
        do {
            return try platform.mmioRead(address: address, size: UInt8(size))
        } catch {
            throw .stop(error)
        }
    }

    /// Writes the low `size` bytes of `value` at a physical address: RAM, or MMIO.
    public func writePhysical(_ address: UInt64, size: Int, value: UInt64) throws(X86Interruption) {
        let memory = platform.memory
        let a = GuestPhysicalAddress(address)
        if memory.contains(a, length: UInt64(size)) {
            do {
                switch size {
                case 1: try memory.store(UInt8(truncatingIfNeeded: value), at: a)
                case 2: try memory.store(UInt16(truncatingIfNeeded: value), at: a)
                case 4: try memory.store(UInt32(truncatingIfNeeded: value), at: a)
                default: try memory.store(value, at: a)
                }
            } catch {
                throw .fault(.gp())
            }
            return
        }
        platform.mmioWrite(address: address, size: UInt8(size), value: value)
    }

    /// Reads `size` bytes (1, 2, 4, 8) at a linear address. Accesses that cross a page are split.
    public func readLinear(_ linear: UInt64, size: Int, _ kind: AccessKind = .read) throws(X86Interruption) -> UInt64 {
        let offset = Int(linear & 0xfff)
        if offset + size <= 4096 {
            return try readPhysical(try translate(linear, kind), size: size)
        }
        var value: UInt64 = 0
        for i in 0..<size {
            let byte = try readPhysical(try translate(linear &+ UInt64(i), kind), size: 1)
            value |= byte << (8 * UInt64(i))
        }
        return value
    }

    /// Writes `size` bytes (1, 2, 4, 8) at a linear address. A write that crosses a page checks
    /// both pages before writing either, so a fault leaves memory unchanged.
    public func writeLinear(_ linear: UInt64, size: Int, value: UInt64) throws(X86Interruption) {
        let offset = Int(linear & 0xfff)
        if offset + size <= 4096 {
            try writePhysical(try translate(linear, .write), size: size, value: value)
            return
        }
        let first = try translate(linear, .write)
        let second = try translate((linear | 0xfff) &+ 1, .write)
        let firstCount = 4096 - offset
        for i in 0..<size {
            let physical = i < firstCount ? first &+ UInt64(i) : second &+ UInt64(i - firstCount)
            try writePhysical(physical, size: 1, value: value >> (8 * UInt64(i)))
        }
    }
}
