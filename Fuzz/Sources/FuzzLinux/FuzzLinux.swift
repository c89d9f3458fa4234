// Fuzz target `linux`: Linux's two boot protocols through `BootLoader.load`, as `visor run` and
// xl.cfg's `ramdisk` use it: a bzImage (setup header, zero page, e820, command line, initrd as
// high as fits below initrd_addr_max, identity map) or an ELF kernel with a PVH note (the notes
// walked with every size checked, hvm_start_info, memory map, initrd module), with the ACPI
// tables Visor builds, into 4 MiB of RAM. An input that is neither falls through to the
// multiboot or long-mode loaders, which have targets of their own.
//
// Input: the kernel file (the command line and an initrd of 0, 17 or 4097 bytes vary with its
// length). Invariants, beyond "never traps": what a successful load reports (kernel, initrd,
// boot data) lies in RAM and does not overlap, and RIP is the entry; a refused image wrote
// nothing (checked on a second, zeroed RAM now and then, as clearing 4 MiB each time would
// slow the target tenfold).

import FuzzSupport
@testable import Visor
import VisorBoot
import VisorCore

/// Visor's own ACPI tables for two vCPUs, built once, as `DevicePlatform` makes them.
let firmware: FirmwareTables? = DevicePlatform.firmwareTables(vcpuCount: 2)

/// A RAM kept zero: every 64th refused input is loaded into it, and it must stay zero.
let untouched: GuestMemory = {
    guard let memory = try? GuestMemory(size: 4 << 20) else { fatalError("cannot allocate guest RAM") }
    return memory
}()
nonisolated(unsafe) var inputs = 0

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzLinux(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    var input = FuzzInput(data, count)
    let kernel = input.rest()
    let commandLine = Array(repeating: "console=ttyS0", count: kernel.count % 4).joined(separator: " ")
    let initrdSize = [0, 17, 4097][kernel.count / 4 % 3]
    let initrd = initrdSize == 0 ? nil : BootModule(name: "initrd", bytes: [UInt8](repeating: 0x5a, count: initrdSize))
    inputs += 1
    let image: BootImage
    do {
        image = try BootLoader.load(kernel: kernel, commandLine: commandLine, initrd: initrd, firmware: firmware,
                                    into: BootFuzzing.memory)
    } catch {
        require(!error.description.isEmpty, "a refusal without a reason")
        if inputs % 64 == 0 {
            _ = try? BootLoader.load(kernel: kernel, commandLine: commandLine, initrd: initrd, firmware: firmware,
                                     into: untouched)
            require(isAllZero(untouched), "a refused image wrote to guest RAM")
        }
        return 0
    }
    let entry: UInt64
    switch image.result {
    case .multiboot(let result): entry = result.entry.rawValue
    case .longMode(let result): entry = result.entry.rawValue
    case .linux(let result): entry = result.entry.rawValue
    case .pvh(let result): entry = result.entry.rawValue
    }
    var ranges = image.kernelRanges + image.bootData.map(\.range)
    if let initrd = image.initrd { ranges.append(initrd) }
    BootFuzzing.checkLoaded(kernelRanges: ranges, modules: image.modules, entry: entry, state: image.initialState)
    return 0
}

/// True when every byte of `memory` reads as zero.
func isAllZero(_ memory: GuestMemory) -> Bool {
    let chunk = 1 << 16
    var offset: UInt64 = 0
    while offset < memory.size {
        guard let bytes = try? memory.read(at: GuestPhysicalAddress(offset), count: chunk) else { return false }
        if bytes.contains(where: { $0 != 0 }) { return false }
        offset += UInt64(chunk)
    }
    return true
}
