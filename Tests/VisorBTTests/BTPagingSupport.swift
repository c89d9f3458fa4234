// Paging for the bt harness: 4-level page tables in the test RAM identity-mapping its first
// 4 MiB with 4 KiB pages (each page's entry can then be made absent, read-only or pointed
// elsewhere), a GDT with the harness's selectors, and an IDT whose vector v enters a HLT at
// `handler + v`, so a delivered fault stops the machine with RIP naming the vector and its
// frame (error code included) on the stack.

import VisorCore
import VisorX86
@testable import VisorBT

extension BTHarness {
    static let pml4: UInt64 = 0x20_0000
    /// The page tables' entries for linear 0 ..< 4 MiB, one 8-byte entry per page, in order.
    static let pageTableEntries: UInt64 = 0x20_3000
    static let gdt: UInt64 = 0x21_0000
    static let idt: UInt64 = 0x21_1000
    /// Vector v's handler is a HLT at handler + v.
    static let handler: UInt64 = 0x3000

    /// Turns on 4-level paging (64-bit mode only) with CR0.WP set, and installs the GDT and IDT.
    func enablePaging() throws {
        let m = bus.memory
        func entry(_ address: UInt64, _ value: UInt64) throws { try m.write(btBytes(value, 8), at: GuestPhysicalAddress(address)) }
        try entry(Self.pml4, (Self.pml4 + 0x1000) | 3)
        try entry(Self.pml4 + 0x1000, (Self.pml4 + 0x2000) | 3)
        try entry(Self.pml4 + 0x2000, Self.pageTableEntries | 3)
        try entry(Self.pml4 + 0x2008, (Self.pageTableEntries + 0x1000) | 3)
        for page in 0..<UInt64(1024) { try entry(Self.pageTableEntries + page * 8, page << 12 | 3) }
        // GDT: null, 64-bit code (selector 8), data (selector 16).
        try entry(Self.gdt, 0)
        try entry(Self.gdt + 8, 0x00af_9a00_0000_ffff)
        try entry(Self.gdt + 16, 0x00cf_9200_0000_ffff)
        // IDT: 32 interrupt gates, selector 8.
        for v in 0..<UInt64(32) {
            let offset = Self.handler + v
            let low = (offset & 0xffff) | 8 << 16 | 0x8e << 40 | (offset >> 16 & 0xffff) << 48
            try entry(Self.idt + v * 16, low)
            try entry(Self.idt + v * 16 + 8, offset >> 32)
        }
        try m.fill(0xf4, at: GuestPhysicalAddress(Self.handler), count: 32)
        let cpu = machine.cpu
        cpu.gdtr = DescriptorTableRegister(base: Self.gdt, limit: 23)
        cpu.idtr = DescriptorTableRegister(base: Self.idt, limit: 32 * 16 - 1)
        cpu.cr4 = X86.cr4OSFXSR | X86.cr4PAE
        cpu.cr3 = Self.pml4
        cpu.cr0 = X86.cr0ProtectionEnable | X86.cr0ExtensionType | X86.cr0WriteProtect | X86.cr0Paging
        machine.resetCaches()
    }

    /// Sets linear page `linear`'s entry (below 4 MiB): mapped to `physical`, or absent, or
    /// read-only; global (G) with `global`; already dirty (D) with `dirty`.
    func mapPage(_ linear: UInt64, to physical: UInt64? = nil, present: Bool = true, writable: Bool = true,
                 global: Bool = false, dirty: Bool = false) throws {
        let value = present ? (physical ?? linear) & ~0xfff | 1 | (writable ? 2 : 0) | (global ? 0x100 : 0)
            | (dirty ? 0x40 : 0) : 0
        try bus.memory.write(btBytes(value, 8), at: GuestPhysicalAddress(Self.pageTableEntries + (linear >> 12) * 8))
        machine.resetCaches()
    }
}
