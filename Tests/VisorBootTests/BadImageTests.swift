// Every kind of bad image gets its own clear error, and a failed load writes nothing.

import Testing
import VisorBoot
import VisorCore

@Suite struct BadImageTests {
    /// Loads into fresh memory, expects `expected`, and checks every byte of RAM is still zero.
    func expectRefused(_ kernel: [UInt8], modules: [BootModule] = [], memorySize: UInt64 = 8 << 20,
                       _ expected: BootError, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let memory = try smallMemory(memorySize)
        let error = loadError(kernel, modules: modules, memory: memory)
        #expect(error == expected, sourceLocation: sourceLocation)
        #expect(try memory.isAllZero(), "nothing mapped after a failed load", sourceLocation: sourceLocation)
    }

    var good64: TestELF { sampleKernel(is64: true, multiboot: nil) }
    var good32: TestELF { sampleKernel(is64: false) }

    @Test func notELFAndNoHeader() throws {
        try expectRefused(Array("just some text, not a kernel".utf8), .unrecognizedImage)
        try expectRefused([], .unrecognizedImage)
        #expect(BootError.unrecognizedImage.description == "not an ELF image, and no multiboot header in the first 8 KiB")
        #expect(throws: BootError.notELF) { try ELFImage.parse([0x7f, 0x45, 0x4c, 0x47]) }
    }

    @Test func wrongMachine() throws {
        var elf = good64; elf.machine = 3
        try expectRefused(elf.bytes, .wrongMachine(elfClass: .elf64, machine: 3))
        var elf32 = good32; elf32.machine = 62
        try expectRefused(elf32.bytes, .wrongMachine(elfClass: .elf32, machine: 62))
        #expect(BootError.wrongMachine(elfClass: .elf32, machine: 62).description.contains("EM_386"))
    }

    @Test func wrongClassEndiannessAndType() throws {
        var bytes = good64.bytes; bytes[4] = 3
        try expectRefused(bytes, .unsupportedELFClass(3))
        bytes = good64.bytes; bytes[5] = 2
        try expectRefused(bytes, .unsupportedEndianness(2))
        var elf = good64; elf.type = 3
        try expectRefused(elf.bytes, .notExecutable(type: 3))
    }

    @Test func elf32WithoutMultibootHeader() throws {
        try expectRefused(sampleKernel(is64: false, multiboot: nil).bytes, .elf32WithoutMultiboot)
    }

    @Test func truncatedHeader() throws {
        try expectRefused(Array(good64.bytes[0..<40]), .truncatedHeader(needed: 64, fileSize: 40))
        try expectRefused(Array(good64.bytes[0..<10]), .truncatedHeader(needed: 16, fileSize: 10))
    }

    @Test func truncatedSegment() throws {
        let elf = good64
        let bytes = elf.bytes
        let cut = Array(bytes[0..<(elf.dataOffsets[1] + 0x10)])
        try expectRefused(cut, .truncatedSegment(index: 1, offset: UInt64(elf.dataOffsets[1]), size: 0x800, fileSize: cut.count))
    }

    @Test func programHeaderTableOutOfRange() throws {
        var bytes = good64.bytes
        bytes.put(UInt64(bytes.count - 8), at: 32)
        try expectRefused(bytes, .programHeaderTableOutOfRange(offset: UInt64(bytes.count - 8), size: 112, fileSize: bytes.count))
        bytes.put(UInt64.max - 4, at: 32)
        try expectRefused(bytes, .programHeaderTableOutOfRange(offset: UInt64.max - 4, size: 112, fileSize: bytes.count))
    }

    @Test func segmentOutsideRAM() throws {
        var elf = good64
        elf.segments[1].physicalAddress = 0x7F_F000   // 16 KiB memsz from here runs past 8 MiB
        try expectRefused(elf.bytes, .segmentOutsideRAM(index: 1, address: 0x7F_F000, size: 0x4000))
        elf = good64
        elf.segments[1].physicalAddress = 0xC_0000    // inside the legacy hole, reported reserved
        try expectRefused(elf.bytes, .segmentOutsideRAM(index: 1, address: 0xC_0000, size: 0x4000))
    }

    @Test func overlappingSegments() throws {
        var elf = good32
        elf.segments[1].physicalAddress = 0x10_2000
        try expectRefused(elf.bytes, .overlappingSegments(first: 0, second: 1))
    }

    @Test func fileSizeLargerThanMemorySize() throws {
        var elf = good64
        elf.segments[0].memorySize = 0x1000
        try expectRefused(elf.bytes, .fileSizeExceedsMemorySize(index: 0, fileSize: 0x3000, memorySize: 0x1000))
    }

    @Test func absurdSizes() throws {
        var elf = good64
        elf.segments[1].memorySize = 0xFFFF_FFFF_FFFF
        try expectRefused(elf.bytes, .imageTooLarge(totalSize: 0xFFFF_FFFF_FFFF + 0x3000, ramSize: 8 << 20))
        var bytes = good64.bytes
        bytes.put(UInt16(5000), at: 56)
        try expectRefused(bytes, .tooManyProgramHeaders(count: 5000, limit: ELFImage.maximumProgramHeaders))
        bytes = good64.bytes
        bytes.put(UInt16(8), at: 54)
        try expectRefused(bytes, .badProgramHeaderEntrySize(8, expected: 56))
    }

    @Test func noLoadableSegments() throws {
        var elf = good64
        for i in elf.segments.indices { elf.segments[i].type = 4 }  // PT_NOTE
        try expectRefused(elf.bytes, .noLoadableSegments)
        var bytes = good64.bytes
        bytes.put(UInt16(0), at: 56)
        try expectRefused(bytes, .noLoadableSegments)
    }

    @Test func entryOutsideSegments() throws {
        var elf = good64
        elf.entry = 0x50_0000
        try expectRefused(elf.bytes, .entryNotInSegment(entry: 0x50_0000))
    }

    @Test func badMultibootChecksum() throws {
        var elf = good32
        elf.multiboot?.checksumError = 1
        try expectRefused(elf.bytes, .badMultibootChecksum(offset: TestELF.multibootOffset))
    }

    @Test func unsupportedMultibootRequirement() throws {
        var elf = good32
        elf.multiboot?.flags |= 1 << 5
        try expectRefused(elf.bytes, .unsupportedMultibootFlags(1 << 5))
    }

    @Test func multibootImageNeitherELFNorKludge() throws {
        var bytes = [UInt8](repeating: 0x90, count: 0x400)
        bytes.replace(at: 0x10, with: TestMultibootHeader().bytes)
        try expectRefused(bytes, .multibootImageNotLoadable)
    }

    @Test func truncatedKludgeHeader() throws {
        var bytes = [UInt8](repeating: 0, count: 0x20)
        bytes.replace(at: 0x8, with: TestMultibootHeader(flags: MultibootHeader.flagAoutKludge).bytes)
        try expectRefused(bytes, .truncatedMultibootHeader(offset: 8))
    }

    @Test func moduleTooBigForRAM() throws {
        let big = [UInt8](repeating: 1, count: 7 << 20)
        try expectRefused(good32.bytes, modules: [BootModule(name: "huge", bytes: big)],
                          .moduleDoesNotFit(name: "huge", size: 7 << 20, address: 0x20_4000))
        #expect(BootError.moduleDoesNotFit(name: "huge", size: 1, address: 0).description.contains("huge"))
    }

    @Test func commandLineLargerThanFreeRAM() throws {
        // 8 MiB of RAM, 6 MiB of it free: a 7 MiB command line has nowhere to go.
        let memory = try smallMemory()
        let long = String(repeating: "a", count: 7 << 20)
        let error = loadError(good32.bytes, commandLine: long, memory: memory)
        guard case .noRoomForBootData(what: "multiboot information", let size)? = error else {
            Issue.record("got \(String(describing: error))"); return
        }
        #expect(size > 7 << 20)
        #expect(try memory.isAllZero())
    }

    @Test func nulInCommandLine() throws {
        let memory = try smallMemory()
        #expect(loadError(good32.bytes, commandLine: "a\0b", memory: memory) == .stringContainsNUL(what: "command line"))
        #expect(try memory.isAllZero())
    }

    @Test func ramTooSmallForBootStructures() throws {
        // 16 KiB of RAM: the kernel fits at 0 and the GDT and TSS beside it; the page tables do not.
        let elf = TestELF(is64: true, entry: 0, segments: [TestSegment(at: 0, data: pattern(0x100))])
        let memory = try GuestMemory(size: 0x4000)
        #expect(loadError(elf.bytes, memory: memory) == .noRoomForBootData(what: "page tables", size: 0x6000))
        #expect(try memory.isAllZero())
    }

    @Test func everyErrorHasADescription() {
        let samples: [BootError] = [
            .unrecognizedImage, .notELF, .unsupportedELFClass(9), .noLoadableSegments, .elf32WithoutMultiboot,
            .overlappingSegments(first: 0, second: 1), .badMultibootChecksum(offset: 0),
            .invalidAoutKludge("x"), .multibootImageNotLoadable, .placementConflict("a", "b"),
            .noRoomForBootData(what: "GDT", size: 24), .segmentOutsideRAM(index: 0, address: 0xb8000, size: 1),
            .segmentOutsideRAM(index: 0, address: 0x800000, size: 1),
        ]
        for error in samples { #expect(error.description.count > 10, "\(error)") }
        #expect(Set(samples.map(\.description)).count == samples.count)
    }
}
