// Where Visor puts its boot-time structures in guest-physical memory, and the value types that
// report where things landed.

import VisorCore

/// Where Visor puts its boot-time structures in guest-physical memory.
///
/// The kernel's segments land where their p_paddr (or the a.out-kludge addresses) say, anywhere
/// in usable RAM: a kernel is refused only when it does not fit in RAM or overlaps the PC's
/// reserved hole. Modules follow the kernel, page-aligned from max(kernel end, 1 MiB), as in
/// QEMU's and GRUB's loaders. Visor's own structures then go where neither is, each at its usual
/// address below when that is free:
///
/// ```
/// 0x0000_0000 - 0x0000_0fff   never used by Visor (real-mode IVT / BIOS data area; a kernel may load here)
/// 0x0000_1000 - 0x0000_1027   GDT (multiboot: 3 entries; long mode: 3 entries + 16-byte TSS descriptor)
/// 0x0000_1100 - 0x0000_1167   64-bit TSS (long mode only, 104 bytes, no I/O bitmap)
/// 0x0000_2000 - 0x0000_2fff   PML4 (long mode only)
/// 0x0000_3000 - 0x0000_3fff   PDPT (long mode only)
/// 0x0000_4000 - 0x0000_7fff   4 page directories of 2 MiB pages: identity map of [0, 4 GiB)
/// 0x0000_8000 - 0x0000_8fff   boot stack (grows down from 0x9000)
/// 0x0000_9000 -               multiboot information: info structure, memory map, module list, strings
///                             (Linux: the zero page, 4 KiB; PVH: hvm_start_info, memory map, module, command line)
/// 0x0002_0000 -               Linux's bzImage: the command line
/// 0x000a_0000 - 0x000f_ffff   legacy hole (VGA, option ROMs, BIOS): reported reserved, never loaded
///                             (Linux's protocols: the ACPI tables from 0xe0000)
/// 0x0010_0000 -               the kernel (wherever its segments say), then the modules
///                             (a bzImage at its preferred address with init_size reserved; a Linux
///                             initrd at the top of RAM below 4 GiB and initrd_addr_max)
/// ```
///
/// A structure whose usual place the kernel or a module takes goes to the lowest free, suitably
/// aligned place in usable RAM from 0x1000 up (below 4 GiB: multiboot is a 32-bit protocol, and
/// the long-mode identity map ends there); the load result lists where each went (`bootData`).
/// If there is none, the load is refused (`BootError.noRoomForBootData`). Everything is planned
/// and checked for overlap before anything is written.
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
    /// Bytes of boot stack.
    public static let bootStackSize: UInt64 = bootStackTop - bootStackBottom
    /// Where the multiboot information structure starts; the memory map, module list and strings follow.
    public static let multibootInfoAddress: UInt64 = 0x9000
    /// Visor's structures never go below this address (page 0 holds the real-mode IVT and BIOS
    /// data area, and a structure at address 0 would read as a null pointer).
    public static let placementMinimum: UInt64 = 0x1000
    /// Visor's structures lie below this address: reachable with 32-bit pointers and inside the
    /// long-mode identity map.
    public static let bootDataLimit: UInt64 = 1 << 32
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

/// Where one of Visor's boot structures went.
public struct BootDataPlacement: Sendable, Equatable {
    /// "GDT", "TSS", "page tables", "boot stack" or "multiboot information".
    public var name: String
    public var range: GuestRange
    public init(name: String, range: GuestRange) { self.name = name; self.range = range }
}

/// A GDT written into guest memory.
public struct GDTPlacement: Sendable, Equatable {
    public var base: GuestPhysicalAddress
    /// GDTR limit: size in bytes minus one.
    public var limit: UInt16
    public init(base: GuestPhysicalAddress, limit: UInt16) { self.base = base; self.limit = limit }
}
