// Visor's own boot data (GDT, TSS, page tables, boot stack, multiboot information and strings)
// and the modules go where the kernel is not, as QEMU's multiboot loader puts its own after the
// kernel: a kernel is refused only when it does not fit in guest RAM or overlaps the PC's
// reserved hole [0xa0000, 0x100000) (issue #10 item 9).

import Testing
import VisorBoot
import VisorCore

@Suite struct PlacementTests {
    /// A one-segment kernel at `address` (`size` bytes, the first 0x100 from the file, the rest
    /// bss), entered at its first byte: multiboot ELF32, or a plain ELF64 entered in long mode.
    func kernel(at address: UInt64, size: UInt64 = 0x3000, longMode: Bool = false) -> TestELF {
        TestELF(is64: longMode, entry: address,
                segments: [TestSegment(at: address, data: pattern(0x100), memorySize: size)],
                multiboot: longMode ? nil : TestMultibootHeader())
    }

    /// Loads, then checks what every placement must satisfy: the kernel's bytes are intact; each
    /// piece of boot data and each module lies in usable RAM below 4 GiB, outside the hole, and
    /// overlaps neither the kernel nor any other piece; the information reached through the
    /// entry registers gives the command line and the modules.
    @discardableResult
    func loadAndCheck(_ elf: TestELF, memorySize: UInt64 = 8 << 20, modules: [BootModule] = [],
                      sourceLocation: SourceLocation = #_sourceLocation) throws -> BootImage {
        let memory = try smallMemory(memorySize)
        let image = try BootLoader.load(kernel: elf.bytes, commandLine: "console=ttyS0 low", modules: modules,
                                        into: memory)
        for segment in elf.segments {
            #expect(try memory.bytes(segment.physicalAddress, segment.data.count) == segment.data,
                    "kernel bytes intact", sourceLocation: sourceLocation)
        }
        var pieces: [(String, GuestRange)] = image.bootData.map { ($0.name, $0.range) }
        pieces += image.modules.map { ("module \($0.name)", $0.range) }
        let map = memoryMap(of: memory)
        for (name, range) in pieces {
            #expect(range.end <= 1 << 32, "\(name) \(range) below 4 GiB", sourceLocation: sourceLocation)
            #expect(range.start.rawValue >= 0x1000, "\(name) \(range) clear of page 0", sourceLocation: sourceLocation)
            #expect(map.contains { $0.type == MemoryMapEntry.typeRAM && range.start.rawValue >= $0.base && range.end <= $0.end },
                    "\(name) \(range) in usable RAM", sourceLocation: sourceLocation)
            for kernelRange in image.kernelRanges {
                #expect(!Self.overlap(range, kernelRange), "\(name) \(range) overlaps the kernel \(kernelRange)",
                        sourceLocation: sourceLocation)
            }
        }
        for (i, a) in pieces.enumerated() {
            for b in pieces[(i + 1)...] {
                #expect(!Self.overlap(a.1, b.1), "\(a.0) \(a.1) overlaps \(b.0) \(b.1)", sourceLocation: sourceLocation)
            }
        }
        let s = image.initialState
        let info = image.bootProtocol == .multiboot ? s.rbx : s.rdi
        #expect(try memory.cString(UInt64(try memory.u32(info + 16))) == "console=ttyS0 low", sourceLocation: sourceLocation)
        #expect(try memory.u32(info + 20) == UInt32(modules.count), sourceLocation: sourceLocation)
        for (i, module) in modules.enumerated() {
            let entry = UInt64(try memory.u32(info + 24)) + UInt64(i) * 16
            #expect(try memory.bytes(UInt64(try memory.u32(entry)), module.bytes.count) == module.bytes,
                    sourceLocation: sourceLocation)
            #expect(try memory.cString(UInt64(try memory.u32(entry + 8))) == module.name, sourceLocation: sourceLocation)
        }
        // The stack is below its top, inside the boot data, 16-byte aligned.
        #expect(s.rsp % 16 == 0, sourceLocation: sourceLocation)
        #expect(image.bootData.contains { $0.name == "boot stack" && $0.range.end == s.rsp }, sourceLocation: sourceLocation)
        return image
    }

    static func overlap(_ a: GuestRange, _ b: GuestRange) -> Bool {
        a.length > 0 && b.length > 0 && a.start.rawValue < b.end && b.start.rawValue < a.end
    }

    static let module = BootModule(name: "initrd arg=1", bytes: pattern(0x1234, seed: 4))

    @Test("a multiboot kernel at 0x8000 over the usual boot stack and information loads")
    func kernelAt0x8000() throws {
        let image = try loadAndCheck(kernel(at: 0x8000), modules: [Self.module])
        #expect(image.initialState.rip == 0x8000)
        #expect(image.initialState.rbx != 0x9000, "the information moved out of the kernel's way")
        try loadAndCheck(kernel(at: 0x8000, longMode: true), modules: [Self.module])
    }

    @Test("a kernel at 0x1000 over the usual GDT, TSS and page tables loads, on both protocols")
    func kernelAt0x1000() throws {
        let image = try loadAndCheck(kernel(at: 0x1000), modules: [Self.module])
        #expect(image.initialState.gdtr.base != 0x1000)
        let longMode = try loadAndCheck(kernel(at: 0x1000, size: 0x8000, longMode: true), modules: [Self.module])
        #expect(longMode.initialState.cr3 % 0x1000 == 0 && longMode.initialState.cr3 >= 0x9000)
    }

    @Test("a kernel at 1 MiB keeps the usual low-memory layout")
    func kernelAtOneMiB() throws {
        let image = try loadAndCheck(kernel(at: 0x10_0000), modules: [Self.module])
        #expect(image.initialState.gdtr.base == BootLayout.gdtAddress)
        #expect(image.initialState.rsp == BootLayout.bootStackTop)
        #expect(image.infoAddress.rawValue == BootLayout.multibootInfoAddress)
        #expect(image.modules.first?.range.start == GuestPhysicalAddress(0x10_3000), "first module after the kernel")
        let longMode = try loadAndCheck(kernel(at: 0x10_0000, longMode: true))
        #expect(longMode.initialState.cr3 == BootLayout.pml4Address)
        #expect(longMode.initialState.tr.base == BootLayout.tssAddress)
    }

    @Test("a kernel that fills low memory gets its boot data above 1 MiB")
    func kernelFillingLowMemory() throws {
        for longMode in [false, true] {
            let image = try loadAndCheck(kernel(at: 0x1000, size: 0xA_0000 - 0x1000, longMode: longMode),
                                         modules: [Self.module])
            for piece in image.bootData { #expect(piece.range.start.rawValue >= 0x10_0000, "\(piece.name)") }
        }
    }

    @Test("a kernel high in RAM gets its modules below it when nothing is free above")
    func modulesBelowAHighKernel() throws {
        // 8 MiB of RAM, the kernel in its last 2 MiB: the module cannot follow it.
        let image = try loadAndCheck(kernel(at: 0x60_0000, size: 0x20_0000), modules: [Self.module])
        #expect(image.modules.first.map { $0.range.end <= 0x60_0000 } == true)
    }

    @Test("a kernel in the PC's reserved hole is refused, saying so")
    func kernelInTheHole() throws {
        let memory = try smallMemory()
        let error = loadError(kernel(at: 0xB_8000).bytes, memory: memory)
        #expect(error == .segmentOutsideRAM(index: 0, address: 0xB_8000, size: 0x3000))
        #expect(error?.description == "segment 0 at 0xb8000 (0x3000 bytes) overlaps the PC's reserved hole [0xa0000, 0x100000) (VGA memory and BIOS ROMs), where a kernel cannot load")
        #expect(try memory.isAllZero())
        // Ending inside the hole is as bad as starting there.
        #expect(loadError(kernel(at: 0x9_F000, size: 0x2000).bytes, memory: memory)
                == .segmentOutsideRAM(index: 0, address: 0x9_F000, size: 0x2000))
    }

    @Test("a kernel beyond guest RAM is refused, saying so")
    func kernelBeyondRAM() throws {
        let memory = try smallMemory()
        let error = loadError(kernel(at: 0x7F_F000).bytes, memory: memory)
        #expect(error == .segmentOutsideRAM(index: 0, address: 0x7F_F000, size: 0x3000))
        #expect(error?.description == "segment 0 at 0x7ff000 (0x3000 bytes) is not inside usable guest RAM")
    }

    @Test("when the kernel leaves no room for Visor's boot data, the load is refused, naming what did not fit")
    func noRoomForBootData() throws {
        // 16 KiB of RAM, the kernel from 0x1000 to the end: page 0 alone is left, and Visor
        // keeps its data out of it.
        let memory = try GuestMemory(size: 0x4000)
        let error = loadError(kernel(at: 0x1000).bytes, memory: memory)
        #expect(error == .noRoomForBootData(what: "GDT", size: 24))
        #expect(error?.description.contains("no free guest RAM below 4 GiB for Visor's GDT (24 bytes)") == true)
        #expect(try memory.isAllZero())
    }
}
