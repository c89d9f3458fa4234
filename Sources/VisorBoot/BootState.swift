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

/// How a kernel was booted.
public enum BootProtocol: Sendable, Equatable {
    /// Multiboot v1, 32-bit protected mode.
    case multiboot
    /// Plain ELF64, 64-bit long mode.
    case elf64LongMode
}

/// Where a load put things, per protocol.
public enum LoadResult: Sendable, Equatable {
    case multiboot(MultibootLoadResult)
    case longMode(LongModeLoadResult)
}

/// A loaded kernel ready to run: what was loaded where, and the registers to start it with.
public struct BootImage: Sendable, Equatable {
    public var result: LoadResult
    public var initialState: X86State

    public var bootProtocol: BootProtocol {
        switch result {
        case .multiboot: return .multiboot
        case .longMode: return .elf64LongMode
        }
    }
    /// The multiboot information address (EBX for multiboot, RDI for ELF64).
    public var infoAddress: GuestPhysicalAddress {
        switch result {
        case .multiboot(let r): return r.infoAddress
        case .longMode(let r): return r.infoAddress
        }
    }
    public var kernelRanges: [GuestRange] {
        switch result {
        case .multiboot(let r): return r.kernelRanges
        case .longMode(let r): return r.kernelRanges
        }
    }
    public var modules: [LoadedModule] {
        switch result {
        case .multiboot(let r): return r.modules
        case .longMode(let r): return r.modules
        }
    }
    /// Where Visor's boot structures went.
    public var bootData: [BootDataPlacement] {
        switch result {
        case .multiboot(let r): return r.bootData
        case .longMode(let r): return r.bootData
        }
    }
}

/// Picks the boot protocol for an image and loads it.
public enum BootLoader {
    /// A multiboot header in the first 8 KiB → multiboot; otherwise an ELF64 executable → long
    /// mode; otherwise an error. Validates completely before writing, so on error guest memory is
    /// unchanged.
    public static func load(kernel: [UInt8], commandLine: String = "", modules: [BootModule] = [],
                            into memory: GuestMemory) throws(BootError) -> BootImage {
        if let header = try MultibootHeader.find(in: kernel) {
            let result = try MultibootLoader.load(kernel: kernel, header: header, commandLine: commandLine,
                                                  modules: modules, into: memory)
            return BootImage(result: .multiboot(result), initialState: initialState(for: result))
        }
        guard ELFImage.hasMagic(kernel) else { throw .unrecognizedImage }
        let result = try LongModeLoader.load(kernel: kernel, commandLine: commandLine, modules: modules, into: memory)
        return BootImage(result: .longMode(result), initialState: initialState(for: result))
    }

    /// The same, with modules as (name, bytes) pairs.
    public static func load(kernel: [UInt8], commandLine: String = "", modules: [(name: String, bytes: [UInt8])],
                            into memory: GuestMemory) throws(BootError) -> BootImage {
        try load(kernel: kernel, commandLine: commandLine,
                 modules: modules.map { BootModule(name: $0.name, bytes: $0.bytes) }, into: memory)
    }
}
