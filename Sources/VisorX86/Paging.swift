// The page walk: linear → physical under 32-bit, PAE and 4-level (IA-32e) paging, with the
// SDM's access rights (Vol. 3A, ch. 4): U/S, R/W with CR0.WP, NX with EFER.NXE, reserved
// bits, accessed and dirty bits, and page-fault error codes.
//
// MAXPHYADDR is 40 (CPUID 0x8000_0008 reports 40 physical / 48 linear bits): entry bits 51:40
// are reserved and fault with RSVD. Paging-structure entries are read from guest RAM only; an
// entry outside RAM reads as all ones (as unbacked physical memory does on this platform), which
// in PAE and 4-level paging has reserved bits set, so a page table pointing outside RAM gives a
// clean #PF with RSVD, never a host trap. Accessed bits are set on every non-leaf entry the walk
// uses; the leaf's A (and D for writes) only when the access is allowed; both with an atomic OR,
// so other vCPUs' changes to the entry survive. PAE PDPTEs are read at walk time rather than
// cached at MOV CR3, and a reserved PDPTE bit gives #PF(RSVD) rather than #GP at the MOV CR3
// (documented simplification). No SMEP, SMAP, PKE, LA57 or PCID (CPUID offers
// none of them).

import CX86Atomics
import VisorCore

extension X86Machine {
    /// Physical address bits this CPU implements.
    public static let maxPhysicalAddressBits: UInt64 = 40
    /// Bits 51:MAXPHYADDR of a paging entry: reserved.
    static let reservedPhysicalBits: UInt64 = ((1 << 52) - 1) & ~((1 << maxPhysicalAddressBits) - 1)
    /// The frame address bits of a 64-bit paging entry (MAXPHYADDR-1:12).
    static let entryFrameMask: UInt64 = ((1 << maxPhysicalAddressBits) - 1) & ~0xfff
    static let entryNoExecute: UInt64 = 1 << 63

    /// True when CR0.PG is set.
    @inline(__always)
    public var pagingEnabled: Bool { cpu.cr0 & X86.cr0Paging != 0 }

    /// Whether an access of `kind` by a user (CPL 3, not implicit supervisor) or supervisor
    /// access is allowed on a page with combined `rights` (`X86TLB.writable` ...).
    @inline(__always)
    func pageAccessAllowed(_ rights: UInt8, _ kind: AccessKind, user: Bool) -> Bool {
        if user && rights & X86TLB.user == 0 { return false }
        switch kind {
        case .read: return true
        case .write:
            return rights & X86TLB.writable != 0 || (!user && cpu.cr0 & X86.cr0WriteProtect == 0)
        case .execute: return rights & X86TLB.noExecute == 0
        }
    }

    /// The page-fault error code bits an access contributes (W/R, U/S, I/D).
    func pageFaultAccessBits(_ kind: AccessKind, user: Bool) -> UInt32 {
        var code: UInt32 = 0
        if kind == .write { code |= X86Fault.pfWrite }
        if user { code |= X86Fault.pfUser }
        // I/D is reported only when PAE or 4-level paging runs with NXE (there is no SMEP).
        if kind == .execute && cpu.cr4 & X86.cr4PAE != 0 && cpu.efer & X86.eferNXE != 0 {
            code |= X86Fault.pfInstructionFetch
        }
        return code
    }

    /// A paging-structure entry: guest RAM, or all ones outside it.
    @inline(__always)
    func loadPagingEntry(_ address: UInt64, wide: Bool) -> UInt64 {
        let a = GuestPhysicalAddress(address)
        if wide {
            return (try? memory.load(UInt64.self, at: a)) ?? .max
        }
        return (try? memory.load(UInt32.self, at: a)).map(UInt64.init) ?? 0xffff_ffff
    }

    /// Sets `bits` (accessed, dirty) in a paging entry with an atomic OR, as the hardware walker
    /// does with locked cycles, so another vCPU's concurrent change to the entry is never
    /// overwritten (RAM only; code pages are invalidated). Entries are naturally aligned.
    func setPagingEntryBits(_ address: UInt64, _ bits: UInt64, wide: Bool) {
        guard bits != 0, address & (wide ? 7 : 3) == 0,
              let p = shared.hostPointer(address, length: wide ? 8 : 4) else { return }
        // SAFETY: `p` is guest RAM (checked by hostPointer) and aligned for the width (checked
        // above; guest-physical alignment equals host alignment).
        if wide {
            _ = cx86_fetch_or64(p, bits)
        } else {
            _ = cx86_fetch_or32(p, UInt32(truncatingIfNeeded: bits))
        }
        noteStore(address, size: wide ? 8 : 4)
    }

    /// Walks the paging structures for `linear` and fills the TLB; raises #PF when the
    /// translation is missing, malformed or forbids the access.
    func walk(_ linear: UInt64, _ kind: AccessKind, user: Bool) throws(X86Interruption) -> UInt64 {
        let accessBits = pageFaultAccessBits(kind, user: user)
        let nxe = cpu.efer & X86.eferNXE != 0
        var rights: UInt8 = X86TLB.writable | X86TLB.user
        let accessed: UInt64 = 1 << 5, dirty: UInt64 = 1 << 6, pageSizeBit: UInt64 = 1 << 7, globalBit: UInt64 = 1 << 8

        func notPresent() -> X86Interruption { .fault(.pf(accessBits, address: linear)) }
        func reserved() -> X86Interruption {
            .fault(.pf(accessBits | X86Fault.pfPresent | X86Fault.pfReservedBit, address: linear))
        }
        func combine(_ entry: UInt64) {
            if entry & 2 == 0 { rights &= ~X86TLB.writable }
            if entry & 4 == 0 { rights &= ~X86TLB.user }
            if nxe && entry & Self.entryNoExecute != 0 { rights |= X86TLB.noExecute }
        }
        /// Checks rights, sets A/D on the leaf, fills the TLB, and returns the physical address.
        func finish(leafAddress: UInt64, leaf: UInt64, frame: UInt64, pageSize: UInt64,
                    wide: Bool) throws(X86Interruption) -> UInt64 {
            guard pageAccessAllowed(rights, kind, user: user) else {
                throw .fault(.pf(accessBits | X86Fault.pfPresent, address: linear))
            }
            var updated = leaf | accessed
            if kind == .write { updated |= dirty }
            if updated != leaf { setPagingEntryBits(leafAddress, updated & ~leaf, wide: wide) }
            let physical = frame | (linear & (pageSize - 1))
            var r = rights
            if updated & dirty != 0 { r |= X86TLB.dirty }
            if leaf & globalBit != 0 && cpu.cr4 & X86SystemBits.cr4PGE != 0 { r |= X86TLB.global }
            tlb.insert(linear: linear, frame: physical & ~0xfff, rights: r, largePage: pageSize > 4096)
            return physical
        }

        if cpu.cr4 & X86.cr4PAE == 0 {
            // 32-bit paging: two levels of 4-byte entries; 4 MiB pages with CR4.PSE.
            let l = linear & 0xffff_ffff
            let pdeAddress = (cpu.cr3 & 0xffff_f000) + ((l >> 22) << 2)
            let pde = loadPagingEntry(pdeAddress, wide: false)
            guard pde & 1 != 0 else { throw notPresent() }
            combine(pde)
            if pde & pageSizeBit != 0 && cpu.cr4 & X86SystemBits.cr4PSE != 0 {
                // No PSE-36: bits 21:13 are reserved.
                guard pde & 0x003f_e000 == 0 else { throw reserved() }
                return try finish(leafAddress: pdeAddress, leaf: pde, frame: pde & 0xffc0_0000,
                                  pageSize: 1 << 22, wide: false)
            }
            if pde & accessed == 0 { setPagingEntryBits(pdeAddress, accessed, wide: false) }
            let pteAddress = (pde & 0xffff_f000) + (((l >> 12) & 0x3ff) << 2)
            let pte = loadPagingEntry(pteAddress, wide: false)
            guard pte & 1 != 0 else { throw notPresent() }
            combine(pte)
            return try finish(leafAddress: pteAddress, leaf: pte, frame: pte & 0xffff_f000, pageSize: 4096,
                              wide: false)
        }

        let reservedCommon = Self.reservedPhysicalBits | (nxe ? 0 : Self.entryNoExecute)
        var table: UInt64
        var level: Int
        if cpu.efer & X86.eferLMA != 0 {
            table = cpu.cr3 & Self.entryFrameMask
            level = 4
        } else {
            // PAE: a 4-entry PDPT at CR3[31:5]; PDPTEs have no R/W, U/S, A or NX.
            let l = linear & 0xffff_ffff
            let pdpteAddress = (cpu.cr3 & 0xffff_ffe0) + ((l >> 30) << 3)
            let pdpte = loadPagingEntry(pdpteAddress, wide: true)
            guard pdpte & 1 != 0 else { throw notPresent() }
            guard pdpte & (Self.reservedPhysicalBits | Self.entryNoExecute | 0x1e6) == 0 else { throw reserved() }
            table = pdpte & Self.entryFrameMask
            level = 2
        }
        while true {
            let shift = UInt64(12 + 9 * (level - 1))
            let entryAddress = table + (((linear >> shift) & 0x1ff) << 3)
            let entry = loadPagingEntry(entryAddress, wide: true)
            guard entry & 1 != 0 else { throw notPresent() }
            var reservedBits = reservedCommon
            let large = entry & pageSizeBit != 0
            switch level {
            case 4: reservedBits |= pageSizeBit
            case 3 where large: reservedBits |= 0x3fff_e000  // bits 29:13
            case 2 where large: reservedBits |= 0x001f_e000  // bits 20:13
            default: break
            }
            guard entry & reservedBits == 0 else { throw reserved() }
            combine(entry)
            if level == 1 || ((level == 2 || level == 3) && large) {
                let pageSize: UInt64 = 1 << shift
                return try finish(leafAddress: entryAddress, leaf: entry,
                                  frame: entry & Self.entryFrameMask & ~(pageSize - 1), pageSize: pageSize,
                                  wide: true)
            }
            if entry & accessed == 0 { setPagingEntryBits(entryAddress, accessed, wide: true) }
            table = entry & Self.entryFrameMask
            level -= 1
        }
    }
}
