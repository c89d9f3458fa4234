// Fixtures for the system-side tests: a scriptable bus, a long-mode machine with GDT,
// IDT, TSS and identity paging built in guest RAM, and a tiny decoder for the few opcodes the
// engine tests use (so they do not depend on the full decoder).

import Testing
import VisorCore
import VisorX86
import VisorX86Decode

final class SysBus: X86Bus {
    let memory: GuestMemory
    var portAnswers: [UInt16: UInt32] = [:]
    var portWrites: [(UInt16, UInt8, UInt32)] = []
    var mmioWrites: [(UInt64, UInt8, UInt64)] = []
    var msrs: [UInt32: UInt64] = [:]
    var tsc: UInt64 = 1000
    var pending = false
    var cpuidTable = CPUIDTable(hostSupported: InterpEngine.cpuidLeaves)

    init(size: UInt64 = 4 << 20) { memory = try! GuestMemory(size: size) }

    func portRead(port: UInt16, size: UInt8) throws(X86Stop) -> UInt32 {
        guard let v = portAnswers[port] else { throw .needsHypervisor(.portRead(port: port, size: size)) }
        return v
    }
    func portWrite(port: UInt16, size: UInt8, value: UInt32) { portWrites.append((port, size, value)); pending = true }
    func mmioRead(address: UInt64, size: UInt8) throws(X86Stop) -> UInt64 {
        throw .needsHypervisor(.mmioRead(address: GuestPhysicalAddress(address), size: size))
    }
    func mmioWrite(address: UInt64, size: UInt8, value: UInt64) { mmioWrites.append((address, size, value)); pending = true }
    var hasPendingExit: Bool { pending }
    func cpuid(function: UInt32, index: UInt32) -> CPUIDEntry { cpuidTable.lookup(function: function, index: index) }
    func readTimeStampCounter() -> UInt64 { tsc }
    func readMSR(_ index: UInt32) -> UInt64? { msrs[index] }
    func writeMSR(_ index: UInt32, value: UInt64) -> Bool {
        guard msrs[index] != nil else { return false }
        msrs[index] = value
        return true
    }

    func w64(_ a: UInt64, _ v: UInt64) { try! memory.store(v, at: GuestPhysicalAddress(a)) }
    func w32(_ a: UInt64, _ v: UInt32) { try! memory.store(v, at: GuestPhysicalAddress(a)) }
    func w16(_ a: UInt64, _ v: UInt16) { try! memory.store(v, at: GuestPhysicalAddress(a)) }
    func w8(_ a: UInt64, _ v: UInt8) { try! memory.store(v, at: GuestPhysicalAddress(a)) }
    func r64(_ a: UInt64) -> UInt64 { try! memory.load(UInt64.self, at: GuestPhysicalAddress(a)) }
    func r32(_ a: UInt64) -> UInt32 { try! memory.load(UInt32.self, at: GuestPhysicalAddress(a)) }
    func r16(_ a: UInt64) -> UInt16 { try! memory.load(UInt16.self, at: GuestPhysicalAddress(a)) }
    func bytes(_ a: UInt64, _ b: [UInt8]) { try! memory.write(b, at: GuestPhysicalAddress(a)) }
}

/// Layout of the long-mode fixture.
enum SysLayout {
    static let gdt: UInt64 = 0x1000, idt: UInt64 = 0x2000, tss: UInt64 = 0x3000
    static let pml4: UInt64 = 0x10000, pdpt: UInt64 = 0x11000, pd: UInt64 = 0x12000
    static let code: UInt64 = 0x10_0000, stack: UInt64 = 0x8_0000
    static let kernelCode: UInt16 = 0x08, kernelData: UInt16 = 0x10, user32Code: UInt16 = 0x18
    static let userData: UInt16 = 0x20, userCode: UInt16 = 0x28, tssSelector: UInt16 = 0x30
    static let legacyCode32: UInt16 = 0x40
}

/// A raw code/data descriptor.
func sysDescriptor(base: UInt32 = 0, limit: UInt32 = 0xfffff, type: UInt8, s: Bool = true, dpl: UInt8 = 0,
                   present: Bool = true, l: Bool = false, d: Bool = false, g: Bool = true) -> UInt64 {
    var v = UInt64(limit & 0xffff) | (UInt64(base & 0xff_ffff) << 16)
    v |= UInt64(type & 0xf) << 40
    if s { v |= 1 << 44 }
    v |= UInt64(dpl & 3) << 45
    if present { v |= 1 << 47 }
    v |= UInt64((limit >> 16) & 0xf) << 48
    if l { v |= 1 << 53 }
    if d { v |= 1 << 54 }
    if g { v |= 1 << 55 }
    v |= UInt64(base >> 24) << 56
    return v
}

struct SysMachine {
    let bus: SysBus
    let machine: X86Machine
    var cpu: X86CPU { machine.cpu }

    /// A CPL-0 64-bit machine: identity map of the first 4 MiB with 2 MiB pages, GDT, empty IDT,
    /// 64-bit TSS with RSP0 = 0x7_0000 and IST1 = 0x6_0000.
    static func longMode(decode: X86DecodeFunction? = nil) -> SysMachine {
        let p = SysBus()
        let m = decode.map { X86Machine(bus: p, decode: $0) } ?? X86Machine(bus: p)
        let c = m.cpu
        // GDT
        p.w64(SysLayout.gdt + 0x08, sysDescriptor(type: 0xb, l: true))
        p.w64(SysLayout.gdt + 0x10, sysDescriptor(type: 0x3, d: true))
        p.w64(SysLayout.gdt + 0x18, sysDescriptor(type: 0xb, dpl: 3, d: true))
        p.w64(SysLayout.gdt + 0x20, sysDescriptor(type: 0x3, dpl: 3, d: true))
        p.w64(SysLayout.gdt + 0x28, sysDescriptor(type: 0xb, dpl: 3, l: true))
        p.w64(SysLayout.gdt + 0x30, sysDescriptor(base: UInt32(SysLayout.tss), limit: 0x67, type: 0x9, s: false, g: false))
        p.w64(SysLayout.gdt + 0x38, 0)
        p.w64(SysLayout.gdt + 0x40, sysDescriptor(type: 0xb, d: true))
        // TSS: RSP0, IST1
        p.w64(SysLayout.tss + 4, 0x7_0000)
        p.w64(SysLayout.tss + 0x24, 0x6_0000)
        p.w16(SysLayout.tss + 0x66, 0x68)
        // Paging: PML4[0] → PDPT, PDPT[0] → PD, PD[0..1] = 2 MiB pages, writable, user.
        p.w64(SysLayout.pml4, SysLayout.pdpt | 7)
        p.w64(SysLayout.pdpt, SysLayout.pd | 7)
        p.w64(SysLayout.pd, 0x0 | 0x87)
        p.w64(SysLayout.pd + 8, 0x20_0000 | 0x87)
        c.cr0 = X86SystemBits.cr0PE | X86SystemBits.cr0PG | X86SystemBits.cr0WP | X86SystemBits.cr0ET | X86SystemBits.cr0NE
        c.cr4 = X86SystemBits.cr4PAE | X86SystemBits.cr4OSFXSR
        c.efer = X86SystemBits.eferLME | X86SystemBits.eferLMA | X86SystemBits.eferNXE | X86SystemBits.eferSCE
        c.cr3 = SysLayout.pml4
        c.segments[X86CPU.cs] = .flatCode(selector: SysLayout.kernelCode, longMode: true)
        for s in [X86CPU.ss, X86CPU.ds, X86CPU.es, X86CPU.fs, X86CPU.gs] {
            c.segments[s] = .flatData(selector: SysLayout.kernelData)
        }
        c.gdtr = DescriptorTableRegister(base: SysLayout.gdt, limit: 0x47)
        c.idtr = DescriptorTableRegister(base: SysLayout.idt, limit: 0xfff)
        c.tr = .taskState(selector: SysLayout.tssSelector, base: SysLayout.tss, limit: 0x67)
        c.gpr[X86CPU.rsp] = SysLayout.stack
        c.rip = SysLayout.code
        c.cpl = 0
        return SysMachine(bus: p, machine: m)
    }

    /// A 64-bit IDT gate.
    func gate(_ vector: Int, handler: UInt64, selector: UInt16 = SysLayout.kernelCode, type: UInt8 = 0xe,
              dpl: UInt8 = 0, ist: UInt8 = 0, present: Bool = true) {
        var low = (handler & 0xffff) | (UInt64(selector) << 16) | (UInt64(ist & 7) << 32)
        low |= UInt64(type & 0xf) << 40 | UInt64(dpl & 3) << 45 | (present ? 1 << 47 : 0)
        low |= (handler & 0xffff_0000) << 32
        bus.w64(SysLayout.idt + UInt64(vector) * 16, low)
        bus.w64(SysLayout.idt + UInt64(vector) * 16 + 8, handler >> 32)
    }

    /// Switches to CPL 3 in 64-bit mode (CS/SS user selectors).
    func enterUser() {
        cpu.segments[X86CPU.cs] = SegmentRegister(selector: SysLayout.userCode | 3, base: 0, limit: 0xffff_ffff,
                                                  type: 0xb, dpl: 3, longMode: true, granularity4K: true)
        cpu.segments[X86CPU.ss] = SegmentRegister(selector: SysLayout.userData | 3, base: 0, limit: 0xffff_ffff,
                                                  type: 0x3, dpl: 3, defaultSize32: true, granularity4K: true)
        cpu.cpl = 3
    }

    func fault(_ body: () throws -> Void) -> X86Fault? { sysFault(body) }
}

/// Builds a hand-made instruction for the system tests.
func sysInsn(_ op: Operation, _ destination: Operand = .none, _ source: Operand = .none, length: UInt8 = 2,
             operandSize: UInt8 = 8, immediate: UInt64 = 0, memory: MemoryOperand = MemoryOperand()) -> DecodedInstruction {
    DecodedInstruction(operation: op, length: length, operandSize: operandSize, addressSize: 8,
                       destination: destination, source: source, memory: memory, immediate: immediate)
}

/// A decoder for the handful of opcodes the engine tests run, independent of the real decoder:
/// 90 NOP, F4 HLT, E4 ib IN AL,ib, E6 ib OUT ib,AL, 0F 0B UD2, FA CLI, FB STI, CD ib INT ib.
let sysTinyDecoder: X86DecodeFunction = { bytes, mode in
    guard let first = bytes.first else { return .truncated }
    func need(_ n: Int) -> Bool { bytes.count >= n }
    switch first {
    case 0x90: return .instruction(DecodedInstruction(operation: .nop, length: 1))
    case 0xf4: return .instruction(DecodedInstruction(operation: .hlt, length: 1))
    case 0xfa: return .instruction(DecodedInstruction(operation: .cli, length: 1))
    case 0xfb: return .instruction(DecodedInstruction(operation: .sti, length: 1))
    case 0xe4:
        guard need(2) else { return .truncated }
        return .instruction(DecodedInstruction(operation: .in, length: 2, operandSize: 1,
                                               destination: .register(0, size: 1), source: .immediate(size: 1),
                                               immediate: UInt64(bytes[1])))
    case 0xe6:
        guard need(2) else { return .truncated }
        return .instruction(DecodedInstruction(operation: .out, length: 2, operandSize: 1,
                                               destination: .immediate(size: 1), source: .register(0, size: 1),
                                               immediate: UInt64(bytes[1])))
    case 0xcd:
        guard need(2) else { return .truncated }
        return .instruction(DecodedInstruction(operation: .int, length: 2, immediate: UInt64(bytes[1])))
    case 0x0f:
        guard need(2) else { return .truncated }
        return bytes[1] == 0x0b ? .instruction(DecodedInstruction(operation: .ud2, length: 2)) : .undefined
    default: return .undefined
    }
}

/// The fault `body` raised, or nil.
func sysFault(_ body: () throws -> Void) -> X86Fault? {
    do { try body() } catch let e as X86Interruption { if case .fault(let f) = e { return f } } catch {}
    return nil
}
