// ELF32 / ELF64 little-endian x86 executables: the header, the PT_LOAD segments and the entry point.
//
// Every offset and size comes from an untrusted file, so each one is checked for overflow and
// against the file's length before any byte is read. Parsing never touches guest memory.

/// ELF file class.
public enum ELFClass: Sendable, Equatable, CustomStringConvertible {
    case elf32, elf64
    public var description: String { self == .elf32 ? "ELF32" : "ELF64" }
}

/// One loadable piece of an image: `fileSize` bytes from `fileOffset` copied to `physicalAddress`,
/// followed by `memorySize - fileSize` zero bytes.
public struct LoadSegment: Sendable, Equatable {
    public var fileOffset: UInt64
    public var fileSize: UInt64
    public var memorySize: UInt64
    public var physicalAddress: UInt64
    public var virtualAddress: UInt64

    public init(fileOffset: UInt64, fileSize: UInt64, memorySize: UInt64, physicalAddress: UInt64,
                virtualAddress: UInt64) {
        self.fileOffset = fileOffset; self.fileSize = fileSize; self.memorySize = memorySize
        self.physicalAddress = physicalAddress; self.virtualAddress = virtualAddress
    }
}

/// A parsed, self-consistent ELF executable. Placement in a particular guest's RAM is checked later.
public struct ELFImage: Sendable, Equatable {
    /// The ELF header's e_ident magic.
    public static let magic: [UInt8] = [0x7f, 0x45, 0x4c, 0x46]
    /// Visor looks at no more program headers than this.
    public static let maximumProgramHeaders = 128
    static let machine386: UInt16 = 3
    static let machineX86_64: UInt16 = 62
    static let typeExecutable: UInt16 = 2
    static let programTypeLoad: UInt32 = 1
    static let programTypeNote: UInt32 = 4

    public var elfClass: ELFClass
    /// e_entry, a virtual address.
    public var entry: UInt64
    /// e_entry translated through the segment that contains it (p_paddr + (e_entry - p_vaddr)).
    public var physicalEntry: UInt64
    /// The PT_LOAD segments with a non-zero p_memsz, in program-header order.
    public var segments: [LoadSegment]
    /// Index of each segment in the program header table (for error messages).
    public var segmentIndices: [Int]
    /// Where each PT_NOTE segment's notes are in the file; `notes(in:)` reads them.
    public var noteSegments: [NoteSegment] = []

    /// A PT_NOTE segment: `size` bytes at file `offset`, names and descriptors padded to `alignment`.
    public struct NoteSegment: Sendable, Equatable {
        public var index: Int
        public var offset: UInt64
        public var size: UInt64
        public var alignment: UInt64
    }

    /// The notes of every PT_NOTE segment, in file order, read from `bytes` (the file parsed).
    /// Only kernels entered through a note need them, so a malformed note is an error for those
    /// alone: a multiboot kernel's notes are never read.
    public func notes(in bytes: [UInt8]) throws(BootError) -> [ELFNote] {
        var notes: [ELFNote] = []
        for segment in noteSegments {
            notes += try ELFNote.parse(bytes, segment: segment.index, offset: segment.offset, size: segment.size,
                                       alignment: segment.alignment)
        }
        return notes
    }

    /// True when `bytes` starts with the ELF magic.
    public static func hasMagic(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 4 && Array(bytes[0..<4]) == magic
    }

    /// Parses and checks an ELF executable for x86 (EM_386) or x86-64 (EM_X86_64).
    ///
    /// With `resolvingEntry` (the default) e_entry must lie in a loaded segment's virtual range and
    /// `physicalEntry` is its physical address. Without it e_entry is not checked and
    /// `physicalEntry` is e_entry as it stands: a kernel entered some other way (Linux's vmlinux
    /// through its PVH note, whose e_entry is a physical address outside every p_vaddr range)
    /// is loaded by its segments alone.
    public static func parse(_ bytes: [UInt8], resolvingEntry: Bool = true) throws(BootError) -> ELFImage {
        guard hasMagic(bytes) else { throw .notELF }
        guard bytes.count >= 16 else { throw .truncatedHeader(needed: 16, fileSize: bytes.count) }
        let elfClass: ELFClass
        switch bytes[4] {
        case 1: elfClass = .elf32
        case 2: elfClass = .elf64
        default: throw .unsupportedELFClass(bytes[4])
        }
        guard bytes[5] == 1 else { throw .unsupportedEndianness(bytes[5]) }
        guard bytes[6] == 1 else { throw .unsupportedELFVersion(UInt32(bytes[6])) }

        let is64 = elfClass == .elf64
        let headerSize = is64 ? 64 : 52
        guard bytes.count >= headerSize else { throw .truncatedHeader(needed: headerSize, fileSize: bytes.count) }
        let header = ByteWindow(bytes, at: 0)
        let type = header.u16(16)
        let machine = header.u16(18)
        let version = header.u32(20)
        let expectedMachine = is64 ? machineX86_64 : machine386
        guard machine == expectedMachine else { throw .wrongMachine(elfClass: elfClass, machine: machine) }
        guard type == typeExecutable else { throw .notExecutable(type: type) }
        guard version == 1 else { throw .unsupportedELFVersion(version) }

        let entry = is64 ? header.u64(24) : UInt64(header.u32(24))
        let phoff = is64 ? header.u64(32) : UInt64(header.u32(28))
        let phentsize = header.u16(is64 ? 54 : 42)
        let phnum = Int(header.u16(is64 ? 56 : 44))
        let minimumEntrySize = is64 ? 56 : 32
        guard phnum <= maximumProgramHeaders else {
            throw .tooManyProgramHeaders(count: phnum, limit: maximumProgramHeaders)
        }
        guard phnum > 0 else { throw .noLoadableSegments }
        guard Int(phentsize) >= minimumEntrySize else {
            throw .badProgramHeaderEntrySize(phentsize, expected: minimumEntrySize)
        }
        // phnum <= 128 and phentsize <= 0xffff, so the product cannot overflow.
        let tableSize = UInt64(phnum) * UInt64(phentsize)
        guard let tableEnd = phoff.checkedAdd(tableSize), tableEnd <= UInt64(bytes.count) else {
            throw .programHeaderTableOutOfRange(offset: phoff, size: tableSize, fileSize: bytes.count)
        }

        var segments: [LoadSegment] = []
        var indices: [Int] = []
        var notes: [NoteSegment] = []
        for index in 0..<phnum {
            // In range: phoff + index * phentsize + minimumEntrySize <= tableEnd <= bytes.count.
            let ph = ByteWindow(bytes, at: Int(phoff) + index * Int(phentsize))
            if ph.u32(0) == programTypeNote {
                let offset = is64 ? ph.u64(8) : UInt64(ph.u32(4))
                let size = is64 ? ph.u64(32) : UInt64(ph.u32(16))
                let alignment = is64 ? ph.u64(48) : UInt64(ph.u32(28))
                notes.append(NoteSegment(index: index, offset: offset, size: size, alignment: alignment == 8 ? 8 : 4))
                continue
            }
            guard ph.u32(0) == programTypeLoad else { continue }
            let segment: LoadSegment
            if is64 {
                segment = LoadSegment(fileOffset: ph.u64(8), fileSize: ph.u64(32), memorySize: ph.u64(40),
                                      physicalAddress: ph.u64(24), virtualAddress: ph.u64(16))
            } else {
                segment = LoadSegment(fileOffset: UInt64(ph.u32(4)), fileSize: UInt64(ph.u32(16)),
                                      memorySize: UInt64(ph.u32(20)), physicalAddress: UInt64(ph.u32(12)),
                                      virtualAddress: UInt64(ph.u32(8)))
            }
            guard segment.fileSize <= segment.memorySize else {
                throw .fileSizeExceedsMemorySize(index: index, fileSize: segment.fileSize,
                                                 memorySize: segment.memorySize)
            }
            guard let fileEnd = segment.fileOffset.checkedAdd(segment.fileSize),
                  fileEnd <= UInt64(bytes.count) else {
                throw .truncatedSegment(index: index, offset: segment.fileOffset, size: segment.fileSize,
                                        fileSize: bytes.count)
            }
            if segment.memorySize == 0 { continue }
            segments.append(segment)
            indices.append(index)
        }
        guard !segments.isEmpty else { throw .noLoadableSegments }

        // Physical overlap, with ends saturated so wrapping ranges still compare sensibly.
        for i in segments.indices {
            for j in segments.indices where j > i {
                if overlaps(segments[i].physicalAddress, segments[i].memorySize,
                            segments[j].physicalAddress, segments[j].memorySize) {
                    throw .overlappingSegments(first: indices[i], second: indices[j])
                }
            }
        }

        guard resolvingEntry else {
            return ELFImage(elfClass: elfClass, entry: entry, physicalEntry: entry, segments: segments,
                            segmentIndices: indices, noteSegments: notes)
        }
        guard let containing = segments.first(where: {
            entry >= $0.virtualAddress && entry - $0.virtualAddress < $0.memorySize
        }) else { throw .entryNotInSegment(entry: entry) }
        // Cannot overflow past the segment's physical end unless that end wraps; placement rejects those.
        let physicalEntry = containing.physicalAddress &+ (entry - containing.virtualAddress)

        return ELFImage(elfClass: elfClass, entry: entry, physicalEntry: physicalEntry, segments: segments,
                        segmentIndices: indices, noteSegments: notes)
    }

    /// The segment whose physical range holds `address`, if any.
    func segment(containingPhysical address: UInt64) -> LoadSegment? {
        segments.first { address >= $0.physicalAddress && address - $0.physicalAddress < $0.memorySize }
    }
}

/// One ELF note (System V ABI, "Note Section"): a name saying whose note it is, a type that
/// means something to that owner, and a descriptor.
public struct ELFNote: Sendable, Equatable {
    /// The owner, without its NUL terminator ("Xen", "GNU", "Linux").
    public var name: String
    public var type: UInt32
    public var descriptor: [UInt8]

    public init(name: String, type: UInt32, descriptor: [UInt8]) {
        self.name = name; self.type = type; self.descriptor = descriptor
    }

    /// Bytes of a note header: namesz, descsz, type.
    static let headerSize: UInt64 = 12

    /// Parses the notes of the PT_NOTE segment `segment`: `size` bytes at file `offset`, each
    /// name and descriptor padded to `alignment` (4, or 8 for segments aligned so). Every size is
    /// checked against the segment before a byte of it is read.
    static func parse(_ bytes: [UInt8], segment: Int, offset: UInt64, size: UInt64,
                      alignment: UInt64) throws(BootError) -> [ELFNote] {
        guard let end = offset.checkedAdd(size), end <= UInt64(bytes.count) else {
            throw .truncatedSegment(index: segment, offset: offset, size: size, fileSize: bytes.count)
        }
        var notes: [ELFNote] = []
        var position = offset
        // A trailing run shorter than a header is padding, as linkers leave it.
        while end - position >= headerSize {
            let header = ByteWindow(bytes, at: Int(position))
            let nameSize = UInt64(header.u32(0)), descriptorSize = UInt64(header.u32(4)), type = header.u32(8)
            let nameStart = position + headerSize
            // The sizes are 32-bit, so these sums cannot overflow 64 bits.
            let descriptorStart = alignUp(nameStart + nameSize, alignment) ?? .max
            let next = alignUp(descriptorStart + descriptorSize, alignment) ?? .max
            guard descriptorStart + descriptorSize <= end else {
                throw .badELFNote(segment: segment, offset: position,
                                  reason: "its name (\(nameSize) bytes) and descriptor (\(descriptorSize) bytes) run past the end of the note segment")
            }
            var name = Array(bytes[Int(nameStart)..<Int(nameStart + nameSize)])
            if name.last == 0 { name.removeLast() }
            notes.append(ELFNote(name: String(decoding: name, as: UTF8.self), type: type,
                                 descriptor: Array(bytes[Int(descriptorStart)..<Int(descriptorStart + descriptorSize)])))
            position = min(next, end)
        }
        return notes
    }
}

/// Whether [a, a+aLength) and [b, b+bLength) share a byte; ends that would wrap saturate at 2^64-1.
func overlaps(_ a: UInt64, _ aLength: UInt64, _ b: UInt64, _ bLength: UInt64) -> Bool {
    guard aLength > 0, bLength > 0 else { return false }
    let aEnd = a.addingReportingOverflow(aLength).overflow ? UInt64.max : a + aLength
    let bEnd = b.addingReportingOverflow(bLength).overflow ? UInt64.max : b + bLength
    return a < bEnd && b < aEnd
}

extension UInt64 {
    /// `self + other`, or nil on overflow.
    func checkedAdd(_ other: UInt64) -> UInt64? {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? nil : sum
    }
}

/// Little-endian reads at fixed offsets inside a structure whose extent the caller has already
/// checked against the buffer. Reads go through Swift's bounds-checked subscript regardless.
struct ByteWindow {
    let bytes: [UInt8]
    let base: Int
    init(_ bytes: [UInt8], at base: Int) { self.bytes = bytes; self.base = base }

    func u8(_ offset: Int) -> UInt8 { bytes[base + offset] }
    func u16(_ offset: Int) -> UInt16 { UInt16(u8(offset)) | UInt16(u8(offset + 1)) << 8 }
    func u32(_ offset: Int) -> UInt32 { UInt32(u16(offset)) | UInt32(u16(offset + 2)) << 16 }
    func u64(_ offset: Int) -> UInt64 { UInt64(u32(offset)) | UInt64(u32(offset + 4)) << 32 }
}
