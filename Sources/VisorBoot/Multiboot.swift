// Multiboot v1: the header a kernel carries, and the information structure a loader hands it.
// Field offsets follow the Multiboot Specification 0.6.96, sections 3.1 and 3.3.

/// The multiboot header found in a kernel image.
public struct MultibootHeader: Sendable, Equatable {
    /// The header's magic number.
    public static let magic: UInt32 = 0x1BAD_B002
    /// What the loader leaves in EAX (multiboot) or RSI (Visor's ELF64 long-mode entry).
    public static let bootloaderMagic: UInt32 = 0x2BAD_B002
    /// The header must lie entirely within this many bytes from the start of the file.
    public static let searchLimit = 8192

    /// Flag bit 0: align modules on 4 KiB boundaries (Visor always does).
    public static let flagPageAlignModules: UInt32 = 1 << 0
    /// Flag bit 1: provide mem_lower/mem_upper and the memory map (Visor always does).
    public static let flagMemoryInfo: UInt32 = 1 << 1
    /// Flag bit 2: provide a video mode. Visor has no framebuffer to offer; like GRUB when it cannot
    /// set a mode, it boots anyway and leaves info flags 11 and 12 clear, which tells the kernel so.
    public static let flagVideoMode: UInt32 = 1 << 2
    /// Flag bit 16: the header carries load addresses (the "a.out kludge"); load the file raw.
    public static let flagAoutKludge: UInt32 = 1 << 16
    /// Requirement bits (0-15) Visor can satisfy. Any other requirement bit makes it refuse.
    public static let supportedRequirements: UInt32 = flagPageAlignModules | flagMemoryInfo | flagVideoMode

    /// The a.out-kludge address fields (header offsets 12-31).
    public struct Addresses: Sendable, Equatable {
        /// Physical address the header's magic is loaded at.
        public var header: UInt32
        /// Physical address of the first byte loaded (text start).
        public var load: UInt32
        /// One past the last byte loaded from the file; 0 means "to the end of the file".
        public var loadEnd: UInt32
        /// One past the last byte of zero-filled bss; 0 means "no bss".
        public var bssEnd: UInt32
        /// Physical address to jump to.
        public var entry: UInt32
    }

    /// File offset of the magic.
    public var offset: Int
    public var flags: UInt32
    /// Present when flag bit 16 is set.
    public var addresses: Addresses?

    /// Looks for a multiboot header at each 4-byte-aligned offset in the first 8 KiB.
    ///
    /// Returns nil when there is no magic at all. A magic with a bad checksum is skipped, like
    /// GRUB does; if no valid header follows, the bad one is reported rather than silently booting
    /// the image another way. A valid header that requires unsupported features is refused.
    public static func find(in bytes: [UInt8]) throws(BootError) -> MultibootHeader? {
        var firstBadChecksum: Int?
        var offset = 0
        while offset + 12 <= min(bytes.count, searchLimit) {
            defer { offset += 4 }
            let window = ByteWindow(bytes, at: offset)
            guard window.u32(0) == magic else { continue }
            let flags = window.u32(4)
            guard magic &+ flags &+ window.u32(8) == 0 else {
                if firstBadChecksum == nil { firstBadChecksum = offset }
                continue
            }
            let unsupported = flags & 0xffff & ~supportedRequirements
            guard unsupported == 0 else { throw .unsupportedMultibootFlags(unsupported) }
            var header = MultibootHeader(offset: offset, flags: flags, addresses: nil)
            if flags & flagAoutKludge != 0 {
                guard offset + 32 <= bytes.count else { throw .truncatedMultibootHeader(offset: offset) }
                header.addresses = Addresses(header: window.u32(12), load: window.u32(16),
                                             loadEnd: window.u32(20), bssEnd: window.u32(24),
                                             entry: window.u32(28))
            }
            return header
        }
        if let firstBadChecksum { throw .badMultibootChecksum(offset: firstBadChecksum) }
        return nil
    }

    /// The single segment an a.out-kludge header describes, and the entry point.
    func aoutSegment(fileSize: Int) throws(BootError) -> (segment: LoadSegment, entry: UInt64) {
        guard let a = addresses else { throw .multibootImageNotLoadable }
        let headerAddress = UInt64(a.header), load = UInt64(a.load)
        guard load <= headerAddress else {
            throw .invalidAoutKludge("load_addr \(hex(load)) is above header_addr \(hex(headerAddress))")
        }
        let headerDistance = headerAddress - load
        guard headerDistance <= UInt64(offset) else {
            throw .invalidAoutKludge("header_addr - load_addr (\(hex(headerDistance))) is larger than the header's file offset \(hex(UInt64(offset)))")
        }
        let fileStart = UInt64(offset) - headerDistance
        let loadEnd = a.loadEnd == 0 ? load + (UInt64(fileSize) - fileStart) : UInt64(a.loadEnd)
        guard loadEnd > load else {
            throw .invalidAoutKludge("load_end_addr \(hex(loadEnd)) is not above load_addr \(hex(load))")
        }
        let loadSize = loadEnd - load
        guard fileStart + loadSize <= UInt64(fileSize) else {
            throw .truncatedSegment(index: 0, offset: fileStart, size: loadSize, fileSize: fileSize)
        }
        let bssEnd = a.bssEnd == 0 ? loadEnd : UInt64(a.bssEnd)
        guard bssEnd >= loadEnd else {
            throw .invalidAoutKludge("bss_end_addr \(hex(bssEnd)) is below load_end_addr \(hex(loadEnd))")
        }
        let entry = UInt64(a.entry)
        guard entry >= load, entry < bssEnd else { throw .entryNotInSegment(entry: entry) }
        let segment = LoadSegment(fileOffset: fileStart, fileSize: loadSize, memorySize: bssEnd - load,
                                  physicalAddress: load, virtualAddress: load)
        return (segment, entry)
    }
}

/// The multiboot information structure and everything it points at, built as one block of bytes.
///
/// Layout inside the block (offsets from its base, usually `BootLayout.multibootInfoAddress`):
/// the 128-byte info structure, the memory map (24 bytes an entry: a 4-byte size of 20, then base,
/// length and type), the module list (16 bytes a module), then NUL-terminated strings: the boot
/// loader name, the command line, and each module's name.
public enum MultibootInfo {
    /// Info flag bit 0: mem_lower and mem_upper are valid.
    public static let flagMemory: UInt32 = 1 << 0
    /// Info flag bit 2: cmdline is valid.
    public static let flagCommandLine: UInt32 = 1 << 2
    /// Info flag bit 3: mods_count and mods_addr are valid.
    public static let flagModules: UInt32 = 1 << 3
    /// Info flag bit 6: mmap_length and mmap_addr are valid.
    public static let flagMemoryMap: UInt32 = 1 << 6
    /// Info flag bit 9: boot_loader_name is valid.
    public static let flagBootLoaderName: UInt32 = 1 << 9
    /// The flags Visor sets.
    public static let flags: UInt32 = flagMemory | flagCommandLine | flagModules | flagMemoryMap | flagBootLoaderName
    /// The boot loader name Visor reports.
    public static let bootLoaderName = "Visor"

    /// Bytes reserved for the info structure itself (the specification's structure is 116 bytes).
    public static let structureSize = 128
    /// Bytes of one memory-map entry, including its leading size field.
    public static let memoryMapEntrySize = 24
    /// Bytes of one module-list entry.
    public static let moduleEntrySize = 16

    // Field offsets in the info structure.
    static let offsetFlags = 0, offsetMemLower = 4, offsetMemUpper = 8, offsetCommandLine = 16
    static let offsetModsCount = 20, offsetModsAddress = 24, offsetMmapLength = 44, offsetMmapAddress = 48
    static let offsetBootLoaderName = 64

    /// The block and the addresses of the strings in it.
    struct Built {
        var bytes: [UInt8]
        var commandLineAddress: UInt64
        var moduleNameAddresses: [UInt64]
    }

    /// Builds the block for `base`. Modules must already be placed; their names go into the block.
    static func build(base: UInt64, commandLine: String, modules: [(name: String, range: GuestRange)],
                      map: [MemoryMapEntry], ramBelowHole: UInt64) throws(BootError) -> Built {
        guard !commandLine.utf8.contains(0) else { throw .stringContainsNUL(what: "command line") }
        for module in modules where module.name.utf8.contains(0) {
            throw .stringContainsNUL(what: "name of module '\(module.name.replacingNUL)'")
        }
        var bytes = [UInt8](repeating: 0, count: structureSize)

        let mmapOffset = bytes.count
        for entry in map {
            bytes.appendLE(UInt32(memoryMapEntrySize - 4))
            bytes.appendLE(entry.base)
            bytes.appendLE(entry.length)
            bytes.appendLE(entry.type)
        }
        let mmapLength = bytes.count - mmapOffset

        let modsOffset = bytes.count
        bytes += [UInt8](repeating: 0, count: moduleEntrySize * modules.count)

        func appendString(_ string: String) -> Int {
            let at = bytes.count
            bytes += Array(string.utf8) + [0]
            return at
        }
        let loaderNameOffset = appendString(bootLoaderName)
        let commandLineOffset = appendString(commandLine)
        var nameOffsets: [Int] = []
        for module in modules { nameOffsets.append(appendString(module.name)) }

        // The caller places the block below 4 GiB (`BootLayout.bootDataLimit`), so every address
        // in it fits in 32 bits; a block built only to learn its size (base 0) is never written.
        func address(_ offset: Int) -> UInt32 { UInt32(truncatingIfNeeded: base + UInt64(offset)) }

        bytes.putLE(flags, at: offsetFlags)
        bytes.putLE(UInt32(min(ramBelowHole, BootLayout.lowMemoryHoleStart) / 1024), at: offsetMemLower)
        let upper = ramBelowHole > BootLayout.lowMemoryHoleEnd ? (ramBelowHole - BootLayout.lowMemoryHoleEnd) / 1024 : 0
        bytes.putLE(UInt32(truncatingIfNeeded: upper), at: offsetMemUpper)
        bytes.putLE(address(commandLineOffset), at: offsetCommandLine)
        bytes.putLE(UInt32(modules.count), at: offsetModsCount)
        bytes.putLE(address(modsOffset), at: offsetModsAddress)
        bytes.putLE(UInt32(mmapLength), at: offsetMmapLength)
        bytes.putLE(address(mmapOffset), at: offsetMmapAddress)
        bytes.putLE(address(loaderNameOffset), at: offsetBootLoaderName)
        for (i, module) in modules.enumerated() {
            let entry = modsOffset + i * moduleEntrySize
            // Module ranges were checked to lie below 4 GiB.
            bytes.putLE(UInt32(truncatingIfNeeded: module.range.start.rawValue), at: entry)
            bytes.putLE(UInt32(truncatingIfNeeded: module.range.end), at: entry + 4)
            bytes.putLE(address(nameOffsets[i]), at: entry + 8)
        }
        return Built(bytes: bytes, commandLineAddress: base + UInt64(commandLineOffset),
                     moduleNameAddresses: nameOffsets.map { base + UInt64($0) })
    }
}

extension String {
    /// The string with NUL bytes shown as `\0`, for error messages.
    var replacingNUL: String { split(separator: "\0", omittingEmptySubsequences: false).joined(separator: "\\0") }
}
