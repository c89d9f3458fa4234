// Steps shared by every protocol: check a kernel's segments against guest RAM, place modules after
// it, and build the multiboot information block. All of it only adds to a `BootPlan`.

import VisorCore

/// How the kernel's bytes were described.
public enum KernelFormat: Sendable, Equatable {
    case elf32, elf64
    /// A multiboot header with flag bit 16: one raw segment described by the header's addresses.
    case aoutKludge
}

/// A kernel reduced to what loading needs.
struct KernelImage {
    var format: KernelFormat
    var segments: [LoadSegment]
    /// Program-header index of each segment, for error messages.
    var indices: [Int]
    var physicalEntry: UInt64

    init(elf: ELFImage) {
        format = elf.elfClass == .elf32 ? .elf32 : .elf64
        segments = elf.segments
        indices = elf.segmentIndices
        physicalEntry = elf.physicalEntry
    }

    init(format: KernelFormat, segment: LoadSegment, entry: UInt64) {
        self.format = format
        segments = [segment]
        indices = [0]
        physicalEntry = entry
    }

    /// Checks sizes and that every segment lies in usable RAM (below `limit`, when given).
    func checkPlacement(in plan: BootPlan, below limit: UInt64?) throws(BootError) {
        var total: UInt64 = 0
        for segment in segments {
            let (sum, overflow) = total.addingReportingOverflow(segment.memorySize)
            total = overflow ? UInt64.max : sum
        }
        guard total <= plan.memory.size else { throw .imageTooLarge(totalSize: total, ramSize: plan.memory.size) }
        for (segment, index) in zip(segments, indices) {
            guard isUsable(segment.physicalAddress, segment.memorySize, in: plan.map) else {
                throw .segmentOutsideRAM(index: index, address: segment.physicalAddress, size: segment.memorySize)
            }
            if let limit, segment.physicalAddress + segment.memorySize > limit {
                throw .notAddressable(what: "segment \(index)", address: segment.physicalAddress, limit: limit)
            }
        }
        if let limit, physicalEntry >= limit {
            throw .notAddressable(what: "entry point", address: physicalEntry, limit: limit)
        }
    }

    /// The segments' physical ranges, in program-header order.
    var ranges: [GuestRange] {
        segments.map { GuestRange(start: $0.physicalAddress, length: $0.memorySize) }
    }

    /// One past the highest byte any segment occupies (segments were checked to lie in RAM).
    var end: UInt64 { segments.map { $0.physicalAddress + $0.memorySize }.max() ?? 0 }

    /// Adds every segment's bytes to the plan.
    func addSegments(from file: [UInt8], to plan: inout BootPlan) throws(BootError) {
        for (segment, index) in zip(segments, indices) {
            // Parsing checked fileOffset + fileSize <= file.count.
            let start = Int(segment.fileOffset), end = start + Int(segment.fileSize)
            try plan.add("kernel segment \(index)", at: segment.physicalAddress, length: segment.memorySize,
                         bytes: file[start..<end],
                         outsideRAM: .segmentOutsideRAM(index: index, address: segment.physicalAddress,
                                                        size: segment.memorySize))
        }
    }
}

/// Places the modules, page-aligned, one after another from max(`kernelEnd`, 1 MiB) as QEMU
/// and GRUB do; a module that does not fit there goes to the lowest free place below 4 GiB.
/// Adds each module's bytes to the plan.
func placeModules(_ modules: [BootModule], after kernelEnd: UInt64,
                  plan: inout BootPlan) throws(BootError) -> [(name: String, range: GuestRange)] {
    var next = max(kernelEnd, BootLayout.moduleAreaMinimum)
    var placed: [(name: String, range: GuestRange)] = []
    for module in modules {
        let size = UInt64(module.bytes.count)
        let preferred = alignUp(next, GuestMemory.pageSize)
        guard let start = plan.freeSpace(size: size, alignment: GuestMemory.pageSize, preferred: preferred,
                                         below: BootLayout.multibootAddressLimit) else {
            throw .moduleDoesNotFit(name: module.name, size: size, address: preferred ?? next)
        }
        try plan.add("module '\(module.name)'", at: start, length: size, bytes: module.bytes[...],
                     outsideRAM: .moduleDoesNotFit(name: module.name, size: size, address: start))
        placed.append((module.name, GuestRange(start: start, length: size)))
        next = start + size
    }
    return placed
}

/// What `planBootInformation` decided.
struct PlannedBootInformation {
    var infoAddress: UInt64
    var commandLineAddress: UInt64
    var modules: [LoadedModule]
    var map: [MemoryMapEntry]
}

/// Places the modules after the kernel, then the multiboot information block (at its usual
/// address when free, else wherever there is room); adds both to the plan.
func planBootInformation(kernel: KernelImage, commandLine: String, modules: [BootModule],
                         plan: inout BootPlan) throws(BootError) -> PlannedBootInformation {
    let placed = try placeModules(modules, after: kernel.end, plan: &plan)
    let ramBelowHole = plan.memory.regions.first.map { $0.guestEnd } ?? 0
    func build(at base: UInt64) throws(BootError) -> MultibootInfo.Built {
        try MultibootInfo.build(base: base, commandLine: commandLine, modules: placed, map: plan.map,
                                ramBelowHole: ramBelowHole)
    }
    // The block's size does not depend on where it goes: build it once to learn it, place it,
    // then build it for its place.
    let size = UInt64(try build(at: 0).bytes.count)
    let base = try plan.placeBootData("multiboot information", size: size, alignment: 8,
                                      preferred: BootLayout.multibootInfoAddress)
    let built = try build(at: base)
    plan.setBytes(at: base, built.bytes)
    let loaded = modules.indices.map { i in
        LoadedModule(name: modules[i].name, range: placed[i].range,
                     nameAddress: GuestPhysicalAddress(built.moduleNameAddresses[i]))
    }
    return PlannedBootInformation(infoAddress: base, commandLineAddress: built.commandLineAddress,
                                  modules: loaded, map: plan.map)
}

/// Places the boot stack both protocols hand the kernel (not written, only kept clear of
/// everything else); returns its top.
func planBootStack(plan: inout BootPlan) throws(BootError) -> UInt64 {
    let bottom = try plan.placeBootData("boot stack", size: BootLayout.bootStackSize, alignment: GuestMemory.pageSize,
                                        preferred: BootLayout.bootStackBottom)
    return bottom + BootLayout.bootStackSize
}
