// Fuzz target `multiboot`: `BootLoader.load`, the entry `visor run` uses for a kernel file —
// the multiboot loader (ELF32, ELF64 and a.out-kludge kernels, modules, boot information)
// when the image has a multiboot header, else the long-mode loader — into 4 MiB of RAM.
//
// Input: the kernel file (the command line and modules vary with its length). Invariants,
// beyond "never traps": what a successful load reports lies in RAM and RIP is the entry.

import FuzzSupport
import VisorBoot

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMultiboot(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    var input = FuzzInput(data, count)
    let kernel = input.rest()
    let (commandLine, modules) = BootFuzzing.extras(for: kernel)
    guard let image = try? BootLoader.load(kernel: kernel, commandLine: commandLine, modules: modules,
                                           into: BootFuzzing.memory) else { return 0 }
    let entry: UInt64
    switch image.result {
    case .multiboot(let result): entry = result.entry.rawValue
    case .longMode(let result): entry = result.entry.rawValue
    // Only without modules: the `linux` target checks these.
    case .linux(let result): entry = result.entry.rawValue
    case .pvh(let result): entry = result.entry.rawValue
    }
    BootFuzzing.checkLoaded(kernelRanges: image.kernelRanges, modules: image.modules, entry: entry,
                            state: image.initialState)
    return 0
}
