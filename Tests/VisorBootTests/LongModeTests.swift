// Plain ELF64 kernels: long-mode page tables, GDT, TSS and the initial 64-bit state.

import Testing
import VisorBoot
import VisorCore

@Suite struct LongModeTests {
    /// Walks the loader's 4-level tables for `virtual` and returns the physical address (2 MiB pages).
    func translate(_ memory: GuestMemory, cr3: UInt64, _ virtual: UInt64) throws -> UInt64? {
        let pml4e = try memory.u64(cr3 + ((virtual >> 39) & 511) * 8)
        guard pml4e & 1 != 0 else { return nil }
        let pdpte = try memory.u64((pml4e & 0x000F_FFFF_FFFF_F000) + ((virtual >> 30) & 511) * 8)
        guard pdpte & 1 != 0, pdpte & 0x80 == 0 else { return nil }
        let pde = try memory.u64((pdpte & 0x000F_FFFF_FFFF_F000) + ((virtual >> 21) & 511) * 8)
        guard pde & 1 != 0, pde & 0x80 != 0, pde & 2 != 0 else { return nil }
        return (pde & 0x000F_FFFF_FFE0_0000) | (virtual & 0x1F_FFFF)
    }

    @Test func plainELF64BootsInLongMode() throws {
        let memory = try smallMemory()
        let elf = sampleKernel(is64: true, multiboot: nil)
        let image = try BootLoader.load(kernel: elf.bytes, commandLine: "hello", into: memory)
        #expect(image.bootProtocol == .elf64LongMode)
        guard case .longMode(let result) = image.result else { Issue.record("not long mode"); return }
        #expect(result.entry == GuestPhysicalAddress(0x10_0010))
        #expect(result.pageTableRoot == GuestPhysicalAddress(BootLayout.pml4Address))
        #expect(try memory.bytes(0x10_0000, 0x3000) == pattern(0x3000))

        let s = image.initialState
        #expect(s.rip == 0x10_0010)
        #expect(s.rdi == result.infoAddress.rawValue)
        #expect(s.rsi == 0x2BAD_B002)
        #expect(s.rsp == BootLayout.bootStackTop)
        #expect(s.rflags == 0x2)
        #expect(s.cr0 == X86.cr0ProtectionEnable | X86.cr0ExtensionType | X86.cr0Paging)
        #expect(s.cr3 == 0x2000)
        #expect(s.cr4 == X86.cr4PAE)
        #expect(s.efer & (X86.eferLME | X86.eferLMA) == X86.eferLME | X86.eferLMA)
        #expect(s.cs == .flatCode(selector: 0x08, longMode: true))
        #expect(s.cs.longMode && !s.cs.defaultSize32)
        for seg in [s.ds, s.es, s.fs, s.gs, s.ss] { #expect(seg == .flatData(selector: 0x10)) }
        #expect(s.tr == .taskState(selector: 0x18, base: BootLayout.tssAddress, limit: 103))
        #expect(s.gdtr == DescriptorTableRegister(base: 0x1000, limit: 39))
        #expect(try memory.cString(s.rdi == 0 ? 0 : UInt64(try memory.u32(s.rdi + 16))) == "hello")
    }

    @Test func pageTablesIdentityMapFirstFourGiB() throws {
        let memory = try smallMemory()
        let image = try BootLoader.load(kernel: sampleKernel(is64: true, multiboot: nil).bytes, into: memory)
        let cr3 = image.initialState.cr3
        for address: UInt64 in [0, 0x10_0010, 0x1F_FFFF, 0x20_0000, 0x4000_1234, 0xBFFF_FFFF, 0xFEE0_0000, 0xFFFF_FFFF] {
            #expect(try translate(memory, cr3: cr3, address) == address, "identity at \(hex(address))")
        }
        #expect(try translate(memory, cr3: cr3, 1 << 32) == nil, "nothing mapped at 4 GiB")
        // Exact entry encodings: PML4[0] → PDPT, PDPT[3] → 4th PD, PD entry = 2 MiB page, P|RW|PS.
        #expect(try memory.u64(0x2000) == 0x3003)
        #expect(try memory.u64(0x2008) == 0)
        #expect(try memory.u64(0x3018) == 0x7003)
        #expect(try memory.u64(0x4008) == 0x20_0083)
        #expect(try memory.u64(0x7FF8) == 0xFFE0_0083)
    }

    @Test func gdtAndTaskStateSegmentBytes() throws {
        let memory = try smallMemory()
        let image = try BootLoader.load(kernel: sampleKernel(is64: true, multiboot: nil).bytes, into: memory)
        guard case .longMode(let result) = image.result else { Issue.record("not long mode"); return }
        #expect(result.gdt == GDTPlacement(base: GuestPhysicalAddress(0x1000), limit: 39))
        #expect(try memory.u64(0x1000) == 0)
        #expect(try memory.u64(0x1008) == 0x00AF_9B00_0000_FFFF, "64-bit code: L=1, D=0")
        #expect(try memory.u64(0x1010) == 0x00CF_9300_0000_FFFF, "flat data")
        #expect(try memory.u64(0x1018) == 0x0000_8B00_1100_0067, "busy 64-bit TSS at 0x1100, limit 0x67")
        #expect(try memory.u64(0x1020) == 0, "TSS base bits 63:32")
        #expect(try memory.u16(BootLayout.tssAddress + 102) == 104, "no I/O bitmap")
    }

    @Test func higherHalfEntryIsTranslatedToItsPhysicalAddress() throws {
        let memory = try smallMemory()
        let elf = sampleKernel(is64: true, multiboot: nil, virtualBase: 0xFFFF_FFFF_8000_0000)
        let image = try BootLoader.load(kernel: elf.bytes, into: memory)
        #expect(image.initialState.rip == 0x10_0010)
    }

    @Test func moduleAndCommandLineReachableThroughRDI() throws {
        let memory = try smallMemory()
        let image = try BootLoader.load(kernel: sampleKernel(is64: true, multiboot: nil).bytes, commandLine: "",
                                        modules: [(name: "ramdisk", bytes: pattern(10))], into: memory)
        let info = image.initialState.rdi
        #expect(try memory.u8(UInt64(try memory.u32(info + 16))) == 0, "empty command line")
        #expect(try memory.u32(info + 20) == 1)
        let entry = UInt64(try memory.u32(info + 24))
        #expect(try memory.cString(UInt64(try memory.u32(entry + 8))) == "ramdisk")
        #expect(try memory.bytes(UInt64(try memory.u32(entry)), 10) == pattern(10))
    }

    @Test func kernelOverThePageTablesMovesThem() throws {
        let memory = try smallMemory()
        let elf = TestELF(is64: true, entry: 0x3000, segments: [TestSegment(at: 0x3000, data: pattern(0x100))])
        let image = try BootLoader.load(kernel: elf.bytes, into: memory)
        let cr3 = image.initialState.cr3
        #expect(cr3 != BootLayout.pml4Address && cr3 % 0x1000 == 0)
        #expect(try memory.bytes(0x3000, 0x100) == pattern(0x100))
        for address: UInt64 in [0, 0x3000, 0x10_0000, 0xFFFF_FFFF] {
            #expect(try translate(memory, cr3: cr3, address) == address, "identity at \(hex(address))")
        }
    }

    @Test func entryAboveIdentityMapIsRefused() throws {
        let memory = try GuestMemory(size: (3 << 30) + (16 << 20))
        let elf = TestELF(is64: true, entry: 0x1_0000_0000, segments: [TestSegment(at: 0x1_0000_0000, data: pattern(0x10))])
        #expect(loadError(elf.bytes, memory: memory)
                == .notAddressable(what: "entry point", address: 0x1_0000_0000, limit: 1 << 32))
    }
}

func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
