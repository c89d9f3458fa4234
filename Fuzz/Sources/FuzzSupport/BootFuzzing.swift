// What the three loader targets share: a guest RAM to load into, and a command line and modules
// that vary with the input (so the boot-information layout is exercised without taking bytes
// away from the kernel image, which is the whole input).

import VisorBoot
import VisorCore

public enum BootFuzzing {
    /// 4 MiB of RAM, made once: a load validates before it writes, and what an earlier input
    /// wrote does not change how the next one is placed.
    public static let memory: GuestMemory = {
        guard let memory = try? GuestMemory(size: 4 << 20) else { fatalError("cannot allocate guest RAM") }
        return memory
    }()

    /// A command line of 0-3 words and 0-2 modules (the last one page-sized plus one), chosen
    /// by the input's length.
    public static func extras(for kernel: [UInt8]) -> (commandLine: String, modules: [BootModule]) {
        let n = kernel.count
        let commandLine = Array(repeating: "console=ttyS0", count: n % 4).joined(separator: " ")
        let modules = (0..<(n / 4 % 3)).map { BootModule(name: "module\($0) arg", bytes: [UInt8](repeating: 0x5a, count: $0 == 0 ? 17 : 4097)) }
        return (commandLine, modules)
    }

    /// What a successful load promises: everything it reports lies in RAM, and the entry point
    /// is where the registers start.
    public static func checkLoaded(kernelRanges: [GuestRange], modules: [LoadedModule], entry: UInt64, state: X86State) {
        for range in kernelRanges + modules.map(\.range) where range.length > 0 {
            require(memory.contains(range.start, length: range.length), "loaded \(range) outside RAM")
        }
        require(state.rip == entry, "entry \(entry) but RIP \(state.rip)")
    }
}
