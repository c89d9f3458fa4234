// Fuzz targets `interpreter` and `bt` (this file, shared by a symlink; each target's
// Engine.swift names its engine): the software CPU (`interp` engine), or the binary translator
// in front of it (`bt`), running any code from any
// register, control-register and paging state, with port, MMIO and MSR reads answered,
// interrupts injected and interrupt windows asked for, as `Domain` does. The guest may fault,
// triple-fault, halt or run out of budget; the host must never trap or hang.
//
// Input, front to back (missing bytes read as zero):
//   byte 0      bits 0-2 mode: 0 real, 1 16-bit protected, 2 32-bit protected, 3 32-bit
//               paging, 4 PAE paging, 5 long mode (64-bit), 6 long mode (compatibility),
//               7 long mode at CPL 3; bit 3: two vCPUs over the same RAM, run in turns on this
//               thread (the second starts 0x800 bytes into the code), so LOCKed instructions
//               and code one vCPU writes while the other has it decoded take the SMP paths;
//               bit 4: 3 GiB + 64 KiB of RAM instead of 1 MiB, so RAM ends at the 32-bit hole
//               and goes on at 4 GiB (as for a guest with more than 3 GiB)
//   byte 1      options: bit 0 CPL 3 (modes 1-6), 1 IF, 2 CR0.WP, 3 CR4.PGE, 4 EFER.NXE,
//               5 CR4.PSE, 6 CR0.AM + RFLAGS.AC, 7 random extra bits in CR0, CR4 and EFER
//               (as `vcpu_op initialise` lets a PV guest ask for)
//   2 bytes     RFLAGS status, DF, IOPL (mask 0x3dd5)
//   8 bytes     seed of the answers to reads and of the interrupts injected
//   16 × 5      RAX..R15: a kind byte (0 in RAM, 1 32-bit, 2 sign-extended, 3 both halves) and
//               4 value bytes
//   1 byte      n: the number of patches (0-31), then n × 3 bytes: a 16-bit offset into the
//               system area (IVT, GDT, TSS, IDT, page tables: [0, 0x9000)) and a byte XORed in
//   the rest    code, copied to physical 0x10000 where RIP points
//
// The system area is built per mode (`SystemImage`): flat code and data descriptors for every
// mode and privilege level, a TSS with stacks, every interrupt gate pointing into the code, and
// page tables identity-mapping the first 1 MiB with 4 KiB pages, plus [3 GiB, 5 GiB) with
// 1 GiB pages in long mode and [3 GiB, 3 GiB + 4 MiB) and the top 4 MiB (the local APIC) with
// 4 MiB pages under 32-bit paging when CR4.PSE is set. What is not RAM is MMIO.

import FuzzSupport
import VisorCore
import VisorX86

/// SplitMix64: the answers the "hypervisor" gives, from a seed in the input.
struct Answers {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

enum Layout {
    /// RAM: 1 MiB, or (mode bit 4) up to the hole and 64 KiB beyond 4 GiB.
    static let ramSize: UInt64 = 1 << 20
    static let largeRAMSize: UInt64 = GuestMemory.lowMemoryLimit + 0x1_0000
    static let gdt: UInt64 = 0x1000, tss: UInt64 = 0x1800, idt: UInt64 = 0x2000
    static let pml4: UInt64 = 0x3000, pdpt: UInt64 = 0x4000, pd: UInt64 = 0x5000, pt: UInt64 = 0x6000
    static let pd32: UInt64 = 0x7000, pt32: UInt64 = 0x8000
    static let systemEnd: UInt64 = 0x9000
    static let code: UInt64 = 0x1_0000
    static let stack: UInt64 = 0x3_0000
    static let maximumCode = 0x1_0000
    // Selectors.
    static let code64: UInt16 = 0x08, data: UInt16 = 0x10, code32: UInt16 = 0x18, code16: UInt16 = 0x20
    static let userCode32: UInt16 = 0x28, userData: UInt16 = 0x30, userCode64: UInt16 = 0x38
    static let tssSelector: UInt16 = 0x40
    /// Instructions per input, and exits (or turns) per input: enough for short programs, small
    /// enough that the target runs 10^7 inputs in a few hours.
    static let instructionBudget = 100
    static let exitLimit = 32
}

/// The bytes of the system area [0, 0x9000) for one mode.
enum SystemImage {
    static func descriptor(base: UInt32 = 0, limit: UInt32 = 0xfffff, type: UInt8, system: Bool = false,
                           dpl: UInt8 = 0, long: Bool = false, size32: Bool = false, granular: Bool = true) -> UInt64 {
        var v = UInt64(limit & 0xffff) | UInt64(base & 0xff_ffff) << 16 | UInt64(type & 0xf) << 40
        if !system { v |= 1 << 44 }
        v |= UInt64(dpl & 3) << 45 | 1 << 47 | UInt64(limit >> 16 & 0xf) << 48
        if long { v |= 1 << 53 }
        if size32 { v |= 1 << 54 }
        if granular { v |= 1 << 55 }
        return v | UInt64(base >> 24) << 56
    }

    static let images: [[UInt8]] = (0..<8).map(build)

    static func build(mode: Int) -> [UInt8] {
        var image = [UInt8](repeating: 0, count: Int(Layout.systemEnd))
        func put(_ value: UInt64, at address: UInt64, width: Int = 8) {
            for i in 0..<width { image[Int(address) + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
        }
        let longMode = mode >= 5
        // Real-mode IVT: every vector to 0x1000:(vector * 16), inside the code.
        for v in 0..<256 { put(UInt64(0x1000) << 16 | UInt64(v * 16), at: UInt64(v * 4), width: 4) }
        // GDT.
        put(descriptor(type: 0xb, long: true), at: Layout.gdt + 0x08)
        put(descriptor(type: 0x3, size32: true), at: Layout.gdt + 0x10)
        put(descriptor(type: 0xb, size32: true), at: Layout.gdt + 0x18)
        put(descriptor(limit: 0xffff, type: 0xb, granular: false), at: Layout.gdt + 0x20)
        put(descriptor(type: 0xb, dpl: 3, size32: true), at: Layout.gdt + 0x28)
        put(descriptor(type: 0x3, dpl: 3, size32: true), at: Layout.gdt + 0x30)
        put(descriptor(type: 0xb, dpl: 3, long: true), at: Layout.gdt + 0x38)
        put(descriptor(base: UInt32(Layout.tss), limit: 0x67, type: 0xb, system: true, granular: false),
            at: Layout.gdt + 0x40)
        // TSS: 64-bit RSP0 and IST1-7, or the 32-bit ESP0/SS0.
        if longMode {
            put(Layout.stack, at: Layout.tss + 4)
            for ist in 1...7 { put(Layout.stack - UInt64(ist) * 0x1000, at: Layout.tss + 0x1c + UInt64(ist) * 8) }
            put(0x68, at: Layout.tss + 0x66, width: 2)
        } else {
            put(Layout.stack, at: Layout.tss + 4, width: 4)
            put(UInt64(Layout.data), at: Layout.tss + 8, width: 4)
        }
        // IDT: interrupt gates (trap gates for odd vectors) into the code, DPL 3 for INT n.
        for v in 0..<256 {
            let handler = Layout.code + UInt64(v * 16)
            let type: UInt64 = v & 1 == 0 ? 0xe : 0xf
            if longMode {
                var low = handler & 0xffff | UInt64(Layout.code64) << 16 | type << 40 | 3 << 45 | 1 << 47
                low |= (handler & 0xffff_0000) << 32
                if v == 8 || v == 2 { low |= 1 << 32 }  // #DF and NMI on IST1
                put(low, at: Layout.idt + UInt64(v * 16))
                put(handler >> 32, at: Layout.idt + UInt64(v * 16) + 8)
            } else {
                let selector = mode == 1 ? Layout.code16 : Layout.code32
                let gate = mode == 1 ? type - 8 : type  // 16-bit gates for 16-bit protected mode
                var low = handler & 0xffff | UInt64(selector) << 16 | gate << 40 | 3 << 45 | 1 << 47
                low |= (handler & 0xffff_0000) << 32
                put(low, at: Layout.idt + UInt64(v * 8))
            }
        }
        // Page tables: 4-level (and PAE: PDPT → PD → PT) and 32-bit, each mapping RAM 1:1.
        let pdptFlags: UInt64 = mode == 4 ? 0x1 : 0x7
        put(Layout.pdpt | 0x7, at: Layout.pml4)
        put(Layout.pd | pdptFlags, at: Layout.pdpt)
        put(Layout.pt | 0x7, at: Layout.pd)
        put(Layout.pt32 | 0x7, at: Layout.pd32, width: 4)
        // 1 GiB pages over the hole and the RAM above 4 GiB; 4 MiB pages for 32-bit paging.
        if longMode {
            put(0xc000_0000 | 0x87, at: Layout.pdpt + 3 * 8)
            put(0x1_0000_0000 | 0x87, at: Layout.pdpt + 4 * 8)
        }
        put(0xc000_0000 | 0x87, at: Layout.pd32 + 0x300 * 4, width: 4)
        put(0xffc0_0000 | 0x87, at: Layout.pd32 + 0x3ff * 4, width: 4)
        for page in 0..<UInt64(Layout.ramSize >> 12) {
            // The system area is read-only to CPL 3; everything else is user, writable.
            let flags: UInt64 = page < Layout.systemEnd >> 12 ? 0x5 : 0x7
            put(page << 12 | flags, at: Layout.pt + page * 8)
            put(page << 12 | flags, at: Layout.pt32 + page * 4, width: 4)
        }
        return image
    }
}

/// The register and control state for one input.
func initialState(mode: Int, options: UInt8, input: inout FuzzInput, answers: inout Answers) -> X86State {
    var s = X86State()
    let user = mode == 7 || (options & 1 != 0 && (1...6).contains(mode))
    let rpl: UInt16 = user ? 3 : 0
    func flat(_ selector: UInt16, type: UInt8, dpl: UInt8, long: Bool = false, size32: Bool = true) -> SegmentRegister {
        SegmentRegister(selector: selector, base: 0, limit: 0xffff_ffff, type: type, dpl: dpl, longMode: long,
                        defaultSize32: size32, granularity4K: true)
    }
    let dataSelector = user ? Layout.userData | 3 : Layout.data
    let data = flat(dataSelector, type: 0x3, dpl: UInt8(rpl))
    s.ds = data; s.es = data; s.fs = data; s.gs = data; s.ss = data
    s.gdtr = DescriptorTableRegister(base: Layout.gdt, limit: 0x4f)
    s.tr = SegmentRegister(selector: Layout.tssSelector, base: Layout.tss, limit: 0x67, type: 0xb, isCodeOrData: false)
    s.rip = Layout.code
    s.rsp = Layout.stack
    switch mode {
    case 0:
        s.cs = SegmentRegister(selector: 0x1000, base: Layout.code, limit: 0xffff, type: 0xb)
        for i in 0..<4 {
            let seg = SegmentRegister(selector: 0x3000, base: 0x3_0000, limit: 0xffff, type: 0x3)
            if i == 0 { s.ss = seg } else if i == 1 { s.ds = seg } else if i == 2 { s.es = seg } else { s.fs = seg; s.gs = seg }
        }
        s.rip = 0
        s.rsp = 0xfffe
        s.cr0 = 0x6000_0010
        s.idtr = DescriptorTableRegister(base: 0, limit: 0x3ff)
    case 1:
        s.cs = SegmentRegister(selector: Layout.code16 | rpl, base: 0, limit: 0xffff, type: 0xb, dpl: UInt8(rpl))
        s.cr0 = X86.cr0ProtectionEnable | X86.cr0ExtensionType
        s.idtr = DescriptorTableRegister(base: Layout.idt, limit: 0x7ff)
    case 2, 3, 4:
        s.cs = flat(user ? Layout.userCode32 | 3 : Layout.code32, type: 0xb, dpl: UInt8(rpl))
        s.cr0 = X86.cr0ProtectionEnable | X86.cr0ExtensionType | X86.cr0NumericError
        s.idtr = DescriptorTableRegister(base: Layout.idt, limit: 0x7ff)
        if mode == 3 { s.cr0 |= X86.cr0Paging; s.cr3 = Layout.pd32 }
        if mode == 4 { s.cr0 |= X86.cr0Paging; s.cr3 = Layout.pdpt; s.cr4 |= X86.cr4PAE }
    default:
        let compatibility = mode == 6
        let code = compatibility ? (user ? Layout.userCode32 | 3 : Layout.code32) : (user ? Layout.userCode64 | 3 : Layout.code64)
        s.cs = flat(code, type: 0xb, dpl: UInt8(rpl), long: !compatibility, size32: compatibility)
        s.cr0 = X86.cr0ProtectionEnable | X86.cr0ExtensionType | X86.cr0NumericError | X86.cr0Paging
        s.cr3 = Layout.pml4
        s.cr4 = X86.cr4PAE | X86.cr4OSFXSR | X86.cr4OSXMMEXCPT
        s.efer = X86.eferLME | X86.eferLMA | X86.eferSCE
        s.idtr = DescriptorTableRegister(base: Layout.idt, limit: 0xfff)
        s.tr.type = 0xb
    }
    if options & 2 != 0 { s.rflags |= X86.rflagsInterruptEnable }
    if options & 4 != 0 && mode != 0 { s.cr0 |= X86.cr0WriteProtect }
    if options & 8 != 0 { s.cr4 |= 1 << 7 }
    if options & 16 != 0 && mode >= 4 { s.efer |= X86.eferNXE }
    if options & 32 != 0 { s.cr4 |= 1 << 4 }
    if options & 64 != 0 { s.cr0 |= 1 << 18; s.rflags |= 1 << 18 }
    if options & 128 != 0 {
        s.cr0 ^= answers.next() & 0xe005_003f
        s.cr4 ^= answers.next() & 0x3f_ffff
        s.efer ^= answers.next() & 0xd01
    }
    s.rflags |= UInt64(input.u16()) & 0x3dd5
    var registers = [UInt64](repeating: 0, count: 16)
    for i in 0..<16 {
        let kind = input.byte() & 3
        let value = UInt64(input.u32())
        switch kind {
        case 0: registers[i] = value % Layout.ramSize
        case 1: registers[i] = value
        case 2: registers[i] = 0xffff_ffff_0000_0000 | value
        default: registers[i] = value << 32 | value
        }
    }
    s.rax = registers[0]; s.rcx = registers[1]; s.rdx = registers[2]; s.rbx = registers[3]
    if registers[4] != 0 { s.rsp = registers[4] }
    s.rbp = registers[5]; s.rsi = registers[6]; s.rdi = registers[7]
    s.r8 = registers[8]; s.r9 = registers[9]; s.r10 = registers[10]; s.r11 = registers[11]
    s.r12 = registers[12]; s.r13 = registers[13]; s.r14 = registers[14]; s.r15 = registers[15]
    return s
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzInterpreter(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    var input = FuzzInput(data, count)
    let first = input.byte()
    let mode = Int(first & 7)
    let options = input.byte()
    var answers = Answers(state: input.u64())
    let state = initialState(mode: mode, options: options, input: &input, answers: &answers)

    let ramSize = first & 16 == 0 ? Layout.ramSize : Layout.largeRAMSize
    guard let memory = try? GuestMemory(size: ramSize) else { fatalError("cannot allocate guest RAM") }
    var system = SystemImage.images[mode]
    for _ in 0..<(input.byte() & 31) {
        let offset = Int(input.u16()) % system.count
        system[offset] ^= input.byte()
    }
    let code = input.take(Layout.maximumCode)
    do {
        try memory.write(system, at: GuestPhysicalAddress(0))
        try memory.write(code, at: GuestPhysicalAddress(Layout.code))
    } catch {
        fatalError("the fuzz layout does not fit guest RAM: \(error)")
    }

    let clock = FuzzClock()
    let vcpuCount = first & 8 == 0 ? 1 : 2
    guard let vm = try? fuzzedEngine.makeMachine(memory: memory, options: MachineOptions(vcpuCount: vcpuCount, clock: clock))
    else { fatalError("cannot make a \(fuzzedEngine.name) machine") }
    var vcpus: [InterpVirtualCPU] = []
    for index in 0..<vcpuCount {
        var start = state
        start.rip += UInt64(index) * 0x800
        guard let vcpu = try? vm.makeVCPU(index: index) as? InterpVirtualCPU, (try? vcpu.setState(start)) != nil
        else { fatalError("cannot make a \(fuzzedEngine.name) vCPU") }
        vcpus.append(vcpu)
    }

    var budget = Layout.instructionBudget
    var exits = 0
    var turn = 0
    var running = vcpus
    while budget > 0 && exits < Layout.exitLimit && !running.isEmpty {
        exits += 1
        turn = (turn + 1) % running.count
        let vcpu = running[turn]
        let before = vcpu.machine.instructionsRetired
        // Two vCPUs take turns in short slices, so their accesses interleave.
        let exit = vcpu.run(budget: vcpuCount == 1 ? budget : min(budget, 1 + Int(answers.next() & 15)))
        budget -= Int(truncatingIfNeeded: min(vcpu.machine.instructionsRetired &- before, UInt64(budget))) + 1
        clock.advance(by: answers.next() & 0xffff)
        var finished = false
        switch exit {
        case .portRead, .mmioRead, .msrRead:
            vcpu.completeRead(answers.next())
        case .portWrite, .mmioWrite, .msrWrite:
            break
        case .halt, .interruptWindow:
            // What the platform would do: inject when the guest can take it, else ask for a window.
            let vector = UInt8(truncatingIfNeeded: answers.next())
            if vcpu.interruptWindowOpen {
                require((try? vcpu.injectInterrupt(vector: vector)) != nil, "an open window refused an interrupt")
                vcpu.requestInterruptWindow(false)
            } else if exit == .halt {
                finished = true  // halted with interrupts off: nothing can wake it
            } else {
                vcpu.requestInterruptWindow(true)
            }
        case .shutdown:
            finished = true
        case .stopped:
            // The slice ran out; with one vCPU, the whole budget.
            finished = vcpuCount == 1
        case .failedEntry, .internalError:
            require(false, "the interp engine failed: \(exit)")
        case .instructionEmulated, .stalled:
            require(false, "the interp engine gave an exit only kvm gives: \(exit)")
        }
        // Now and then an interrupt arrives while the guest runs.
        if answers.next() & 7 == 0, vcpu.interruptWindowOpen {
            _ = try? vcpu.injectInterrupt(vector: UInt8(truncatingIfNeeded: answers.next()))
        }
        if finished { running.remove(at: turn) }
    }
    for vcpu in vcpus { _ = try? vcpu.state() }
    return 0
}
