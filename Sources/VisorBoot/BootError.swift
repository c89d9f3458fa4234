// Everything that can make a kernel image unbootable, each with a message that names the problem.

import VisorCore

/// Why Visor refused to boot an image. Every case is raised before anything is written into guest
/// memory, so a failed load leaves the guest's RAM exactly as it was.
public enum BootError: Error, Equatable, Sendable, CustomStringConvertible {
    // MARK: Recognising the image
    /// Neither an ELF file nor an image with a multiboot header.
    case unrecognizedImage
    /// The bytes do not start with the ELF magic `7f 45 4c 46`.
    case notELF
    /// EI_CLASS is neither ELFCLASS32 (1) nor ELFCLASS64 (2).
    case unsupportedELFClass(UInt8)
    /// EI_DATA is not ELFDATA2LSB (1): x86 images are little-endian.
    case unsupportedEndianness(UInt8)
    /// EI_VERSION or e_version is not EV_CURRENT (1).
    case unsupportedELFVersion(UInt32)
    /// e_machine does not match the class: EM_386 (3) for ELF32, EM_X86_64 (62) for ELF64.
    case wrongMachine(elfClass: ELFClass, machine: UInt16)
    /// e_type is not ET_EXEC (2).
    case notExecutable(type: UInt16)
    /// The file ends inside the ELF header.
    case truncatedHeader(needed: Int, fileSize: Int)
    /// e_phentsize is smaller than a program header of this class.
    case badProgramHeaderEntrySize(UInt16, expected: Int)
    /// More program headers than Visor is willing to look at.
    case tooManyProgramHeaders(count: Int, limit: Int)
    /// The program header table does not lie inside the file.
    case programHeaderTableOutOfRange(offset: UInt64, size: UInt64, fileSize: Int)
    /// A segment's file bytes (p_offset + p_filesz) run past the end of the file.
    case truncatedSegment(index: Int, offset: UInt64, size: UInt64, fileSize: Int)
    /// A segment claims more file bytes than memory bytes.
    case fileSizeExceedsMemorySize(index: Int, fileSize: UInt64, memorySize: UInt64)
    /// Two loadable segments occupy the same physical memory.
    case overlappingSegments(first: Int, second: Int)
    /// No PT_LOAD segment with a non-zero size.
    case noLoadableSegments
    /// The entry point lies in none of the loaded segments.
    case entryNotInSegment(entry: UInt64)
    /// An ELF32 file without a multiboot header: Visor starts 32-bit kernels only through multiboot.
    case elf32WithoutMultiboot

    // MARK: Placing the image in guest RAM
    /// The loadable segments together are larger than the guest's RAM.
    case imageTooLarge(totalSize: UInt64, ramSize: UInt64)
    /// A segment (by physical address) is not entirely inside usable guest RAM.
    case segmentOutsideRAM(index: Int, address: UInt64, size: UInt64)
    /// A segment or the entry point lies where the boot protocol cannot reach it.
    case notAddressable(what: String, address: UInt64, limit: UInt64)
    /// Two things the loader would write share guest memory (a Visor bug: placement avoids it).
    case placementConflict(String, String)
    /// No free usable RAM below 4 GiB is left, beside the kernel and its modules, for one of
    /// Visor's boot structures (GDT, TSS, page tables, boot stack, multiboot information).
    case noRoomForBootData(what: String, size: UInt64)

    // MARK: Multiboot
    /// A multiboot magic was found, but no header with a valid checksum.
    case badMultibootChecksum(offset: Int)
    /// The header requires features (flag bits 0-15) that Visor does not provide.
    case unsupportedMultibootFlags(UInt32)
    /// The header's a.out-kludge address fields run past the end of the file.
    case truncatedMultibootHeader(offset: Int)
    /// The a.out-kludge addresses are inconsistent.
    case invalidAoutKludge(String)
    /// A multiboot image that is not ELF and does not use the a.out kludge (flag bit 16).
    case multibootImageNotLoadable
    /// A module does not fit in usable RAM below 4 GiB after the kernel.
    case moduleDoesNotFit(name: String, size: UInt64, address: UInt64)
    /// A command line or module name contains a NUL byte, which would cut it short.
    case stringContainsNUL(what: String)

    // MARK: Linux (bzImage and PVH)
    /// The bzImage ends before `what` does.
    case linuxImageTruncated(what: String, needed: UInt64, fileSize: Int)
    /// The setup header's boot protocol version is older than 2.12, the first with a 64-bit entry.
    case linuxProtocolTooOld(version: UInt16)
    /// loadflags LOADED_HIGH is clear: a zImage, which loads below 1 MiB through real mode.
    case linuxNotBzImage
    /// xloadflags XLF_KERNEL_64 is clear: the kernel has no 64-bit entry point.
    case linuxNo64BitEntry
    /// A setup-header field no real kernel has.
    case linuxBadSetupHeader(String)
    /// The memory the kernel needs from its load address (init_size) is not usable guest RAM.
    case linuxKernelDoesNotFit(address: UInt64, size: UInt64, ramSize: UInt64)
    /// The command line is longer than the kernel's cmdline_size allows.
    case commandLineTooLong(length: Int, limit: Int)
    /// No free usable RAM for the initial RAM disk below the kernel's limit.
    case initrdDoesNotFit(size: UInt64, limit: UInt64)
    /// Multiboot modules given to a Linux kernel, which takes one initial RAM disk instead.
    case linuxTakesNoModules(count: Int)
    /// A note in a PT_NOTE segment is malformed.
    case badELFNote(segment: Int, offset: UInt64, reason: String)
    /// The XEN_ELFNOTE_PHYS32_ENTRY note is unusable.
    case badPVHEntry(String)
    /// Firmware tables (ACPI) asked to go outside the reserved BIOS area of guest memory.
    case firmwareOutsideReservedMemory(address: UInt64, size: UInt64)

    /// A guest-memory write failed after validation (a Visor bug, reported rather than trapped).
    case guestMemory(GuestMemoryError)

    public var description: String {
        switch self {
        case .unrecognizedImage:
            return "not an ELF image, and no multiboot header in the first 8 KiB"
        case .notELF:
            return "not an ELF image: the file does not start with the ELF magic 7f 45 4c 46"
        case .unsupportedELFClass(let c):
            return "unsupported ELF class \(c): expected 1 (ELF32) or 2 (ELF64)"
        case .unsupportedEndianness(let d):
            return "unsupported ELF data encoding \(d): x86 images must be little-endian (1)"
        case .unsupportedELFVersion(let v):
            return "unsupported ELF version \(v): expected 1"
        case .wrongMachine(let elfClass, let machine):
            let wanted = elfClass == .elf32 ? "EM_386 (3)" : "EM_X86_64 (62)"
            return "wrong ELF machine \(machine) for \(elfClass): expected \(wanted)"
        case .notExecutable(let type):
            return "ELF type \(type) is not an executable: expected ET_EXEC (2)"
        case .truncatedHeader(let needed, let fileSize):
            return "truncated ELF header: needs \(needed) bytes, the file has \(fileSize)"
        case .badProgramHeaderEntrySize(let size, let expected):
            return "program header entry size \(size) is too small: expected at least \(expected)"
        case .tooManyProgramHeaders(let count, let limit):
            return "\(count) program headers is more than the limit of \(limit)"
        case .programHeaderTableOutOfRange(let offset, let size, let fileSize):
            return "program header table at file offset \(hex(offset)) (\(size) bytes) is outside the \(fileSize)-byte file"
        case .truncatedSegment(let index, let offset, let size, let fileSize):
            return "segment \(index) is truncated: \(size) bytes at file offset \(hex(offset)) run past the end of the \(fileSize)-byte file"
        case .fileSizeExceedsMemorySize(let index, let fileSize, let memorySize):
            return "segment \(index) has p_filesz \(hex(fileSize)) larger than p_memsz \(hex(memorySize))"
        case .overlappingSegments(let first, let second):
            return "segments \(first) and \(second) overlap in physical memory"
        case .noLoadableSegments:
            return "the image has no loadable (PT_LOAD) segments"
        case .entryNotInSegment(let entry):
            return "entry point \(hex(entry)) is not inside any loaded segment"
        case .elf32WithoutMultiboot:
            return "ELF32 image without a multiboot header: Visor boots 32-bit kernels only through multiboot"
        case .imageTooLarge(let total, let ram):
            return "the image's segments need \(hex(total)) bytes, more than the guest's \(hex(ram)) bytes of RAM"
        case .segmentOutsideRAM(let index, let address, let size):
            let (end, overflow) = address.addingReportingOverflow(size)
            if address < BootLayout.lowMemoryHoleEnd && (overflow || end > BootLayout.lowMemoryHoleStart) {
                return "segment \(index) at \(hex(address)) (\(hex(size)) bytes) overlaps the PC's reserved hole "
                    + "[\(hex(BootLayout.lowMemoryHoleStart)), \(hex(BootLayout.lowMemoryHoleEnd))) (VGA memory and BIOS ROMs), "
                    + "where a kernel cannot load"
            }
            return "segment \(index) at \(hex(address)) (\(hex(size)) bytes) is not inside usable guest RAM"
        case .notAddressable(let what, let address, let limit):
            return "\(what) at \(hex(address)) is beyond \(hex(limit)), which the boot protocol cannot reach"
        case .placementConflict(let a, let b):
            return "\(a) overlaps \(b)"
        case .noRoomForBootData(let what, let size):
            return "no free guest RAM below 4 GiB for Visor's \(what) (\(size) bytes) beside the kernel and its modules: give the guest more RAM"
        case .badMultibootChecksum(let offset):
            return "multiboot header at file offset \(hex(UInt64(offset))) has a bad checksum (magic + flags + checksum must be 0)"
        case .unsupportedMultibootFlags(let flags):
            return "multiboot header requires unsupported features (flag bits \(hex(UInt64(flags))))"
        case .truncatedMultibootHeader(let offset):
            return "multiboot header at file offset \(hex(UInt64(offset))) is truncated: its address fields run past the end of the file"
        case .invalidAoutKludge(let reason):
            return "invalid multiboot a.out-kludge addresses: \(reason)"
        case .multibootImageNotLoadable:
            return "multiboot image is not ELF and does not set the a.out-kludge flag (bit 16), so there is nothing to load"
        case .moduleDoesNotFit(let name, let size, let address):
            return "module '\(name)' (\(hex(size)) bytes at \(hex(address))) does not fit in usable guest RAM below 4 GiB"
        case .stringContainsNUL(let what):
            return "the \(what) contains a NUL byte"
        case .linuxImageTruncated(let what, let needed, let fileSize):
            return "truncated Linux kernel image: its \(what) needs \(needed) bytes, the file has \(fileSize)"
        case .linuxProtocolTooOld(let version):
            return "Linux boot protocol \(version >> 8).\(version & 0xff) is too old: Visor needs 2.12 or later (a 64-bit entry point)"
        case .linuxNotBzImage:
            return "the Linux kernel is a zImage (loadflags LOADED_HIGH clear): Visor boots only bzImages"
        case .linuxNo64BitEntry:
            return "the Linux kernel has no 64-bit entry point (xloadflags XLF_KERNEL_64 clear): Visor boots 64-bit kernels"
        case .linuxBadSetupHeader(let reason):
            return "corrupt Linux setup header: \(reason)"
        case .linuxKernelDoesNotFit(let address, let size, let ram):
            return "the Linux kernel needs \(hex(size)) bytes of RAM from \(hex(address)) (its init_size), more than the guest's \(hex(ram)) bytes give: give the guest more RAM"
        case .commandLineTooLong(let length, let limit):
            return "the command line is \(length) bytes, more than the kernel's limit of \(limit)"
        case .initrdDoesNotFit(let size, let limit):
            return "the initial RAM disk (\(hex(size)) bytes) does not fit in free guest RAM below \(hex(limit)): give the guest more RAM"
        case .linuxTakesNoModules(let count):
            return "a Linux kernel takes one initial RAM disk (--initrd), not multiboot modules (\(count) given)"
        case .badELFNote(let segment, let offset, let reason):
            return "malformed ELF note at file offset \(hex(offset)) in segment \(segment): \(reason)"
        case .badPVHEntry(let reason):
            return "unusable PVH entry (XEN_ELFNOTE_PHYS32_ENTRY): \(reason)"
        case .firmwareOutsideReservedMemory(let address, let size):
            return "firmware tables at \(hex(address)) (\(size) bytes) are outside the reserved BIOS area of guest memory"
        case .guestMemory(let error):
            return "guest memory write failed: \(error)"
        }
    }
}

/// `0x` followed by lowercase hex digits.
func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }
