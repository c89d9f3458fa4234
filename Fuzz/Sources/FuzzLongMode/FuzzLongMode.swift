// Fuzz target `longmode`: the plain-ELF64 long-mode loader (segments, identity page tables,
// GDT and TSS, boot information) into 4 MiB of RAM, whether or not the image also carries a
// multiboot header.
//
// Input: the kernel file (the command line and modules vary with its length). Invariants,
// beyond "never traps": what a successful load reports lies in RAM and RIP is the entry.

import FuzzSupport
import VisorBoot

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzLongMode(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    var input = FuzzInput(data, count)
    let kernel = input.rest()
    let (commandLine, modules) = BootFuzzing.extras(for: kernel)
    guard let result = try? LongModeLoader.load(kernel: kernel, commandLine: commandLine, modules: modules,
                                                into: BootFuzzing.memory) else { return 0 }
    BootFuzzing.checkLoaded(kernelRanges: result.kernelRanges, modules: result.modules, entry: result.entry.rawValue,
                            state: initialState(for: result))
    return 0
}
