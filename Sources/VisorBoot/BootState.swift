// The register state each boot protocol starts a kernel in: pure functions of a load result.
// Loaders never set registers; this is the one place that does, and it writes nothing to memory.

import VisorCore

/// Multiboot v1 machine state (specification section 3.2): 32-bit protected mode, paging off.
///
/// EAX = 0x2BADB002, EBX = information address, EIP = entry; CS = flat 32-bit code (0x08),
/// DS/ES/FS/GS/SS = flat data (0x10), matching the GDT the loader wrote (the specification says
/// the OS must not rely on these selectors); CR0 = PE | ET; EFLAGS = 0x2 (IF and VM clear);
/// GDTR = the loader's GDT; IDTR empty; ESP = Visor's boot stack top (undefined by the specification).
public func initialState(for result: MultibootLoadResult) -> X86State {
    var state = X86State()
    state.rax = UInt64(MultibootHeader.bootloaderMagic)
    state.rbx = result.infoAddress.rawValue
    state.rip = result.entry.rawValue
    state.rsp = result.stackTop.rawValue
    state.rflags = X86.rflagsReserved1
    state.cs = .flatCode(selector: BootLayout.ProtectedModeSelectors.code, longMode: false)
    let data = SegmentRegister.flatData(selector: BootLayout.ProtectedModeSelectors.data)
    state.ds = data; state.es = data; state.fs = data; state.gs = data; state.ss = data
    state.gdtr = DescriptorTableRegister(base: result.gdt.base.rawValue, limit: result.gdt.limit)
    state.idtr = DescriptorTableRegister(base: 0, limit: 0)
    state.cr0 = X86.cr0ProtectionEnable | X86.cr0ExtensionType
    state.cr3 = 0; state.cr4 = 0; state.efer = 0
    return state
}

/// Long-mode state for a plain ELF64 kernel: 64-bit mode, paging on with the loader's identity map.
///
/// RIP = entry, RDI = multiboot information address, RSI = 0x2BADB002, RSP = boot stack top;
/// CS = 64-bit code (0x08), DS/ES/FS/GS/SS = flat data (0x10), TR = the 64-bit TSS (0x18);
/// CR0 = PE | ET | PG, CR3 = PML4, CR4 = PAE, EFER = LME | LMA; RFLAGS = 0x2; IDTR empty.
public func initialState(for result: LongModeLoadResult) -> X86State {
    var state = X86State()
    state.rip = result.entry.rawValue
    state.rdi = result.infoAddress.rawValue
    state.rsi = UInt64(MultibootHeader.bootloaderMagic)
    state.rsp = result.stackTop.rawValue
    state.rflags = X86.rflagsReserved1
    state.cs = .flatCode(selector: result.codeSelector, longMode: true)
    let data = SegmentRegister.flatData(selector: result.dataSelector)
    state.ds = data; state.es = data; state.fs = data; state.gs = data; state.ss = data
    state.tr = .taskState(selector: result.taskStateSelector, base: result.taskStateBase.rawValue,
                          limit: result.taskStateLimit)
    state.gdtr = DescriptorTableRegister(base: result.gdt.base.rawValue, limit: result.gdt.limit)
    state.idtr = DescriptorTableRegister(base: 0, limit: 0)
    state.cr0 = X86.cr0ProtectionEnable | X86.cr0ExtensionType | X86.cr0Paging
    state.cr3 = result.pageTableRoot.rawValue
    state.cr4 = X86.cr4PAE
    state.efer = X86.eferLME | X86.eferLMA
    return state
}

/// Linux's 64-bit boot protocol (boot.rst): 64-bit mode, paging on with [0, 4 GiB) identity-mapped.
///
/// RIP = load address + 0x200 (startup_64), RSI = the zero page; CS = __BOOT_CS (0x10, 64-bit
/// code), DS/ES/SS (and FS/GS) = __BOOT_DS (0x18, flat data); interrupts off (RFLAGS = 0x2);
/// CR0 = PE | ET | PG, CR3 = the identity map, CR4 = PAE, EFER = LME | LMA; the other general
/// registers 0 (the protocol asks nothing of them; the 32-bit one asks EBP, EDI and EBX to be 0).
public func initialState(for result: LinuxLoadResult) -> X86State {
    var state = X86State()
    state.rip = result.entry.rawValue
    state.rsi = result.bootParams.rawValue
    state.rflags = X86.rflagsReserved1
    state.cs = .flatCode(selector: LinuxLoader.Selectors.code, longMode: true)
    let data = SegmentRegister.flatData(selector: LinuxLoader.Selectors.data)
    state.ds = data; state.es = data; state.fs = data; state.gs = data; state.ss = data
    state.gdtr = DescriptorTableRegister(base: result.gdt.base.rawValue, limit: result.gdt.limit)
    state.idtr = DescriptorTableRegister(base: 0, limit: 0)
    state.cr0 = X86.cr0ProtectionEnable | X86.cr0ExtensionType | X86.cr0Paging
    state.cr3 = result.pageTableRoot.rawValue
    state.cr4 = X86.cr4PAE
    state.efer = X86.eferLME | X86.eferLMA
    return state
}

/// The PVH entry state (Xen's HVM direct boot ABI): 32-bit protected mode, paging off.
///
/// EIP = the note's entry, EBX = hvm_start_info; CS = flat 32-bit code (0x08), DS/ES/FS/GS/SS =
/// flat data (0x10), TR = a 32-bit TSS with base 0 and limit 0x67 (0x18); CR0 = PE | ET, CR4 = 0,
/// EFER = 0; EFLAGS = 0x2 (IF, TF and VM clear); IDTR empty. The ABI leaves the rest unspecified.
public func initialState(for result: PVHLoadResult) -> X86State {
    var state = X86State()
    state.rip = result.entry.rawValue
    state.rbx = result.startInfo.rawValue
    state.rflags = X86.rflagsReserved1
    state.cs = .flatCode(selector: PVHLoader.Selectors.code, longMode: false)
    let data = SegmentRegister.flatData(selector: PVHLoader.Selectors.data)
    state.ds = data; state.es = data; state.fs = data; state.gs = data; state.ss = data
    state.tr = .taskState(selector: PVHLoader.Selectors.taskState, base: 0, limit: 0x67)
    state.gdtr = DescriptorTableRegister(base: result.gdt.base.rawValue, limit: result.gdt.limit)
    state.idtr = DescriptorTableRegister(base: 0, limit: 0)
    state.cr0 = X86.cr0ProtectionEnable | X86.cr0ExtensionType
    state.cr3 = 0; state.cr4 = 0; state.efer = 0
    return state
}

/// How a kernel was booted.
public enum BootProtocol: Sendable, Equatable {
    /// Multiboot v1, 32-bit protected mode.
    case multiboot
    /// Plain ELF64, 64-bit long mode.
    case elf64LongMode
    /// A Linux bzImage through the 64-bit boot protocol.
    case linux
    /// An ELF kernel through its PVH entry note.
    case pvh
}

/// Where a load put things, per protocol.
public enum LoadResult: Sendable, Equatable {
    case multiboot(MultibootLoadResult)
    case longMode(LongModeLoadResult)
    case linux(LinuxLoadResult)
    case pvh(PVHLoadResult)
}

/// A loaded kernel ready to run: what was loaded where, and the registers to start it with.
public struct BootImage: Sendable, Equatable {
    public var result: LoadResult
    public var initialState: X86State

    public var bootProtocol: BootProtocol {
        switch result {
        case .multiboot: return .multiboot
        case .longMode: return .elf64LongMode
        case .linux: return .linux
        case .pvh: return .pvh
        }
    }
    /// The boot information handed to the kernel: the multiboot information (EBX for
    /// multiboot, RDI for ELF64), the zero page (RSI for Linux) or hvm_start_info (EBX for PVH).
    public var infoAddress: GuestPhysicalAddress {
        switch result {
        case .multiboot(let r): return r.infoAddress
        case .longMode(let r): return r.infoAddress
        case .linux(let r): return r.bootParams
        case .pvh(let r): return r.startInfo
        }
    }
    public var kernelRanges: [GuestRange] {
        switch result {
        case .multiboot(let r): return r.kernelRanges
        case .longMode(let r): return r.kernelRanges
        case .linux(let r): return [r.kernelRange]
        case .pvh(let r): return r.kernelRanges
        }
    }
    /// Multiboot modules (Linux protocols take an initial RAM disk instead: `initrd`).
    public var modules: [LoadedModule] {
        switch result {
        case .multiboot(let r): return r.modules
        case .longMode(let r): return r.modules
        case .linux, .pvh: return []
        }
    }
    /// Where a Linux kernel's initial RAM disk went.
    public var initrd: GuestRange? {
        switch result {
        case .multiboot, .longMode: return nil
        case .linux(let r): return r.initrd
        case .pvh(let r): return r.initrd
        }
    }
    /// Where Visor's boot structures went.
    public var bootData: [BootDataPlacement] {
        switch result {
        case .multiboot(let r): return r.bootData
        case .longMode(let r): return r.bootData
        case .linux(let r): return r.bootData
        case .pvh(let r): return r.bootData
        }
    }
}

/// Picks the boot protocol for an image and loads it.
public enum BootLoader {
    /// A multiboot header in the first 8 KiB → multiboot; a Linux setup header ("HdrS" at 0x202)
    /// → the Linux 64-bit boot protocol; an ELF executable with a XEN_ELFNOTE_PHYS32_ENTRY note →
    /// PVH; otherwise an ELF64 executable → long mode; otherwise an error. (QEMU's `-kernel`
    /// decides in the same order.) Validates completely before writing, so on error guest memory
    /// is unchanged.
    ///
    /// `initrd` is a Linux kernel's initial RAM disk; a multiboot or plain ELF64 kernel gets it
    /// as its first module, as QEMU's `-initrd` does. Linux kernels take no other modules.
    /// `firmware` (the ACPI tables) is written for the Linux protocols, which hand its RSDP
    /// address to the kernel, and for multiboot kernels, which find it by scanning the BIOS area
    /// as on a PC (the hpet guest does).
    public static func load(kernel: [UInt8], commandLine: String = "", modules: [BootModule] = [],
                            initrd: BootModule? = nil, firmware: FirmwareTables? = nil,
                            into memory: GuestMemory) throws(BootError) -> BootImage {
        let withInitrd = (initrd.map { [$0] } ?? []) + modules
        if let header = try MultibootHeader.find(in: kernel) {
            let result = try MultibootLoader.load(kernel: kernel, header: header, commandLine: commandLine,
                                                  modules: withInitrd, firmware: firmware, into: memory)
            return BootImage(result: .multiboot(result), initialState: initialState(for: result))
        }
        if LinuxSetupHeader.isPresent(in: kernel) {
            guard modules.isEmpty else { throw .linuxTakesNoModules(count: modules.count) }
            let result = try LinuxLoader.load(kernel: kernel, commandLine: commandLine, initrd: initrd,
                                              firmware: firmware, into: memory)
            return BootImage(result: .linux(result), initialState: initialState(for: result))
        }
        guard ELFImage.hasMagic(kernel) else { throw .unrecognizedImage }
        if try PVHLoader.hasEntryNote(kernel) {
            guard modules.isEmpty else { throw .linuxTakesNoModules(count: modules.count) }
            let result = try PVHLoader.load(kernel: kernel, commandLine: commandLine, initrd: initrd,
                                            firmware: firmware, into: memory)
            return BootImage(result: .pvh(result), initialState: initialState(for: result))
        }
        let result = try LongModeLoader.load(kernel: kernel, commandLine: commandLine, modules: withInitrd, into: memory)
        return BootImage(result: .longMode(result), initialState: initialState(for: result))
    }

    /// The same, with modules as (name, bytes) pairs.
    public static func load(kernel: [UInt8], commandLine: String = "", modules: [(name: String, bytes: [UInt8])],
                            into memory: GuestMemory) throws(BootError) -> BootImage {
        try load(kernel: kernel, commandLine: commandLine,
                 modules: modules.map { BootModule(name: $0.name, bytes: $0.bytes) }, into: memory)
    }
}
