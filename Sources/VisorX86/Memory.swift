// Guest memory as the software CPU sees it: linear addresses through paging (when on, see
// `Paging.swift` and `TLB.swift`) to physical addresses, then RAM or MMIO.
//
// Accesses are user accesses when CPL = 3, except the implicit supervisor accesses the CPU
// makes to system structures (GDT, LDT, IDT, TSS, the stacks of exception delivery), which
// pass `user: false`. Every store to RAM tells the decode cache, so code written by the guest
// (through any mapping) is decoded again, by this vCPU at once and by the others at their next
// serializing point (`SMP.swift`).

import VisorCore

extension X86Machine {
    /// Translates a linear address for an access of `kind` at the current privilege (user when
    /// CPL = 3); raises #PF when paging forbids it.
    @inline(__always)
    public func translate(_ linear: UInt64, _ kind: AccessKind) throws(X86Interruption) -> UInt64 {
        try translate(linear, kind, user: cpu.cpl == 3)
    }

    /// Checks that every page of the `length` bytes at `linear` may be written (raising the #PF a
    /// write would), before an instruction that stores a multi-page image (FXSAVE, FNSAVE,
    /// FNSTENV) writes any of it. Walks by offset, so a range that wraps the address space ends
    /// after its own pages: stepping an address by 4 KiB until it passed the end ran through all
    /// 2^52 pages when the end lay just below 2^64 and the step wrapped to 0 (found by fuzzing).
    func probeWritable(_ linear: UInt64, length: Int) throws(X86Interruption) {
        var offset = 0
        while offset < length {
            let address = linear &+ UInt64(offset)
            _ = try translate(address, .write)
            offset += 0x1000 - Int(address & 0xfff)
        }
    }

    /// Translates a linear address for a user (`user: true`) or supervisor access of `kind`.
    @inline(__always)
    public func translate(_ linear: UInt64, _ kind: AccessKind, user: Bool) throws(X86Interruption) -> UInt64 {
        guard cpu.cr0 & X86.cr0Paging != 0 else { return linear }
        if let hit = tlb.lookup(linear), tlbEntrySuffices(hit.rights, kind, user: user) {
            return hit.frame | (linear & 0xfff)
        }
        return try walk(linear, kind, user: user)
    }

    /// True when a TLB entry with `rights` lets an access of `kind` through without a walk: the
    /// rights allow it, and a write finds the dirty bit already set (else the walk sets it).
    @inline(__always)
    func tlbEntrySuffices(_ rights: UInt8, _ kind: AccessKind, user: Bool) -> Bool {
        pageAccessAllowed(rights, kind, user: user) && (kind != .write || rights & X86TLB.dirty != 0)
    }

    /// Reads `size` (1, 2, 4 or 8) bytes at a physical address: RAM, or MMIO through the bus.
    public func readPhysical(_ address: UInt64, size: Int) throws(X86Interruption) -> UInt64 {
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
            return try bus.mmioRead(address: address, size: UInt8(size))
        } catch {
            throw .stop(error)
        }
    }

    /// Writes the low `size` bytes of `value` at a physical address: RAM, or MMIO.
    public func writePhysical(_ address: UInt64, size: Int, value: UInt64) throws(X86Interruption) {
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
            noteStore(address, size: size)
            return
        }
        bus.mmioWrite(address: address, size: UInt8(size), value: value)
    }

    /// Reads `size` bytes (1, 2, 4, 8) at a linear address. Accesses that cross a page are split.
    /// `user` overrides the privilege of the access (nil: user when CPL = 3).
    public func readLinear(_ linear: UInt64, size: Int, _ kind: AccessKind = .read,
                           user: Bool? = nil) throws(X86Interruption) -> UInt64 {
        let asUser = user ?? (cpu.cpl == 3)
        watchData(linear, size: size, write: false)
        let offset = Int(linear & 0xfff)
        if offset + size <= 4096 {
            return try readPhysical(try translate(linear, kind, user: asUser), size: size)
        }
        var value: UInt64 = 0
        for i in 0..<size {
            let byte = try readPhysical(try translate(linear &+ UInt64(i), kind, user: asUser), size: 1)
            value |= byte << (8 * UInt64(i))
        }
        return value
    }

    /// Writes `size` bytes (1, 2, 4, 8) at a linear address. A write that crosses a page checks
    /// both pages before writing either, so a fault leaves memory unchanged.
    /// `user` overrides the privilege of the access (nil: user when CPL = 3).
    public func writeLinear(_ linear: UInt64, size: Int, value: UInt64, user: Bool? = nil) throws(X86Interruption) {
        let asUser = user ?? (cpu.cpl == 3)
        watchData(linear, size: size, write: true)
        let offset = Int(linear & 0xfff)
        if offset + size <= 4096 {
            try writePhysical(try translate(linear, .write, user: asUser), size: size, value: value)
            return
        }
        let first = try translate(linear, .write, user: asUser)
        let second = try translate((linear | 0xfff) &+ 1, .write, user: asUser)
        let firstCount = 4096 - offset
        for i in 0..<size {
            let physical = i < firstCount ? first &+ UInt64(i) : second &+ UInt64(i - firstCount)
            try writePhysical(physical, size: 1, value: value >> (8 * UInt64(i)))
        }
    }

    // MARK: System-structure accesses

    /// Reads `size` bytes of a system structure (descriptor tables, TSS) at a linear address, as
    /// a supervisor access. Physical memory outside RAM reads as all ones and never exits.
    public func readSystem(_ linear: UInt64, size: Int) throws(X86Interruption) -> UInt64 {
        var value: UInt64 = 0
        for i in 0..<size {
            let address = linear &+ UInt64(i)
            let l = cpu.longModeActive ? address : address & 0xffff_ffff
            let physical = try translate(l, .read, user: false)
            let byte = (try? memory.load(UInt8.self, at: GuestPhysicalAddress(physical))) ?? 0xff
            value |= UInt64(byte) << (8 * UInt64(i))
        }
        return value
    }

    /// Writes a system structure (accessed and busy bits) as a supervisor access; outside RAM the
    /// write is dropped.
    public func writeSystem(_ linear: UInt64, size: Int, value: UInt64) throws(X86Interruption) {
        for i in 0..<size {
            let address = linear &+ UInt64(i)
            let l = cpu.longModeActive ? address : address & 0xffff_ffff
            let physical = try translate(l, .write, user: false)
            if (try? memory.store(UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))),
                                           at: GuestPhysicalAddress(physical))) != nil {
                noteStore(physical, size: 1)
            }
        }
    }
}
