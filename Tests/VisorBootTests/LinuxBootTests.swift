// Linux's two boot protocols: a bzImage through the 64-bit boot protocol (the zero page, e820,
// command line, initial RAM disk, ACPI RSDP, identity map, __BOOT_CS/__BOOT_DS) and an ELF kernel
// through its PVH note (hvm_start_info). Synthetic images are written field by field after
// boot.rst and Xen's start_info.h; every bad one must be refused with its own error and leave
// guest memory untouched.

import Testing
import VisorBoot
import VisorCore

/// A bzImage under construction: the setup sectors with the header at 0x1f1, then the
/// protected-mode kernel.
struct TestBzImage {
    var setupSectors: UInt8 = 4
    var version: UInt16 = 0x020f
    var loadFlags: UInt8 = 0x01
    var extendedLoadFlags: UInt16 = 0x0003  // XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G
    /// The byte at 0x201: the header ends at 0x202 + this.
    var headerLength: UInt8 = 0x6a
    var kernel: [UInt8] = pattern(0x3000, seed: 5)
    /// syssize in 16-byte paragraphs; nil: the kernel's length.
    var systemSize: UInt32? = nil
    var initSize: UInt32 = 0x10_0000
    var preferredAddress: UInt64 = 0x20_0000
    var kernelAlignment: UInt32 = 0x20_0000
    var relocatable: UInt8 = 1
    var commandLineSize: UInt32 = 255
    var initrdAddressMax: UInt32 = 0x7fff_ffff

    var bytes: [UInt8] {
        let setupSize = (Int(setupSectors == 0 ? 4 : setupSectors) + 1) * 512
        var b = [UInt8](repeating: 0, count: setupSize)
        b[0x1f1] = setupSectors
        b.put(systemSize ?? UInt32((kernel.count + 15) / 16), at: 0x1f4)
        b.put(UInt16(0xffff), at: 0x1fa)            // vid_mode: normal
        b.put(UInt16(0xaa55), at: 0x1fe)
        b[0x200] = 0xeb                              // jmp short over the header
        b[0x201] = headerLength
        b.replace(at: 0x202, with: Array("HdrS".utf8))
        b.put(version, at: 0x206)
        b[0x211] = loadFlags
        b.put(UInt32(0x10_0000), at: 0x214)          // code32_start
        b.put(initrdAddressMax, at: 0x22c)
        b.put(kernelAlignment, at: 0x230)
        b[0x234] = relocatable
        b[0x235] = 21                                // min_alignment
        b.put(extendedLoadFlags, at: 0x236)
        b.put(commandLineSize, at: 0x238)
        b.put(preferredAddress, at: 0x258)
        b.put(initSize, at: 0x260)
        return b + kernel + [UInt8](repeating: 0, count: (16 - kernel.count % 16) % 16)
    }
}

/// An ELF note as a linker lays it out: namesz, descsz, type, the name and the descriptor, each
/// padded to 4 bytes.
func elfNote(name: String, type: UInt32, descriptor: [UInt8]) -> [UInt8] {
    var b: [UInt8] = []
    let nameBytes = Array(name.utf8) + [0]
    b.le(UInt32(nameBytes.count)); b.le(UInt32(descriptor.count)); b.le(type)
    b += nameBytes + [UInt8](repeating: 0, count: (4 - nameBytes.count % 4) % 4)
    b += descriptor + [UInt8](repeating: 0, count: (4 - descriptor.count % 4) % 4)
    return b
}

/// A vmlinux-like ELF64 kernel: text at 1 MiB whose virtual addresses are high, an e_entry that
/// is a physical address outside every virtual range (as Linux's is), and the Xen notes in a
/// PT_NOTE segment with the PVH entry at 1 MiB + 0x40.
func pvhKernel(entryDescriptor: [UInt8] = UInt64(0x10_0040).littleEndianBytes, extraNotes: [UInt8] = []) -> TestELF {
    let notes = elfNote(name: "Xen", type: 6, descriptor: Array("linux\0".utf8))
        + elfNote(name: "Xen", type: 18, descriptor: entryDescriptor) + extraNotes
    return TestELF(is64: true, entry: 0x100_0000,
                   segments: [TestSegment(at: 0x10_0000, virtual: 0xffff_ffff_8010_0000, data: pattern(0x2000, seed: 7),
                                          memorySize: 0x4000),
                              TestSegment(at: 0, virtual: 0, data: notes, memorySize: UInt64(notes.count), type: 4)])
}

extension FixedWidthInteger {
    var littleEndianBytes: [UInt8] { (0..<(Self.bitWidth / 8)).map { UInt8(truncatingIfNeeded: self >> ($0 * 8)) } }
}

/// ACPI-like firmware bytes for the BIOS area: an RSDP signature at 0xe0000.
let testFirmware = FirmwareTables(address: 0xe_0000, bytes: Array("RSD PTR ".utf8) + pattern(100, seed: 3),
                                  rsdpAddress: 0xe_0000)

@Suite struct LinuxBzImageTests {
    func load(_ image: [UInt8], commandLine: String = "console=ttyS0", initrd: BootModule? = nil,
              firmware: FirmwareTables? = testFirmware, memory: GuestMemory) throws -> (BootImage, LinuxLoadResult) {
        let boot = try BootLoader.load(kernel: image, commandLine: commandLine, initrd: initrd, firmware: firmware,
                                       into: memory)
        guard case .linux(let result) = boot.result else { throw BootError.unrecognizedImage }
        return (boot, result)
    }

    @Test func aBzImageLoadsAtItsPreferredAddressAndEntersAt0x200() throws {
        let memory = try smallMemory()
        let bz = TestBzImage()
        let (boot, result) = try load(bz.bytes, memory: memory)
        #expect(boot.bootProtocol == .linux)
        #expect(result.loadAddress == GuestPhysicalAddress(0x20_0000))
        #expect(result.entry == GuestPhysicalAddress(0x20_0200), "startup_64 = load address + 0x200")
        #expect(try memory.bytes(0x20_0000, bz.kernel.count) == bz.kernel, "the protected-mode kernel, not the setup")
        #expect(result.kernelRange == GuestRange(start: 0x20_0000, length: 0x10_0000), "init_size reserved")
    }

    @Test func theInitialStateIsThe64BitBootProtocols() throws {
        let memory = try smallMemory()
        let (boot, result) = try load(TestBzImage().bytes, memory: memory)
        let s = boot.initialState
        #expect(s.rip == 0x20_0200)
        #expect(s.rsi == result.bootParams.rawValue, "RSI = the zero page")
        #expect(s.rflags == 0x2, "interrupts off")
        #expect(s.cs == .flatCode(selector: 0x10, longMode: true), "__BOOT_CS")
        for seg in [s.ds, s.es, s.ss] { #expect(seg == .flatData(selector: 0x18), "__BOOT_DS") }
        #expect(s.cr0 & (X86.cr0ProtectionEnable | X86.cr0Paging) == X86.cr0ProtectionEnable | X86.cr0Paging)
        #expect(s.cr4 & X86.cr4PAE != 0)
        #expect(s.efer & (X86.eferLME | X86.eferLMA) == X86.eferLME | X86.eferLMA)
        #expect(s.rbx == 0 && s.rbp == 0 && s.rdi == 0, "the other registers zero")
        // The GDT holds the descriptors the selectors name.
        let gdt = s.gdtr.base
        #expect(try memory.u64(gdt + 0x10) == 0x00AF_9B00_0000_FFFF, "64-bit code at 0x10")
        #expect(try memory.u64(gdt + 0x18) == 0x00CF_9300_0000_FFFF, "flat data at 0x18")
        #expect(s.gdtr.limit == 31)
        // The identity map covers the kernel, the zero page and the command line.
        let tests = LongModeTests()
        for address in [result.entry.rawValue, result.kernelRange.end - 1, result.bootParams.rawValue,
                        result.commandLineAddress.rawValue] {
            #expect(try tests.translate(memory, cr3: s.cr3, address) == address)
        }
    }

    @Test func theZeroPageHoldsTheHeaderAndTheLoadersFields() throws {
        let memory = try smallMemory()
        let bz = TestBzImage()
        let initrd = BootModule(name: "initrd", bytes: pattern(0x1800, seed: 11))
        let (_, result) = try load(bz.bytes, commandLine: "console=ttyS0 quiet", initrd: initrd, memory: memory)
        let zp = result.bootParams.rawValue
        #expect(try memory.u16(zp + 0x1fe) == 0xaa55, "the setup header is copied")
        #expect(try memory.u32(zp + 0x202) == 0x5372_6448)
        #expect(try memory.u16(zp + 0x206) == 0x020f)
        #expect(try memory.u8(zp + 0x210) == 0xff, "type_of_loader: undefined")
        #expect(try memory.u32(zp + 0x214) == 0x20_0000, "code32_start: where the kernel is")
        let commandLine = UInt64(try memory.u32(zp + 0x228)) | UInt64(try memory.u32(zp + 0x0c8)) << 32
        #expect(commandLine == result.commandLineAddress.rawValue)
        #expect(try memory.cString(commandLine) == "console=ttyS0 quiet")
        let ramdisk = UInt64(try memory.u32(zp + 0x218)) | UInt64(try memory.u32(zp + 0x0c0)) << 32
        let ramdiskSize = UInt64(try memory.u32(zp + 0x21c)) | UInt64(try memory.u32(zp + 0x0c4)) << 32
        #expect(ramdisk == result.initrd?.start.rawValue && ramdiskSize == 0x1800)
        #expect(try memory.bytes(ramdisk, 0x1800) == initrd.bytes)
        #expect(try memory.u64(zp + 0x070) == 0xe_0000, "acpi_rsdp_addr")
        // The e820 map is Visor's memory map.
        let entries = Int(try memory.u8(zp + 0x1e8))
        #expect(entries == result.memoryMap.count && entries > 0)
        for (i, entry) in result.memoryMap.enumerated() {
            let at = zp + 0x2d0 + UInt64(i * 20)
            #expect(try memory.u64(at) == entry.base && memory.u64(at + 8) == entry.length && memory.u32(at + 16) == entry.type)
        }
        #expect(result.memoryMap.contains { $0.base == 0xa_0000 && $0.type == 2 }, "the BIOS hole reserved")
        #expect(try memory.u8(zp + 0x1ef) == 0, "the sentinel stays 0: the header was copied, not the whole sector")
    }

    @Test func theInitrdGoesAsHighAsItFitsClearOfTheKernel() throws {
        let memory = try smallMemory(16 << 20)
        let initrd = BootModule(name: "initrd", bytes: pattern(0x2345, seed: 2))
        let (_, result) = try load(TestBzImage().bytes, initrd: initrd, memory: memory)
        let range = try #require(result.initrd)
        #expect(range.start.rawValue % 4096 == 0)
        #expect(range.end <= 16 << 20 && range.end > (16 << 20) - 4096, "at the top of RAM")
        #expect(range.start.rawValue >= result.kernelRange.end || range.end <= result.kernelRange.start.rawValue)
    }

    @Test func theInitrdStaysBelowInitrdAddrMax() throws {
        let memory = try smallMemory(16 << 20)
        var bz = TestBzImage()
        bz.initrdAddressMax = 0x5f_ffff
        let initrd = BootModule(name: "initrd", bytes: pattern(0x3000, seed: 2))
        let (_, result) = try load(bz.bytes, initrd: initrd, memory: memory)
        let range = try #require(result.initrd)
        #expect(range.end <= 0x60_0000 && range.end > 0x60_0000 - 4096, "as high as it may go: its last byte ≤ initrd_addr_max")
    }

    @Test func theFirmwareTablesGoToTheBIOSArea() throws {
        let memory = try smallMemory()
        _ = try load(TestBzImage().bytes, memory: memory)
        #expect(try memory.bytes(0xe_0000, testFirmware.bytes.count) == testFirmware.bytes)
    }

    @Test func anEmptyInitrdIsNoInitrd() throws {
        let memory = try smallMemory()
        let (_, result) = try load(TestBzImage().bytes, initrd: BootModule(name: "empty", bytes: []), memory: memory)
        #expect(result.initrd == nil)
        #expect(try memory.u32(result.bootParams.rawValue + 0x21c) == 0)
    }

    @Test func aNonRelocatableKernelStillLoadsAtItsAddress() throws {
        let memory = try smallMemory()
        var bz = TestBzImage()
        bz.relocatable = 0
        bz.kernelAlignment = 0  // unused when not relocatable
        bz.preferredAddress = 0x30_0000
        let (_, result) = try load(bz.bytes, memory: memory)
        #expect(result.entry == GuestPhysicalAddress(0x30_0200))
    }

    @Test func aCommandLineAsLongAsCmdlineSizeFits() throws {
        let memory = try smallMemory()
        let text = String(repeating: "x", count: 255)
        let (_, result) = try load(TestBzImage().bytes, commandLine: text, memory: memory)
        #expect(try memory.cString(result.commandLineAddress.rawValue) == text)
    }
}

@Suite struct InitrdForOtherKernelsTests {
    @Test func aMultibootKernelGetsTheInitrdAsItsFirstModule() throws {
        let memory = try smallMemory()
        let boot = try BootLoader.load(kernel: sampleKernel(is64: false).bytes,
                                       modules: [BootModule(name: "second", bytes: [2])],
                                       initrd: BootModule(name: "initrd.gz", bytes: [1, 1]), firmware: testFirmware,
                                       into: memory)
        #expect(boot.modules.map(\.name) == ["initrd.gz", "second"], "as QEMU's -initrd for a multiboot kernel")
        #expect(boot.initrd == nil)
        #expect(try memory.bytes(testFirmware.address, testFirmware.bytes.count) == testFirmware.bytes,
                "the firmware tables in the BIOS area, where a multiboot kernel's RSDP scan finds them (the hpet guest's does)")
    }
}

@Suite struct BadLinuxImageTests {
    func expectRefused(_ kernel: [UInt8], commandLine: String = "", modules: [BootModule] = [],
                       initrd: BootModule? = nil, memorySize: UInt64 = 8 << 20, _ expected: BootError,
                       sourceLocation: SourceLocation = #_sourceLocation) throws {
        let memory = try smallMemory(memorySize)
        var error: BootError?
        do {
            _ = try BootLoader.load(kernel: kernel, commandLine: commandLine, modules: modules, initrd: initrd,
                                    firmware: testFirmware, into: memory)
        } catch let e { error = e }
        #expect(error == expected, sourceLocation: sourceLocation)
        if let error { #expect(!error.description.isEmpty) }
        #expect(try memory.isAllZero(), "nothing written after a refused load", sourceLocation: sourceLocation)
    }

    @Test func truncatedImages() throws {
        let bytes = TestBzImage().bytes
        try expectRefused(Array(bytes[0..<0x230]), .linuxImageTruncated(what: "setup header", needed: 0x26c, fileSize: 0x230))
        try expectRefused(Array(bytes[0..<0x204]), .unrecognizedImage)  // "HdrS" cut: no header at all
        let cut = bytes.count - 0x100
        try expectRefused(Array(bytes[0..<cut]),
                          .linuxImageTruncated(what: "protected-mode kernel (syssize)", needed: UInt64(bytes.count), fileSize: cut))
    }

    @Test func oldProtocolsAndZImagesAndNo64BitEntry() throws {
        var bz = TestBzImage(); bz.version = 0x020b
        try expectRefused(bz.bytes, .linuxProtocolTooOld(version: 0x020b))
        #expect(BootError.linuxProtocolTooOld(version: 0x020b).description.contains("2.11"))
        bz = TestBzImage(); bz.loadFlags = 0
        try expectRefused(bz.bytes, .linuxNotBzImage)
        bz = TestBzImage(); bz.extendedLoadFlags = 0x2
        try expectRefused(bz.bytes, .linuxNo64BitEntry)
    }

    @Test func corruptHeaderFields() throws {
        var bz = TestBzImage(); bz.headerLength = 0x20
        try expectRefused(bz.bytes, .linuxBadSetupHeader("it ends at 0x222, before init_size at 0x260, which protocol 2.15 has"))
        bz = TestBzImage(); bz.headerLength = 0xa0
        try expectRefused(bz.bytes, .linuxBadSetupHeader("it claims to end at 0x2a2, past the zero page's header area (0x290)"))
        bz = TestBzImage(); bz.systemSize = 0
        try expectRefused(bz.bytes, .linuxBadSetupHeader("syssize is 0: there is no protected-mode kernel"))
        bz = TestBzImage(); bz.kernelAlignment = 0x30_0000
        try expectRefused(bz.bytes, .linuxBadSetupHeader("kernel_alignment 0x300000 is not a power of two of at least 4 KiB"))
        bz = TestBzImage(); bz.initSize = 0x1000
        try expectRefused(bz.bytes, .linuxBadSetupHeader("init_size 0x1000 is smaller than the kernel it must hold (0x3000 bytes)"))
        bz = TestBzImage(); bz.kernel = pattern(0x100); bz.initSize = 0x1000
        try expectRefused(bz.bytes, .linuxBadSetupHeader("the protected-mode kernel (256 bytes) ends before its 64-bit entry at +0x200"))
    }

    @Test func setupSectorsPastTheFile() throws {
        var bz = TestBzImage()
        bz.setupSectors = 200
        var bytes = bz.bytes
        bytes.removeLast(bytes.count - 0x1000)  // the file ends long before sector 201
        try expectRefused(bytes, .linuxImageTruncated(what: "protected-mode kernel (syssize)",
                                                      needed: UInt64(201 * 512 + 0x3000), fileSize: 0x1000))
    }

    @Test func aKernelThatDoesNotFitInRAM() throws {
        var bz = TestBzImage(); bz.initSize = 0x100_0000
        try expectRefused(bz.bytes, .linuxKernelDoesNotFit(address: 0x20_0000, size: 0x100_0000, ramSize: 8 << 20))
        bz = TestBzImage(); bz.preferredAddress = 0xffff_ffff_ffe0_0000
        try expectRefused(bz.bytes, .linuxKernelDoesNotFit(address: 0xffff_ffff_ffe0_0000, size: 0x10_0000, ramSize: 8 << 20))
        bz = TestBzImage(); bz.preferredAddress = 0xa_0000; bz.relocatable = 0
        try expectRefused(bz.bytes, .linuxKernelDoesNotFit(address: 0xa_0000, size: 0x10_0000, ramSize: 8 << 20))
    }

    @Test func commandLineAndInitrdLimits() throws {
        try expectRefused(TestBzImage().bytes, commandLine: String(repeating: "y", count: 256),
                          .commandLineTooLong(length: 256, limit: 255))
        try expectRefused(TestBzImage().bytes, commandLine: "a\0b", .stringContainsNUL(what: "command line"))
        try expectRefused(TestBzImage().bytes, initrd: BootModule(name: "big", bytes: [UInt8](repeating: 1, count: 7 << 20)),
                          .initrdDoesNotFit(size: 7 << 20, limit: 0x8000_0000))
        var bz = TestBzImage(); bz.initrdAddressMax = 0xfff
        try expectRefused(bz.bytes, initrd: BootModule(name: "r", bytes: [1, 2, 3]), .initrdDoesNotFit(size: 3, limit: 0x1000))
    }

    @Test func multibootModulesAreRefused() throws {
        try expectRefused(TestBzImage().bytes, modules: [BootModule(name: "m", bytes: [1])], .linuxTakesNoModules(count: 1))
        try expectRefused(pvhKernel().bytes, modules: [BootModule(name: "m", bytes: [1]), BootModule(name: "n", bytes: [2])],
                          .linuxTakesNoModules(count: 2))
    }
}

@Suite struct PVHTests {
    @Test func theEntryComesFromTheXenNote() throws {
        let memory = try smallMemory()
        let initrd = BootModule(name: "initrd", bytes: pattern(0x1000, seed: 4))
        let boot = try BootLoader.load(kernel: pvhKernel().bytes, commandLine: "console=ttyS0", initrd: initrd,
                                       firmware: testFirmware, into: memory)
        #expect(boot.bootProtocol == .pvh)
        guard case .pvh(let result) = boot.result else { Issue.record("not PVH"); return }
        #expect(result.entry == GuestPhysicalAddress(0x10_0040))
        #expect(try memory.bytes(0x10_0000, 0x2000) == pattern(0x2000, seed: 7), "segments load by p_paddr")
        #expect(try memory.bytes(0x10_2000, 0x2000).allSatisfy { $0 == 0 }, "bss zeroed")
        #expect(boot.initrd == result.initrd)

        let s = boot.initialState
        #expect(s.rip == 0x10_0040)
        #expect(s.rbx == result.startInfo.rawValue, "EBX = hvm_start_info")
        #expect(s.cr0 == X86.cr0ProtectionEnable | X86.cr0ExtensionType, "protected mode, paging off")
        #expect(s.cr4 == 0 && s.efer == 0 && s.rflags == 0x2)
        #expect(s.cs == .flatCode(selector: 0x08, longMode: false) && s.cs.defaultSize32)
        for seg in [s.ds, s.es, s.fs, s.gs, s.ss] { #expect(seg == .flatData(selector: 0x10)) }
        #expect(s.tr == .taskState(selector: 0x18, base: 0, limit: 0x67), "a 32-bit TSS, base 0, limit 0x67")
        #expect(try memory.u64(s.gdtr.base + 0x08) == 0x00CF_9B00_0000_FFFF)
        #expect(try memory.u64(s.gdtr.base + 0x18) == 0x0000_8B00_0000_0067)
    }

    @Test func startInfoHasTheMapCommandLineModuleAndRSDP() throws {
        let memory = try smallMemory()
        let initrd = BootModule(name: "initrd", bytes: pattern(0x1000, seed: 4))
        let boot = try BootLoader.load(kernel: pvhKernel().bytes, commandLine: "console=ttyS0 quiet", initrd: initrd,
                                       firmware: testFirmware, into: memory)
        guard case .pvh(let result) = boot.result else { Issue.record("not PVH"); return }
        let info = result.startInfo.rawValue
        #expect(try memory.u32(info) == 0x336e_c578, "magic")
        #expect(try memory.u32(info + 4) == 1, "version 1: with the memory map")
        #expect(try memory.u32(info + 12) == 1, "one module")
        let module = try memory.u64(info + 16)
        #expect(try memory.u64(module) == result.initrd?.start.rawValue && memory.u64(module + 8) == 0x1000)
        #expect(try memory.bytes(try memory.u64(module), 0x1000) == initrd.bytes)
        #expect(try memory.cString(try memory.u64(info + 24)) == "console=ttyS0 quiet")
        #expect(try memory.u64(info + 32) == 0xe_0000, "rsdp_paddr")
        let map = try memory.u64(info + 40), count = Int(try memory.u32(info + 48))
        #expect(count == result.memoryMap.count)
        for (i, entry) in result.memoryMap.enumerated() {
            let at = map + UInt64(i * 24)
            #expect(try memory.u64(at) == entry.base && memory.u64(at + 8) == entry.length && memory.u32(at + 16) == entry.type)
        }
        let range = try #require(result.initrd)
        #expect(range.end > (8 << 20) - 4096, "the initial RAM disk at the top of RAM")
    }

    @Test func without4ByteEntriesAndWithoutInitrd() throws {
        let memory = try smallMemory()
        let boot = try BootLoader.load(kernel: pvhKernel(entryDescriptor: UInt32(0x10_0100).littleEndianBytes).bytes,
                                       into: memory)
        guard case .pvh(let result) = boot.result else { Issue.record("not PVH"); return }
        #expect(result.entry == GuestPhysicalAddress(0x10_0100))
        #expect(try memory.u32(result.startInfo.rawValue + 12) == 0 && memory.u64(result.startInfo.rawValue + 16) == 0)
        #expect(try memory.u64(result.startInfo.rawValue + 32) == 0, "no firmware tables, no RSDP")
    }

    @Test func aType18NoteOfAnotherOwnerIsNotPVH() throws {
        var elf = pvhKernel()
        let notes = elfNote(name: "GNU", type: 18, descriptor: UInt32(0x10_0040).littleEndianBytes)
        elf.segments[1] = TestSegment(at: 0, virtual: 0, data: notes, type: 4)
        let memory = try smallMemory()
        #expect(throws: BootError.entryNotInSegment(entry: 0x100_0000)) {
            _ = try BootLoader.load(kernel: elf.bytes, into: memory)
        }
    }
}

@Suite struct BadPVHImageTests {
    func expectRefused(_ kernel: [UInt8], _ expected: BootError, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let memory = try smallMemory()
        var error: BootError?
        do { _ = try PVHLoader.load(kernel: kernel, commandLine: "x", firmware: testFirmware, into: memory) } catch let e { error = e }
        #expect(error == expected, sourceLocation: sourceLocation)
        #expect(try memory.isAllZero(), "nothing written after a refused load", sourceLocation: sourceLocation)
    }

    @Test func badEntryNotes() throws {
        try expectRefused(pvhKernel(entryDescriptor: [1, 2, 3]).bytes,
                          .badPVHEntry("the note's descriptor is 3 bytes, not a 4- or 8-byte address"))
        try expectRefused(pvhKernel(entryDescriptor: UInt64(0x1_0010_0000).littleEndianBytes).bytes,
                          .badPVHEntry("the entry point 0x100100000 is beyond 4 GiB, out of reach of 32-bit protected mode"))
        try expectRefused(pvhKernel(entryDescriptor: UInt32(0x50_0000).littleEndianBytes).bytes,
                          .badPVHEntry("the entry point 0x500000 is in none of the loaded segments"))
    }

    @Test func malformedNotes() throws {
        // A note whose name claims to run past the end of the segment.
        var note = elfNote(name: "Xen", type: 18, descriptor: UInt32(0x10_0040).littleEndianBytes)
        note.put(UInt32(0x7fff_ffff), at: 0)
        var elf = pvhKernel()
        elf.segments[1] = TestSegment(at: 0, virtual: 0, data: note, type: 4)
        let offset = UInt64(elf.dataOffsets[1])
        try expectRefused(elf.bytes, .badELFNote(segment: 1, offset: offset,
                                                 reason: "its name (2147483647 bytes) and descriptor (4 bytes) run past the end of the note segment"))
        // A descriptor size of 2^32 - 1.
        note = elfNote(name: "Xen", type: 18, descriptor: UInt32(0x10_0040).littleEndianBytes)
        note.put(UInt32.max, at: 4)
        elf.segments[1] = TestSegment(at: 0, virtual: 0, data: note, type: 4)
        try expectRefused(elf.bytes, .badELFNote(segment: 1, offset: offset,
                                                 reason: "its name (4 bytes) and descriptor (4294967295 bytes) run past the end of the note segment"))
        // A PT_NOTE segment outside the file.
        var bytes = pvhKernel().bytes
        bytes.put(UInt64(0x7fff_0000), at: elf.programHeaderField(1, 8))
        try expectRefused(bytes, .truncatedSegment(index: 1, offset: 0x7fff_0000, size: UInt64(pvhKernel().segments[1].data.count),
                                                   fileSize: bytes.count))
        // No PVH note at all.
        try expectRefused(sampleKernel(is64: true, multiboot: nil).bytes, .badPVHEntry("the image has no XEN_ELFNOTE_PHYS32_ENTRY note"))
    }

    @Test func aSegmentOutsideRAM() throws {
        var elf = pvhKernel()
        elf.segments[0] = TestSegment(at: 0x7f_0000, virtual: 0xffff_ffff_8010_0000, data: pattern(0x100), memorySize: 0x20_0000)
        try expectRefused(elf.bytes, .badPVHEntry("the entry point 0x100040 is in none of the loaded segments"))
        elf = pvhKernel(entryDescriptor: UInt32(0x7f_0000).littleEndianBytes)
        elf.segments[0] = TestSegment(at: 0x7f_0000, virtual: 0xffff_ffff_8010_0000, data: pattern(0x100), memorySize: 0x20_0000)
        try expectRefused(elf.bytes, .segmentOutsideRAM(index: 0, address: 0x7f_0000, size: 0x20_0000))
    }
}

@Suite struct LinuxRobustnessTests {
    /// Mutated bzImages and PVH kernels, with and without an initrd: each loads or throws a
    /// BootError, never traps, and a refused one writes nothing.
    @Test func mutatedLinuxImagesLoadOrThrow() throws {
        let seed = RobustnessTests.seed
        var rng = SplitMix64(state: seed ^ 0x11AA)
        var small = TestBzImage(); small.preferredAddress = 0x10_0000
        let bases = [small.bytes, pvhKernel().bytes]
        var loaded = 0, refused = 0
        for iteration in 0..<1500 {
            var bytes = bases[iteration % bases.count]
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                guard !bytes.isEmpty else { break }
                // Mostly the setup header (0x1f1-0x270) and the ELF and note headers (below 0x300).
                let limit = Bool.random(using: &rng) ? min(bytes.count, 0x300) : bytes.count
                let at = Int.random(in: 0..<limit, using: &rng)
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: bytes[at] = UInt8.random(in: 0...255, using: &rng)
                case 1:
                    let value = [0, 1, 0xff, 0x1000, 0x7fff_ffff, 0xffff_ffff, UInt64.max, 0x20_0000].randomElement(using: &rng)!
                    for i in 0..<8 where at + i < bytes.count { bytes[at + i] = UInt8(truncatingIfNeeded: value >> (i * 8)) }
                case 2:
                    let value = UInt32.random(in: 0...UInt32.max, using: &rng)
                    for i in 0..<4 where at + i < bytes.count { bytes[at + i] = UInt8(truncatingIfNeeded: value >> (i * 8)) }
                default: bytes.removeLast(Int.random(in: 0...bytes.count, using: &rng))
                }
            }
            let memory = try smallMemory(4 << 20)
            let initrd = iteration % 3 == 0 ? BootModule(name: "r", bytes: pattern(0x800)) : nil
            do {
                _ = try BootLoader.load(kernel: bytes, commandLine: "fuzz", initrd: initrd, firmware: testFirmware, into: memory)
                loaded += 1
            } catch {
                refused += 1
                #expect(!error.description.isEmpty)
                if iteration % 50 == 0 {
                    #expect(try memory.isAllZero(), "seed \(seed) iteration \(iteration): \(error) but memory was written")
                }
            }
        }
        #expect(loaded > 50, "seed \(seed): the mutations must leave some images loadable")
        #expect(refused > 300, "seed \(seed): and refuse many")
    }
}
