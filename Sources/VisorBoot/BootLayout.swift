// Where Visor puts its boot-time structures in guest-physical memory, and the value types that
// report where things landed.

import VisorCore

/// Fixed guest-physical addresses of the structures Visor writes before a kernel starts.
///
/// ```
/// 0x0000_0000 - 0x0000_0fff   untouched (real-mode IVT / BIOS data area; a kernel may load here)
/// 0x0000_1000 - 0x0000_1027   GDT (multiboot: 3 entries; long mode: 3 entries + 16-byte TSS descriptor)
/// 0x0000_1100 - 0x0000_1167   64-bit TSS (long mode only, 104 bytes, no I/O bitmap)
/// 0x0000_2000 - 0x0000_2fff   PML4 (long mode only)
/// 0x0000_3000 - 0x0000_3fff   PDPT (long mode only)
/// 0x0000_4000 - 0x0000_7fff   4 page directories of 2 MiB pages: identity map of [0, 4 GiB)
/// 0x0000_8000 - 0x0000_8fff   boot stack (grows down from 0x9000)
/// 0x0000_9000 - 0x0009_ffff   multiboot information: info structure, memory map, module list, strings
/// 0x000a_0000 - 0x000f_ffff   legacy hole (VGA, option ROMs, BIOS): reported reserved, never loaded
/// 0x0010_0000 -               kernel segments (wherever their p_paddr says), then modules,
///                             page-aligned, from max(kernel end, 1 MiB)
/// ```
///
/// Only the bytes a load actually writes are claimed: a kernel may load anywhere in RAM that these
/// structures do not use, and the loader checks every pair for overlap before writing anything.
public enum BootLayout {
    /// Base of the GDT.
    public static let gdtAddress: UInt64 = 0x1000
    /// Base of the 64-bit task-state segment.
    public static let tssAddress: UInt64 = 0x1100
    /// Size of the 64-bit TSS in bytes (limit = size - 1).
    public static let tssSize: UInt64 = 104
    /// The top-level page table (CR3 in long mode).
    public static let pml4Address: UInt64 = 0x2000
    /// The page-directory-pointer table; its first 4 entries cover [0, 4 GiB).
    public static let pdptAddress: UInt64 = 0x3000
    /// The first of 4 consecutive page directories, one per GiB.
    public static let pageDirectoriesAddress: UInt64 = 0x4000
    /// Number of page directories, so the identity map covers `pageDirectoryCount` GiB.
    public static let pageDirectoryCount: UInt64 = 4
    /// Bytes of page tables: PML4 + PDPT + the page directories.
    public static let pageTablesSize: UInt64 = (2 + pageDirectoryCount) * 0x1000
    /// Everything below this is identity-mapped by the long-mode page tables (4 GiB).
    public static let identityMapLimit: UInt64 = pageDirectoryCount << 30
    /// Lowest byte of the boot stack.
    public static let bootStackBottom: UInt64 = 0x8000
    /// The initial stack pointer (the stack grows down from here; 16-byte aligned).
    public static let bootStackTop: UInt64 = 0x9000
    /// Where the multiboot information structure starts; the memory map, module list and strings follow.
    public static let multibootInfoAddress: UInt64 = 0x9000
    /// The multiboot information area ends before this address.
    public static let multibootInfoLimit: UInt64 = 0xA_0000
    /// Start of the legacy low-memory hole, reported to the guest as reserved.
    public static let lowMemoryHoleStart: UInt64 = 0xA_0000
    /// End of the legacy low-memory hole (1 MiB).
    public static let lowMemoryHoleEnd: UInt64 = 0x10_0000
    /// Modules never start below this address, even after a kernel loaded low.
    public static let moduleAreaMinimum: UInt64 = 0x10_0000
    /// Multiboot is a 32-bit protocol: everything it points at lies below 4 GiB.
    public static let multibootAddressLimit: UInt64 = 1 << 32

    /// Selectors in the multiboot GDT: flat 32-bit code and data.
    public enum ProtectedModeSelectors {
        public static let code: UInt16 = 0x08
        public static let data: UInt16 = 0x10
    }

    /// Selectors in the long-mode GDT: 64-bit code, flat data, and the TSS (a 16-byte descriptor).
    public enum LongModeSelectors {
        public static let code: UInt16 = 0x08
        public static let data: UInt16 = 0x10
        public static let taskState: UInt16 = 0x18
    }
}

/// A range of guest-physical memory the loader wrote or reserved.
public struct GuestRange: Sendable, Equatable, CustomStringConvertible {
    public var start: GuestPhysicalAddress
    public var length: UInt64
    public init(start: UInt64, length: UInt64) {
        self.start = GuestPhysicalAddress(start); self.length = length
    }
    /// One past the last byte.
    public var end: UInt64 { start.rawValue &+ length }
    public var description: String { "[\(start), \(hex(end)))" }
}

/// A module (initrd, configuration, another program) handed to the kernel through multiboot.
public struct BootModule: Sendable, Equatable {
    /// The module's string in the module list (conventionally its path and arguments).
    public var name: String
    public var bytes: [UInt8]
    public init(name: String, bytes: [UInt8]) { self.name = name; self.bytes = bytes }
}

/// Where one module landed.
public struct LoadedModule: Sendable, Equatable {
    public var name: String
    public var range: GuestRange
    /// Guest address of the module's NUL-terminated string.
    public var nameAddress: GuestPhysicalAddress
}

/// A GDT written into guest memory.
public struct GDTPlacement: Sendable, Equatable {
    public var base: GuestPhysicalAddress
    /// GDTR limit: size in bytes minus one.
    public var limit: UInt16
    public init(base: GuestPhysicalAddress, limit: UInt16) { self.base = base; self.limit = limit }
}
