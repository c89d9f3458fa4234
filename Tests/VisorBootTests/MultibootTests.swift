// Multiboot v1 loads: ELF32, ELF64 and a.out-kludge kernels, the information structure, modules.

import Testing
import VisorBoot
import VisorCore

@Suite struct MultibootTests {
    @Test func elf32KernelLoadsAndStartsInProtectedMode() throws {
        let memory = try smallMemory()
        // Dirty the bss so the test sees the loader zero it.
        try memory.fill(0xAA, at: GuestPhysicalAddress(0x20_0800), count: 0x3800)
        let elf = sampleKernel(is64: false)
        let image = try BootLoader.load(kernel: elf.bytes, commandLine: "console=ttyS0", into: memory)

        #expect(image.bootProtocol == .multiboot)
        guard case .multiboot(let result) = image.result else { Issue.record("not multiboot"); return }
        #expect(result.format == .elf32)
        #expect(result.header.offset == TestELF.multibootOffset)
        #expect(result.entry == GuestPhysicalAddress(0x10_0010))
        #expect(result.kernelRanges == [GuestRange(start: 0x10_0000, length: 0x3000),
                                        GuestRange(start: 0x20_0000, length: 0x4000)])
        #expect(result.kernelEnd == 0x20_4000)
        #expect(try memory.bytes(0x10_0000, 0x3000) == pattern(0x3000))
        #expect(try memory.bytes(0x20_0000, 0x800) == pattern(0x800, seed: 9))
        #expect(try memory.bytes(0x20_0800, 0x3800).allSatisfy { $0 == 0 })

        let s = image.initialState
        #expect(s.rax == 0x2BAD_B002)
        #expect(s.rbx == result.infoAddress.rawValue)
        #expect(s.rip == 0x10_0010)
        #expect(s.rflags == 0x2)
        #expect(s.cr0 == X86.cr0ProtectionEnable | X86.cr0ExtensionType)
        #expect(s.cr0 & X86.cr0Paging == 0)
        #expect(s.cr4 == 0 && s.efer == 0)
        #expect(s.cs == .flatCode(selector: 0x08, longMode: false))
        for seg in [s.ds, s.es, s.fs, s.gs, s.ss] { #expect(seg == .flatData(selector: 0x10)) }
        #expect(s.gdtr == DescriptorTableRegister(base: 0x1000, limit: 23))

        // The GDT the selectors refer to really is in guest memory.
        #expect(try memory.u64(0x1000) == 0)
        #expect(try memory.u64(0x1008) == 0x00CF_9B00_0000_FFFF)
        #expect(try memory.u64(0x1010) == 0x00CF_9300_0000_FFFF)
    }

    @Test func elf64KernelWithHeaderLoadsByPhysicalAddress() throws {
        let memory = try smallMemory()
        // Linked high, loaded low: e_entry is virtual and must be translated.
        let elf = sampleKernel(is64: true, virtualBase: 0xFFFF_FFFF_8000_0000)
        let image = try BootLoader.load(kernel: elf.bytes, into: memory)
        guard case .multiboot(let result) = image.result else { Issue.record("not multiboot"); return }
        #expect(result.format == .elf64)
        #expect(result.entry == GuestPhysicalAddress(0x10_0010))
        #expect(image.initialState.rip == 0x10_0010)
        #expect(image.initialState.rax == 0x2BAD_B002)
        #expect(image.initialState.cs.longMode == false)
        #expect(try memory.bytes(0x10_0000, 0x3000) == pattern(0x3000))
    }

    @Test func aoutKludgeLoadsRawImage() throws {
        let memory = try smallMemory()
        try memory.fill(0xAA, at: GuestPhysicalAddress(0x10_2000), count: 0x3000)
        let kernel = aoutImage()
        let image = try BootLoader.load(kernel: kernel, into: memory)
        guard case .multiboot(let result) = image.result else { Issue.record("not multiboot"); return }
        #expect(result.format == .aoutKludge)
        #expect(result.entry == GuestPhysicalAddress(0x10_0100))
        #expect(result.kernelRanges == [GuestRange(start: 0x10_0000, length: 0x5000)])
        #expect(try memory.bytes(0x10_0000, kernel.count) == kernel)
        #expect(try memory.bytes(0x10_2000, 0x3000).allSatisfy { $0 == 0 })
    }

    @Test func aoutKludgeWithInconsistentAddressesIsRefused() throws {
        var kernel = aoutImage()
        // load_addr above header_addr.
        kernel.put(UInt32(0x20_0000), at: 0x40 + 16)
        kernel.put(0 &- MultibootHeader.magic &- kernel.u32(at: 0x44), at: 0x48)
        let memory = try smallMemory()
        let error = loadError(kernel, memory: memory)
        guard case .invalidAoutKludge = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(try memory.isAllZero())
    }

    @Test func informationStructure() throws {
        let memory = try smallMemory(64 << 20)
        let elf = sampleKernel(is64: false)
        let image = try BootLoader.load(kernel: elf.bytes, commandLine: "root=/dev/vda quiet", into: memory)
        let info = image.infoAddress.rawValue
        #expect(info == BootLayout.multibootInfoAddress)
        #expect(image.initialState.rbx == info)

        let flags = try memory.u32(info)
        for bit in [0, 2, 3, 6, 9] { #expect(flags & (1 << bit) != 0, "info flag bit \(bit)") }
        #expect(flags & (1 << 11) == 0, "no VBE information")
        #expect(flags & (1 << 12) == 0, "no framebuffer information")
        #expect(try memory.u32(info + 4) == 640)
        #expect(try memory.u32(info + 8) == (64 << 10) - 1024)

        let cmdline = try memory.u32(info + 16)
        #expect(cmdline != 0)
        #expect(try memory.cString(UInt64(cmdline)) == "root=/dev/vda quiet")
        #expect(try memory.cString(UInt64(try memory.u32(info + 64))) == "Visor")
        #expect(try memory.u32(info + 20) == 0, "no modules")

        // Memory map: low RAM, the reserved legacy hole, RAM from 1 MiB.
        let mmapLength = try memory.u32(info + 44)
        let mmapAddress = UInt64(try memory.u32(info + 48))
        #expect(mmapLength == 3 * 24)
        let entries = try readMemoryMap(memory, at: mmapAddress, length: mmapLength)
        #expect(entries.count == 3)
        #expect(entries.map(\.base) == [0, 0xA_0000, 0x10_0000])
        #expect(entries.map(\.length) == [0xA_0000, 0x6_0000, (64 << 20) - 0x10_0000])
        #expect(entries.map(\.type) == [1, 2, 1])
    }

    @Test func emptyCommandLineIsAValidPointerToEmptyString() throws {
        let memory = try smallMemory()
        // Dirty the info area so an unterminated string would show.
        try memory.fill(0xFF, at: GuestPhysicalAddress(0x9000), count: 0x1000)
        let image = try BootLoader.load(kernel: sampleKernel(is64: false).bytes, commandLine: "", into: memory)
        let info = image.infoAddress.rawValue
        #expect(try memory.u32(info) & MultibootInfo.flagCommandLine != 0)
        let pointer = UInt64(try memory.u32(info + 16))
        #expect(pointer != 0)
        #expect(memory.contains(GuestPhysicalAddress(pointer), length: 1))
        #expect(try memory.u8(pointer) == 0)
    }

    @Test func memoryMapCoversRAMAboveFourGiB() throws {
        let size: UInt64 = (3 << 30) + (16 << 20)
        let memory = try GuestMemory(size: size)
        let image = try BootLoader.load(kernel: sampleKernel(is64: false).bytes, into: memory)
        let info = image.infoAddress.rawValue
        #expect(try memory.u32(info + 8) == UInt32(((3 << 30) - 0x10_0000) / 1024), "mem_upper stops at the 3 GiB hole")
        let entries = try readMemoryMap(memory, at: UInt64(try memory.u32(info + 48)), length: try memory.u32(info + 44))
        #expect(entries.count == 4)
        #expect(entries.last?.base == 1 << 32)
        #expect(entries.last?.length == 16 << 20)
        #expect(entries.last?.type == 1)
    }

    @Test func modulesArePageAlignedAfterTheKernelWithTheirNames() throws {
        let memory = try smallMemory(64 << 20)
        let modules = [BootModule(name: "initrd.img", bytes: pattern(0x1801, seed: 5)),
                       BootModule(name: "config quiet=1", bytes: pattern(100, seed: 7)),
                       BootModule(name: "", bytes: [])]
        let elf = sampleKernel(is64: false)
        let image = try BootLoader.load(kernel: elf.bytes, commandLine: "x", modules: modules, into: memory)
        let info = image.infoAddress.rawValue
        #expect(try memory.u32(info) & MultibootInfo.flagModules != 0)
        #expect(try memory.u32(info + 20) == 3)
        let list = UInt64(try memory.u32(info + 24))

        let kernelEnd: UInt64 = 0x20_4000
        var previousEnd = kernelEnd
        for (i, module) in modules.enumerated() {
            let entry = list + UInt64(i) * 16
            let start = UInt64(try memory.u32(entry)), end = UInt64(try memory.u32(entry + 4))
            #expect(start % 4096 == 0, "module \(i) page-aligned")
            #expect(start >= previousEnd, "module \(i) after the kernel and earlier modules")
            #expect(end - start == UInt64(module.bytes.count))
            #expect(try memory.bytes(start, module.bytes.count) == module.bytes)
            #expect(try memory.cString(UInt64(try memory.u32(entry + 8))) == module.name)
            #expect(image.modules[i].range == GuestRange(start: start, length: UInt64(module.bytes.count)))
            previousEnd = end
        }
        #expect(image.modules[0].range.start.rawValue == kernelEnd, "first module right after the kernel (already aligned)")
    }

    @Test func modulesAfterALowKernelStartAtOneMiB() throws {
        let memory = try smallMemory()
        let elf = TestELF(is64: false, entry: 0x2_0000, segments: [TestSegment(at: 0x2_0000, data: pattern(0x100))],
                          multiboot: TestMultibootHeader())
        let image = try BootLoader.load(kernel: elf.bytes, modules: [BootModule(name: "m", bytes: [1, 2, 3])], into: memory)
        #expect(image.modules.first?.range.start == GuestPhysicalAddress(0x10_0000))
    }

    @Test func aLongCommandLineGoesWhereThereIsRoom() throws {
        // 1 MiB of command line does not fit below the hole; it goes after the kernel.
        let memory = try smallMemory()
        let long = String(repeating: "a", count: 1 << 20)
        let image = try BootLoader.load(kernel: sampleKernel(is64: false).bytes, commandLine: long, into: memory)
        let info = image.infoAddress.rawValue
        #expect(info >= 0x20_4000, "above the kernel, which ends at 0x204000")
        let pointer = UInt64(try memory.u32(info + 16))
        #expect(try memory.bytes(pointer, (1 << 20) + 1) == Array(long.utf8) + [0])
    }

    @Test func kernelOverTheUsualInformationAreaLoads() throws {
        let elf = TestELF(is64: false, entry: 0x9000, segments: [TestSegment(at: 0x9000, data: pattern(0x10))],
                          multiboot: TestMultibootHeader())
        let memory = try smallMemory()
        let image = try BootLoader.load(kernel: elf.bytes, commandLine: "x", into: memory)
        #expect(image.infoAddress.rawValue != 0x9000)
        #expect(try memory.bytes(0x9000, 0x10) == pattern(0x10))
        #expect(try memory.cString(UInt64(try memory.u32(image.infoAddress.rawValue + 16))) == "x")
    }

    @Test func videoModeFlagIsAcceptedWithoutFramebufferInfo() throws {
        let memory = try smallMemory()
        var elf = sampleKernel(is64: false)
        elf.multiboot?.flags |= MultibootHeader.flagVideoMode
        let image = try BootLoader.load(kernel: elf.bytes, into: memory)
        #expect(try memory.u32(image.infoAddress.rawValue) & (1 << 12) == 0)
    }

    @Test func headerAfterFirstEightKiBIsNotFound() throws {
        var bytes = [UInt8](repeating: 0, count: 0x3000)
        bytes.replace(at: 0x2000, with: TestMultibootHeader().bytes)
        #expect(try MultibootHeader.find(in: bytes) == nil)
        bytes.replace(at: 0x1FF4, with: TestMultibootHeader().bytes)
        #expect(try MultibootHeader.find(in: bytes)?.offset == 0x1FF4)
    }

    @Test func unalignedHeaderIsNotFound() throws {
        var bytes = [UInt8](repeating: 0, count: 0x100)
        bytes.replace(at: 0x42, with: TestMultibootHeader().bytes)
        #expect(try MultibootHeader.find(in: bytes) == nil)
    }
}

/// Reads multiboot memory-map entries (size field, base, length, type).
func readMemoryMap(_ memory: GuestMemory, at address: UInt64, length: UInt32) throws -> [MemoryMapEntry] {
    var entries: [MemoryMapEntry] = []
    var p = address
    while p < address + UInt64(length) {
        let size = try memory.u32(p)
        #expect(size == 20)
        entries.append(MemoryMapEntry(base: try memory.u64(p + 4), length: try memory.u64(p + 12), type: try memory.u32(p + 20)))
        p += UInt64(size) + 4
    }
    return entries
}

extension Array where Element == UInt8 {
    func u32(at offset: Int) -> UInt32 {
        (0..<4).reduce(UInt32(0)) { $0 | UInt32(self[offset + $1]) << ($1 * 8) }
    }
}
