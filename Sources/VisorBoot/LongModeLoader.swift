// Loads a plain ELF64 kernel (no multiboot header) and prepares 64-bit long mode for it:
// identity page tables for the first 4 GiB, a GDT with a TSS, and the multiboot information
// block so the kernel can find its command line, memory map and modules.

import VisorCore

/// Where a long-mode ELF64 load put things.
///
/// Entry convention (Visor's, for plain ELF64 kernels): the CPU is in 64-bit mode with paging on
/// and [0, 4 GiB) identity-mapped; RIP is the physical entry point (e_entry translated through its
/// segment), **RDI holds the multiboot information address and RSI the multiboot bootloader magic
/// 0x2BADB002**, RSP is the top of Visor's boot stack (`BootLayout.bootStackTop` unless the kernel
/// is there), interrupts are off and the IDT is empty.
public struct LongModeLoadResult: Sendable, Equatable {
    /// Physical (= identity-mapped virtual) address to start at.
    public var entry: GuestPhysicalAddress
    /// The PML4 (CR3).
    public var pageTableRoot: GuestPhysicalAddress
    /// PML4, PDPT and page directories.
    public var pageTables: GuestRange
    public var gdt: GDTPlacement
    public var codeSelector: UInt16
    public var dataSelector: UInt16
    public var taskStateSelector: UInt16
    public var taskStateBase: GuestPhysicalAddress
    /// TSS limit: size in bytes minus one.
    public var taskStateLimit: UInt32
    public var stackTop: GuestPhysicalAddress
    /// The multiboot information structure (RDI at entry).
    public var infoAddress: GuestPhysicalAddress
    public var commandLineAddress: GuestPhysicalAddress
    public var kernelRanges: [GuestRange]
    public var kernelEnd: UInt64
    public var modules: [LoadedModule]
    public var memoryMap: [MemoryMapEntry]
    /// Where each of Visor's boot structures (GDT, TSS, page tables, boot stack, multiboot
    /// information) went.
    public var bootData: [BootDataPlacement]
}

/// The plain-ELF64 long-mode loader.
public enum LongModeLoader {
    /// Loads `kernel` (an ELF64 executable) by p_paddr and writes the long-mode structures.
    /// Segments may lie anywhere in usable RAM; the entry point must be below 4 GiB, inside the
    /// identity map. Validates everything before the first write.
    public static func load(kernel: [UInt8], commandLine: String = "", modules: [BootModule] = [],
                            into memory: GuestMemory) throws(BootError) -> LongModeLoadResult {
        let elf = try ELFImage.parse(kernel)
        guard elf.elfClass == .elf64 else { throw .elf32WithoutMultiboot }
        let image = KernelImage(elf: elf)

        var plan = BootPlan(memory: memory)
        try image.checkPlacement(in: plan, below: nil)
        guard image.physicalEntry < BootLayout.identityMapLimit else {
            throw .notAddressable(what: "entry point", address: image.physicalEntry, limit: BootLayout.identityMapLimit)
        }

        // The kernel first, where it asks to be; then its modules; then Visor's own structures
        // wherever those two left room.
        try image.addSegments(from: kernel, to: &plan)
        let tssLimit = UInt32(BootLayout.tssSize - 1)
        let gdtSize = UInt64(longModeGDT(tssBase: 0, tssLimit: tssLimit).count)
        let gdtAddress = try plan.placeBootData("GDT", size: gdtSize, alignment: 8, preferred: BootLayout.gdtAddress)
        let tssAddress = try plan.placeBootData("TSS", size: BootLayout.tssSize, alignment: 16,
                                                preferred: BootLayout.tssAddress,
                                                bytes: taskStateSegment(size: Int(BootLayout.tssSize)))
        let gdt = longModeGDT(tssBase: tssAddress, tssLimit: tssLimit)
        plan.setBytes(at: gdtAddress, gdt)
        let pml4Address = try plan.placeBootData("page tables", size: BootLayout.pageTablesSize,
                                                 alignment: GuestMemory.pageSize, preferred: BootLayout.pml4Address)
        plan.setBytes(at: pml4Address, identityPageTables(base: pml4Address, directories: BootLayout.pageDirectoryCount))
        let stackTop = try planBootStack(plan: &plan)
        let info = try planBootInformation(kernel: image, commandLine: commandLine, modules: modules, plan: &plan)
        try plan.commit()

        return LongModeLoadResult(
            entry: GuestPhysicalAddress(image.physicalEntry),
            pageTableRoot: GuestPhysicalAddress(pml4Address),
            pageTables: GuestRange(start: pml4Address, length: BootLayout.pageTablesSize),
            gdt: GDTPlacement(base: GuestPhysicalAddress(gdtAddress), limit: UInt16(gdt.count - 1)),
            codeSelector: BootLayout.LongModeSelectors.code, dataSelector: BootLayout.LongModeSelectors.data,
            taskStateSelector: BootLayout.LongModeSelectors.taskState,
            taskStateBase: GuestPhysicalAddress(tssAddress), taskStateLimit: tssLimit,
            stackTop: GuestPhysicalAddress(stackTop),
            infoAddress: GuestPhysicalAddress(info.infoAddress),
            commandLineAddress: GuestPhysicalAddress(info.commandLineAddress),
            kernelRanges: image.ranges, kernelEnd: image.end, modules: info.modules, memoryMap: info.map,
            bootData: plan.bootData)
    }
}
