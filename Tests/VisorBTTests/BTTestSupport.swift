// A small machine for the bt tests: RAM, a bus that answers ports and MMIO with fixed values,
// and a CPU in 64-, 32- or 16-bit mode with paging off, running code placed at 0x1000 either
// on the interpreter alone or with a BTExecutor in front of it.

import Testing
import VisorCore
import VisorX86
import VisorX86Decode
@testable import VisorBT

final class BTTestBus: X86Bus {
    let memory: GuestMemory
    var hasPendingExit = false
    init(size: UInt64 = 4 << 20) throws { memory = try GuestMemory(size: size) }
    /// A bus over another vCPU's RAM (vCPUs of one machine).
    init(memory: GuestMemory) { self.memory = memory }
    func portRead(port: UInt16, size: UInt8) throws(X86Stop) -> UInt32 { 0xffff_ffff }
    func portWrite(port: UInt16, size: UInt8, value: UInt32) {}
    func mmioRead(address: UInt64, size: UInt8) throws(X86Stop) -> UInt64 { 0x1122_3344_5566_7788 }
    func mmioWrite(address: UInt64, size: UInt8, value: UInt64) {}
    func cpuid(function: UInt32, index: UInt32) -> CPUIDEntry { CPUIDEntry(function: function, index: index) }
    func readTimeStampCounter() -> UInt64 { 0 }
    func readMSR(_ index: UInt32) -> UInt64? { nil }
    func writeMSR(_ index: UInt32, value: UInt64) -> Bool { false }
}

/// One CPU over its own RAM, on `interp` alone or with a bt executor.
struct BTHarness {
    let bus: BTTestBus
    let machine: X86Machine
    let executor: BTExecutor?
    var cpu: X86CPU { machine.cpu }
    static let codeAddress: UInt64 = 0x1000

    /// `shared` (made for `memory`) and `vcpuIndex` make this one of several vCPUs over `memory`.
    init(translated: Bool, mode: CodeMode = .bits64, cacheBytes: Int = 1 << 20,
         memory: GuestMemory? = nil, shared: X86SharedState? = nil, vcpuIndex: Int = 0) throws {
        bus = try memory.map { BTTestBus(memory: $0) } ?? BTTestBus()
        machine = X86Machine(bus: bus, shared: shared, vcpuIndex: vcpuIndex)
        executor = translated ? try BTExecutor(cacheBytes: cacheBytes) : nil
        machine.blockExecutor = executor
        let cpu = machine.cpu
        cpu.cr4 = X86.cr4OSFXSR
        switch mode {
        case .bits64:
            cpu.cr0 = X86.cr0ProtectionEnable | X86.cr0ExtensionType
            cpu.efer = X86.eferLME | X86.eferLMA
            cpu.segments[X86CPU.cs] = .flatCode(selector: 8, longMode: true)
            for s in [0, 2, 3, 4, 5] { cpu.segments[s] = .flatData(selector: 16) }
            cpu.gpr[X86CPU.rsp] = 0x8_0000
        case .bits32:
            cpu.cr0 = X86.cr0ProtectionEnable | X86.cr0ExtensionType
            cpu.segments[X86CPU.cs] = .flatCode(selector: 8, longMode: false)
            for s in [0, 2, 3, 4, 5] { cpu.segments[s] = .flatData(selector: 16) }
            cpu.gpr[X86CPU.rsp] = 0x8_0000
        case .bits16:
            cpu.cr0 = X86.cr0ExtensionType
            cpu.segments[X86CPU.cs] = SegmentRegister(selector: 0, base: 0, limit: 0xffff, type: 0xb)
            for s in [0, 2, 3, 4, 5] { cpu.segments[s] = SegmentRegister() }
            cpu.gpr[X86CPU.rsp] = 0x8000
        }
        cpu.rip = Self.codeAddress
    }

    func load(_ bytes: [UInt8], at address: UInt64 = BTHarness.codeAddress) throws {
        try bus.memory.write(bytes, at: GuestPhysicalAddress(address))
        machine.resetCaches()
    }

    /// Runs until HLT (or `budget` instructions); returns why it stopped.
    func run(budget: Int = 1_000_000) -> StepOutcome { machine.run(budget: budget) }
}
