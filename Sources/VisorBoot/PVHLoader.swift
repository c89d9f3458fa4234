// Boots an uncompressed ELF kernel through its PVH entry (Xen's "x86/HVM direct boot ABI",
// xen/include/public/arch-x86/hvm/start_info.h): the kernel names a 32-bit physical entry point
// in a XEN_ELFNOTE_PHYS32_ENTRY note; the loader places the segments by p_paddr and enters in
// 32-bit protected mode with paging off and EBX = the physical address of `hvm_start_info`,
// which points at the memory map, the command line, the modules (the initial RAM disk) and the
// ACPI RSDP. Linux's vmlinux carries this note when built with CONFIG_PVH.

import VisorCore

/// Where a PVH load put things.
public struct PVHLoadResult: Sendable, Equatable {
    /// The 32-bit entry point from the XEN_ELFNOTE_PHYS32_ENTRY note.
    public var entry: GuestPhysicalAddress
    /// `struct hvm_start_info` (EBX at entry); the memory map, module list and strings follow it.
    public var startInfo: GuestPhysicalAddress
    public var commandLineAddress: GuestPhysicalAddress
    public var kernelRanges: [GuestRange]
    /// The initial RAM disk, handed over as the first (only) module.
    public var initrd: GuestRange?
    /// Null, flat 32-bit code (0x08), flat data (0x10) and a 32-bit TSS (0x18).
    public var gdt: GDTPlacement
    public var memoryMap: [MemoryMapEntry]
    public var rsdpAddress: UInt64?
    public var bootData: [BootDataPlacement]
}

/// The PVH loader.
public enum PVHLoader {
    /// The owner of Xen's ELF notes.
    public static let noteOwner = "Xen"
    /// XEN_ELFNOTE_PHYS32_ENTRY: the descriptor is the 32-bit physical entry point (4 bytes, or
    /// 8 when the kernel emits it as a pointer-sized value, as 64-bit Linux does).
    public static let phys32EntryNote: UInt32 = 18
    /// hvm_start_info.magic.
    public static let startInfoMagic: UInt32 = 0x336e_c578
    /// The start-info version Visor writes: 1, which has the memory map.
    public static let startInfoVersion: UInt32 = 1
    /// Bytes of `struct hvm_start_info` (version 1).
    static let startInfoSize = 56
    /// Bytes of `struct hvm_modlist_entry`.
    static let moduleEntrySize = 32
    /// Bytes of `struct hvm_memmap_table_entry`.
    static let memoryMapEntrySize = 24

    /// Selectors in the PVH GDT.
    public enum Selectors {
        public static let code: UInt16 = 0x08
        public static let data: UInt16 = 0x10
        public static let taskState: UInt16 = 0x18
    }

    /// The PVH entry point of an ELF image (`elf` parsed from `bytes`), or nil when it has no
    /// XEN_ELFNOTE_PHYS32_ENTRY note.
    public static func entryPoint(of elf: ELFImage, in bytes: [UInt8]) throws(BootError) -> UInt64? {
        guard let note = try elf.notes(in: bytes).first(where: { $0.name == noteOwner && $0.type == phys32EntryNote }) else {
            return nil
        }
        let d = note.descriptor
        switch d.count {
        case 4:
            return UInt64(ByteWindow(d, at: 0).u32(0))
        case 8:
            let value = ByteWindow(d, at: 0).u64(0)
            guard value >> 32 == 0 else {
                throw .badPVHEntry("the entry point \(hex(value)) is beyond 4 GiB, out of reach of 32-bit protected mode")
            }
            return value
        default:
            throw .badPVHEntry("the note's descriptor is \(d.count) bytes, not a 4- or 8-byte address")
        }
    }

    /// Whether `kernel` is an ELF image with a PVH entry note. An image whose headers do not
    /// parse is not (the loader that takes it reports why); one whose notes are malformed is
    /// refused, since its notes may be what says how to enter it.
    public static func hasEntryNote(_ kernel: [UInt8]) throws(BootError) -> Bool {
        guard let elf = try? ELFImage.parse(kernel, resolvingEntry: false) else { return false }
        return try elf.notes(in: kernel).contains { $0.name == noteOwner && $0.type == phys32EntryNote }
    }

    /// Loads `kernel` (an ELF executable with a PVH note) by p_paddr, with the start info, command
    /// line, initial RAM disk and firmware tables. Checks everything before the first write.
    public static func load(kernel: [UInt8], commandLine: String = "", initrd: BootModule? = nil,
                            firmware: FirmwareTables? = nil, into memory: GuestMemory) throws(BootError) -> PVHLoadResult {
        let elf = try ELFImage.parse(kernel, resolvingEntry: false)
        guard let entry = try entryPoint(of: elf, in: kernel) else { throw .badPVHEntry("the image has no XEN_ELFNOTE_PHYS32_ENTRY note") }
        guard elf.segment(containingPhysical: entry) != nil else {
            throw .badPVHEntry("the entry point \(hex(entry)) is in none of the loaded segments")
        }
        var image = KernelImage(elf: elf)
        image.physicalEntry = entry
        let commandLineBytes = Array(commandLine.utf8)
        guard !commandLineBytes.contains(0) else { throw .stringContainsNUL(what: "command line") }

        var plan = BootPlan(memory: memory)
        try image.checkPlacement(in: plan, below: nil)
        try image.addSegments(from: kernel, to: &plan)
        if let firmware { try plan.addFirmware("firmware tables", at: firmware.address, bytes: firmware.bytes) }
        let gdt = pvhGDT()
        let gdtAddress = try plan.placeBootData("GDT", size: UInt64(gdt.count), alignment: 8,
                                                preferred: BootLayout.gdtAddress, bytes: gdt)

        var initrdRange: GuestRange?
        if let initrd, !initrd.bytes.isEmpty {
            let size = UInt64(initrd.bytes.count)
            let limit = BootLayout.bootDataLimit
            guard let at = plan.highestFreeSpace(size: size, alignment: GuestMemory.pageSize, below: limit) else {
                throw .initrdDoesNotFit(size: size, limit: limit)
            }
            try plan.add("initial RAM disk", at: at, length: size, bytes: initrd.bytes[...],
                         outsideRAM: .initrdDoesNotFit(size: size, limit: limit))
            initrdRange = GuestRange(start: at, length: size)
        }

        let map = plan.map
        func build(at base: UInt64) -> (bytes: [UInt8], commandLine: UInt64) {
            startInfo(base: base, commandLine: commandLineBytes, initrd: initrdRange, map: map,
                      rsdp: firmware?.rsdpAddress)
        }
        let size = UInt64(build(at: 0).bytes.count)
        let base = try plan.placeBootData("start info", size: size, alignment: 8,
                                          preferred: BootLayout.multibootInfoAddress)
        let built = build(at: base)
        plan.setBytes(at: base, built.bytes)
        try plan.commit()

        return PVHLoadResult(
            entry: GuestPhysicalAddress(entry), startInfo: GuestPhysicalAddress(base),
            commandLineAddress: GuestPhysicalAddress(built.commandLine), kernelRanges: image.ranges,
            initrd: initrdRange, gdt: GDTPlacement(base: GuestPhysicalAddress(gdtAddress), limit: UInt16(gdt.count - 1)),
            memoryMap: map, rsdpAddress: firmware?.rsdpAddress, bootData: plan.bootData)
    }

    /// `struct hvm_start_info` at `base`, then the memory map, the module list (the initial RAM
    /// disk) and the NUL-terminated command line. Everything lies below 4 GiB (boot data).
    static func startInfo(base: UInt64, commandLine: [UInt8], initrd: GuestRange?, map: [MemoryMapEntry],
                          rsdp: UInt64?) -> (bytes: [UInt8], commandLine: UInt64) {
        var bytes = [UInt8](repeating: 0, count: startInfoSize)
        let mapOffset = bytes.count
        for entry in map {
            bytes.appendLE(entry.base)
            bytes.appendLE(entry.length)
            bytes.appendLE(entry.type)  // the e820 types, as Xen's memory map uses them
            bytes.appendLE(UInt32(0))
        }
        let modulesOffset = bytes.count
        if let initrd {
            bytes.appendLE(initrd.start.rawValue)
            bytes.appendLE(initrd.length)
            bytes.appendLE(UInt64(0))  // no module command line
            bytes.appendLE(UInt64(0))
        }
        let commandLineOffset = bytes.count
        bytes += commandLine + [0]

        bytes.putLE(startInfoMagic, at: 0)
        bytes.putLE(startInfoVersion, at: 4)
        bytes.putLE(UInt32(0), at: 8)  // flags
        bytes.putLE(UInt32(initrd == nil ? 0 : 1), at: 12)
        bytes.putLE(initrd == nil ? 0 : base + UInt64(modulesOffset), at: 16)
        bytes.putLE(base + UInt64(commandLineOffset), at: 24)
        bytes.putLE(rsdp ?? 0, at: 32)
        bytes.putLE(base + UInt64(mapOffset), at: 40)
        bytes.putLE(UInt32(map.count), at: 48)
        return (bytes, base + UInt64(commandLineOffset))
    }
}

/// The PVH GDT: null, flat 32-bit code (0x08), flat data (0x10), and a 32-bit TSS (0x18) with
/// base 0 and limit 0x67, marked busy, as the ABI asks TR to hold.
func pvhGDT() -> [UInt8] {
    let taskState32: UInt64 = 0x0000_8B00_0000_0067
    var bytes: [UInt8] = []
    for descriptor in [0, flatCode32Descriptor, flatDataDescriptor, taskState32] { bytes.appendLE(descriptor) }
    return bytes
}
