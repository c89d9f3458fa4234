// Shared fixtures for the general-purpose interpreter tests: a small bus (RAM, fixed
// port/MMIO answers), a machine in a chosen code mode, and shorthand for hand-built
// DecodedInstruction values.

import Testing
import VisorCore
import VisorX86
import VisorX86Decode

/// Flag bits, spelled out here so the tests do not lean on the interpreter's own constants.
enum F {
    static let cf: UInt64 = 1 << 0, pf: UInt64 = 1 << 2, af: UInt64 = 1 << 4, zf: UInt64 = 1 << 6
    static let sf: UInt64 = 1 << 7, tf: UInt64 = 1 << 8, `if`: UInt64 = 1 << 9, df: UInt64 = 1 << 10
    static let of: UInt64 = 1 << 11, iopl: UInt64 = 3 << 12, ac: UInt64 = 1 << 18, id: UInt64 = 1 << 21
    static let status: UInt64 = cf | pf | af | zf | sf | of
}

/// RAM plus fixed answers for ports and MMIO. MMIO writes are recorded and can raise
/// `hasPendingExit`, like a device write the hypervisor must see.
final class TestBus: X86Bus {
    let memory: GuestMemory
    var hasPendingExit = false
    var exitOnMMIOWrite = false
    var mmioWrites: [(address: UInt64, value: UInt64)] = []

    init(size: UInt64 = 4 << 20) {
        memory = try! GuestMemory(size: size)
    }

    func portRead(port: UInt16, size: UInt8) throws(X86Stop) -> UInt32 { 0xffff_ffff }
    func portWrite(port: UInt16, size: UInt8, value: UInt32) {}
    func mmioRead(address: UInt64, size: UInt8) throws(X86Stop) -> UInt64 { 0x1122_3344_5566_7788 }
    func mmioWrite(address: UInt64, size: UInt8, value: UInt64) {
        mmioWrites.append((address, value))
        if exitOnMMIOWrite { hasPendingExit = true }
    }
    func cpuid(function: UInt32, index: UInt32) -> CPUIDEntry { CPUIDEntry(function: function, index: index) }
    func readTimeStampCounter() -> UInt64 { 0 }
    func readMSR(_ index: UInt32) -> UInt64? { nil }
    func writeMSR(_ index: UInt32, value: UInt64) -> Bool { false }
}

/// A machine with RAM, set up in `mode` with paging off (linear = physical).
struct Harness {
    let bus: TestBus
    let machine: X86Machine
    var cpu: X86CPU { machine.cpu }
    static let startRIP: UInt64 = 0x1000

    init(mode: CodeMode = .bits64, memorySize: UInt64 = 4 << 20) {
        bus = TestBus(size: memorySize)
        machine = X86Machine(bus: bus)
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
        cpu.rip = Self.startRIP
    }

    func run(_ insn: DecodedInstruction) throws(X86Interruption) { try machine.execute(insn) }

    /// Runs `insn` expecting a fault; returns it (nil if none or a stop).
    func fault(_ insn: DecodedInstruction) -> X86Fault? {
        do {
            try machine.execute(insn)
            return nil
        } catch {
            if case .fault(let f) = error { return f }
            return nil
        }
    }

    func store64(_ value: UInt64, at address: UInt64) { try! bus.memory.store(value, at: GuestPhysicalAddress(address)) }
    func store32(_ value: UInt32, at address: UInt64) { try! bus.memory.store(value, at: GuestPhysicalAddress(address)) }
    func store16(_ value: UInt16, at address: UInt64) { try! bus.memory.store(value, at: GuestPhysicalAddress(address)) }
    func store8(_ value: UInt8, at address: UInt64) { try! bus.memory.store(value, at: GuestPhysicalAddress(address)) }
    func load64(_ address: UInt64) -> UInt64 { try! bus.memory.load(UInt64.self, at: GuestPhysicalAddress(address)) }
    func load32(_ address: UInt64) -> UInt32 { try! bus.memory.load(UInt32.self, at: GuestPhysicalAddress(address)) }
    func load16(_ address: UInt64) -> UInt16 { try! bus.memory.load(UInt16.self, at: GuestPhysicalAddress(address)) }
    func load8(_ address: UInt64) -> UInt8 { try! bus.memory.load(UInt8.self, at: GuestPhysicalAddress(address)) }

    /// The status flags now.
    var status: UInt64 { cpu.rflags & F.status }
}

// MARK: Instruction shorthand

func reg(_ index: UInt8, _ size: UInt8) -> Operand { .register(index, size: size) }
func high(_ index: UInt8) -> Operand { Operand(.highByte, index: index, size: 1) }
func mem(_ size: UInt8) -> Operand { .memory(size: size) }
func imm(_ size: UInt8) -> Operand { .immediate(size: size) }
func xmm(_ index: UInt8, _ size: UInt8 = 16) -> Operand { Operand(.xmm, index: index, size: size) }

/// `[base + displacement]`, DS (or SS for rSP/rBP bases).
func address(base: UInt8, displacement: Int64 = 0) -> MemoryOperand {
    MemoryOperand(segment: base == 4 || base == 5 ? 2 : 3, base: base, displacement: displacement)
}

/// A hand-built instruction. `size` is the operand size; `length` defaults to 3.
func insn(_ operation: Operation, _ destination: Operand = .none, _ source: Operand = .none,
          _ source2: Operand = .none, size: UInt8? = nil, length: UInt8 = 3, immediate: UInt64 = 0,
          immediate2: UInt64 = 0, memory: MemoryOperand = MemoryOperand(), condition: UInt8 = 0,
          addressSize: UInt8 = 8, repetition: Prefixes.Repeat = .none) -> DecodedInstruction {
    var prefixes = Prefixes()
    prefixes.repetition = repetition
    let operandSize = size ?? (destination.size != 0 ? destination.size : (source.size != 0 ? source.size : 4))
    return DecodedInstruction(operation: operation, length: length, operandSize: operandSize,
                              addressSize: addressSize, condition: condition, destination: destination,
                              source: source, source2: source2, memory: memory, immediate: immediate,
                              immediate2: immediate2, prefixes: prefixes)
}
