// Loads a multiboot v1 kernel (ELF32, ELF64 or a.out kludge) and its modules. Returns where
// everything landed; `initialState(for:)` turns that into registers.

import VisorCore

/// Where a multiboot load put things.
public struct MultibootLoadResult: Sendable, Equatable {
    public var format: KernelFormat
    public var header: MultibootHeader
    /// Physical address to start at, in 32-bit protected mode with paging off.
    public var entry: GuestPhysicalAddress
    /// The multiboot information structure (EBX at entry).
    public var infoAddress: GuestPhysicalAddress
    /// The NUL-terminated command line (always valid; empty when there is none).
    public var commandLineAddress: GuestPhysicalAddress
    /// Each loaded segment's physical range (file bytes plus zeroed bss).
    public var kernelRanges: [GuestRange]
    /// One past the kernel's highest loaded byte.
    public var kernelEnd: UInt64
    public var modules: [LoadedModule]
    /// The memory map reported to the kernel.
    public var memoryMap: [MemoryMapEntry]
    /// A flat GDT: null, 32-bit code at `BootLayout.ProtectedModeSelectors.code`, data at `.data`.
    public var gdt: GDTPlacement
    /// Top of a small stack Visor reserves. The specification leaves ESP undefined; this is a courtesy.
    public var stackTop: GuestPhysicalAddress
    /// Where each of Visor's boot structures (GDT, boot stack, multiboot information) went.
    public var bootData: [BootDataPlacement]
}

/// The multiboot v1 loader.
public enum MultibootLoader {
    /// Loads `kernel`, which must carry a valid multiboot header (`header`, or found by searching).
    ///
    /// ELF images load by p_paddr, with e_entry translated to a physical address through the
    /// segment that contains it; with flag bit 16 the header's a.out-kludge addresses take
    /// precedence, as in GRUB. Everything is validated before the first write, so on error the
    /// guest's memory is unchanged.
    /// `firmware` (the ACPI tables) goes into the BIOS area, where a kernel that scans for the
    /// RSDP finds it, as on a PC.
    public static func load(kernel: [UInt8], header: MultibootHeader? = nil, commandLine: String = "",
                            modules: [BootModule] = [], firmware: FirmwareTables? = nil,
                            into memory: GuestMemory) throws(BootError) -> MultibootLoadResult {
        var found = header
        if found == nil { found = try MultibootHeader.find(in: kernel) }
        guard let header = found else { throw .unrecognizedImage }

        let image: KernelImage
        if header.flags & MultibootHeader.flagAoutKludge != 0 {
            let (segment, entry) = try header.aoutSegment(fileSize: kernel.count)
            image = KernelImage(format: .aoutKludge, segment: segment, entry: entry)
        } else if ELFImage.hasMagic(kernel) {
            image = KernelImage(elf: try ELFImage.parse(kernel))
        } else {
            throw .multibootImageNotLoadable
        }

        // The kernel first, where it asks to be; then its modules; then Visor's own structures
        // wherever those two left room.
        var plan = BootPlan(memory: memory)
        try image.checkPlacement(in: plan, below: BootLayout.multibootAddressLimit)
        try image.addSegments(from: kernel, to: &plan)
        if let firmware { try plan.addFirmware("firmware tables", at: firmware.address, bytes: firmware.bytes) }
        let gdt = protectedModeGDT()
        let gdtAddress = try plan.placeBootData("GDT", size: UInt64(gdt.count), alignment: 8,
                                                preferred: BootLayout.gdtAddress, bytes: gdt)
        let stackTop = try planBootStack(plan: &plan)
        let info = try planBootInformation(kernel: image, commandLine: commandLine, modules: modules, plan: &plan)
        try plan.commit()

        return MultibootLoadResult(
            format: image.format, header: header, entry: GuestPhysicalAddress(image.physicalEntry),
            infoAddress: GuestPhysicalAddress(info.infoAddress),
            commandLineAddress: GuestPhysicalAddress(info.commandLineAddress),
            kernelRanges: image.ranges, kernelEnd: image.end, modules: info.modules, memoryMap: info.map,
            gdt: GDTPlacement(base: GuestPhysicalAddress(gdtAddress), limit: UInt16(gdt.count - 1)),
            stackTop: GuestPhysicalAddress(stackTop), bootData: plan.bootData)
    }
}
