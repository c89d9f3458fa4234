// Boots a Linux bzImage through the 64-bit boot protocol (boot.rst, "64-bit Boot Protocol"):
// the protected-mode kernel at its preferred address, the zero page (`boot_params`) with the
// setup header, an e820 memory map, the command line, the initial RAM disk and the ACPI RSDP,
// an identity map and a GDT with __BOOT_CS/__BOOT_DS; the CPU enters at load address + 0x200
// in 64-bit mode with RSI = the zero page.

import VisorCore

/// Tables a PC's firmware leaves in memory for the OS (ACPI), placed in the BIOS area below 1 MiB.
public struct FirmwareTables: Sendable, Equatable {
    /// Guest-physical address of the first byte (in the reserved BIOS area, 0xe0000-0xfffff).
    public var address: UInt64
    public var bytes: [UInt8]
    /// Where the ACPI RSDP is, for boot_params.acpi_rsdp_addr and hvm_start_info.rsdp_paddr.
    public var rsdpAddress: UInt64

    public init(address: UInt64, bytes: [UInt8], rsdpAddress: UInt64) {
        self.address = address; self.bytes = bytes; self.rsdpAddress = rsdpAddress
    }
}

/// The zero page (`struct boot_params`, Documentation/arch/x86/zero-page.rst): the offsets Visor fills.
enum ZeroPage {
    static let size = 4096
    static let acpiRSDPAddress = 0x070
    static let extendedRamdiskImage = 0x0c0
    static let extendedRamdiskSize = 0x0c4
    static let extendedCommandLinePointer = 0x0c8
    static let e820Entries = 0x1e8
    static let e820Table = 0x2d0
    static let e820EntrySize = 20
    static let e820MaximumEntries = 128
    /// type_of_loader 0xff: a boot loader without an assigned ID.
    static let undefinedLoader: UInt8 = 0xff
}

/// Where a bzImage load put things.
public struct LinuxLoadResult: Sendable, Equatable {
    public var header: LinuxSetupHeader
    /// The 64-bit entry point (startup_64): load address + 0x200.
    public var entry: GuestPhysicalAddress
    public var loadAddress: GuestPhysicalAddress
    /// The protected-mode kernel and the memory it uses before reading the memory map (init_size).
    public var kernelRange: GuestRange
    /// The zero page (RSI at entry).
    public var bootParams: GuestPhysicalAddress
    public var commandLineAddress: GuestPhysicalAddress
    public var initrd: GuestRange?
    /// The PML4 (CR3) of the identity map of [0, 4 GiB).
    public var pageTableRoot: GuestPhysicalAddress
    public var gdt: GDTPlacement
    /// The e820 map in the zero page.
    public var memoryMap: [MemoryMapEntry]
    /// boot_params.acpi_rsdp_addr, when firmware tables were given.
    public var rsdpAddress: UInt64?
    /// Where each of Visor's boot structures went.
    public var bootData: [BootDataPlacement]
}

/// The bzImage loader.
public enum LinuxLoader {
    /// Selectors the 64-bit boot protocol requires: __BOOT_CS and __BOOT_DS.
    public enum Selectors {
        public static let code: UInt16 = 0x10
        public static let data: UInt16 = 0x18
    }
    /// Where the zero page goes when that is free (below the command line, above the page tables).
    static let bootParamsAddress: UInt64 = 0x9000
    /// Where the command line goes when that is free (where QEMU puts it).
    static let commandLineAddress: UInt64 = 0x2_0000

    /// Loads a bzImage with its command line, initial RAM disk and firmware tables. Everything
    /// is checked before the first write, so a refused image leaves guest memory untouched.
    public static func load(kernel: [UInt8], commandLine: String = "", initrd: BootModule? = nil,
                            firmware: FirmwareTables? = nil, into memory: GuestMemory) throws(BootError) -> LinuxLoadResult {
        let header = try LinuxSetupHeader.parse(kernel)
        let commandLineBytes = Array(commandLine.utf8)
        guard !commandLineBytes.contains(0) else { throw .stringContainsNUL(what: "command line") }
        guard commandLineBytes.count <= Int(header.commandLineSize) else {
            throw .commandLineTooLong(length: commandLineBytes.count, limit: Int(header.commandLineSize))
        }

        var plan = BootPlan(memory: memory)
        let load = header.loadAddress
        guard let runtimeEnd = header.runtimeEnd, runtimeEnd <= BootLayout.identityMapLimit else {
            throw .linuxKernelDoesNotFit(address: load, size: UInt64(header.initSize), ramSize: memory.size)
        }
        let start = header.protectedModeOffset
        try plan.add("Linux kernel", at: load, length: runtimeEnd - load,
                     bytes: kernel[start..<(start + header.protectedModeSize)],
                     outsideRAM: .linuxKernelDoesNotFit(address: load, size: runtimeEnd - load, ramSize: memory.size))
        if let firmware { try plan.addFirmware("firmware tables", at: firmware.address, bytes: firmware.bytes) }

        let gdt = linuxGDT()
        let gdtAddress = try plan.placeBootData("GDT", size: UInt64(gdt.count), alignment: 8,
                                                preferred: BootLayout.gdtAddress, bytes: gdt)
        let pml4 = try plan.placeBootData("page tables", size: BootLayout.pageTablesSize,
                                          alignment: GuestMemory.pageSize, preferred: BootLayout.pml4Address)
        plan.setBytes(at: pml4, identityPageTables(base: pml4, directories: BootLayout.pageDirectoryCount))
        let bootParams = try plan.placeBootData("zero page", size: UInt64(ZeroPage.size), alignment: GuestMemory.pageSize,
                                                preferred: bootParamsAddress)
        let commandLineAt = try plan.placeBootData("command line", size: UInt64(commandLineBytes.count + 1),
                                                   alignment: 16, preferred: commandLineAddress,
                                                   bytes: commandLineBytes + [0])

        // The initial RAM disk as high as it fits below the kernel's limit, as QEMU puts it, clear
        // of the memory the kernel decompresses into.
        // An empty one is no RAM disk (ramdisk_size 0).
        var initrdRange: GuestRange?
        if let initrd, !initrd.bytes.isEmpty {
            let size = UInt64(initrd.bytes.count)
            let limit = min(UInt64(header.initrdAddressMax) + 1, BootLayout.bootDataLimit)
            guard let at = plan.highestFreeSpace(size: size, alignment: GuestMemory.pageSize, below: limit) else {
                throw .initrdDoesNotFit(size: size, limit: limit)
            }
            try plan.add("initial RAM disk", at: at, length: size, bytes: initrd.bytes[...],
                         outsideRAM: .initrdDoesNotFit(size: size, limit: limit))
            initrdRange = GuestRange(start: at, length: size)
        }

        let map = plan.map
        guard map.count <= ZeroPage.e820MaximumEntries else {
            preconditionFailure("Visor's memory map has more entries than the zero page holds")
        }
        plan.setBytes(at: bootParams, zeroPage(header: header, loadAddress: load, commandLine: commandLineAt,
                                               initrd: initrdRange, map: map, rsdp: firmware?.rsdpAddress))
        try plan.commit()

        return LinuxLoadResult(
            header: header, entry: GuestPhysicalAddress(load + LinuxSetupHeader.entry64Offset),
            loadAddress: GuestPhysicalAddress(load), kernelRange: GuestRange(start: load, length: runtimeEnd - load),
            bootParams: GuestPhysicalAddress(bootParams), commandLineAddress: GuestPhysicalAddress(commandLineAt),
            initrd: initrdRange, pageTableRoot: GuestPhysicalAddress(pml4),
            gdt: GDTPlacement(base: GuestPhysicalAddress(gdtAddress), limit: UInt16(gdt.count - 1)),
            memoryMap: map, rsdpAddress: firmware?.rsdpAddress, bootData: plan.bootData)
    }

    /// The zero page: the kernel's own setup header at 0x1f1 with the loader's fields filled in,
    /// the e820 map, the extended (high 32-bit) pointer fields and the ACPI RSDP address.
    static func zeroPage(header: LinuxSetupHeader, loadAddress: UInt64, commandLine: UInt64, initrd: GuestRange?,
                         map: [MemoryMapEntry], rsdp: UInt64?) -> [UInt8] {
        var page = [UInt8](repeating: 0, count: ZeroPage.size)
        page.replaceSubrange(LinuxSetupHeader.setupSectorsOffset..<(LinuxSetupHeader.setupSectorsOffset + header.headerBytes.count),
                             with: header.headerBytes)
        page[LinuxSetupHeader.typeOfLoaderOffset] = ZeroPage.undefinedLoader
        page.putLE(UInt32(truncatingIfNeeded: loadAddress), at: LinuxSetupHeader.code32StartOffset)
        page.putLE(UInt32(truncatingIfNeeded: commandLine), at: LinuxSetupHeader.commandLinePointerOffset)
        page.putLE(UInt32(truncatingIfNeeded: commandLine >> 32), at: ZeroPage.extendedCommandLinePointer)
        let initrdStart = initrd?.start.rawValue ?? 0, initrdSize = initrd?.length ?? 0
        page.putLE(UInt32(truncatingIfNeeded: initrdStart), at: LinuxSetupHeader.ramdiskImageOffset)
        page.putLE(UInt32(truncatingIfNeeded: initrdSize), at: LinuxSetupHeader.ramdiskSizeOffset)
        page.putLE(UInt32(truncatingIfNeeded: initrdStart >> 32), at: ZeroPage.extendedRamdiskImage)
        page.putLE(UInt32(truncatingIfNeeded: initrdSize >> 32), at: ZeroPage.extendedRamdiskSize)
        page.putLE(rsdp ?? 0, at: ZeroPage.acpiRSDPAddress)
        page[ZeroPage.e820Entries] = UInt8(map.count)
        for (i, entry) in map.enumerated() {
            let at = ZeroPage.e820Table + i * ZeroPage.e820EntrySize
            page.putLE(entry.base, at: at)
            page.putLE(entry.length, at: at + 8)
            page.putLE(entry.type, at: at + 16)
        }
        return page
    }
}

/// The GDT of the 64-bit boot protocol: null, null, __BOOT_CS (0x10, 64-bit code), __BOOT_DS
/// (0x18, flat data).
func linuxGDT() -> [UInt8] {
    var bytes: [UInt8] = []
    for descriptor in [0, 0, flatCode64Descriptor, flatDataDescriptor] { bytes.appendLE(descriptor) }
    return bytes
}
