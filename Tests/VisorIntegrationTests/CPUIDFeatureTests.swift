// CPUID says what the CPU does: every feature bit an engine advertises is checked by running an
// instruction that needs it, in a guest on that engine. A guest that sees a bit may use it, so
// an advertised feature whose instruction faults is a bug (issue #10 item 6).
//
// The probes are data: a feature bit → a few instruction bytes, and whether they run at CPL3
// (instructions any code may use) or CPL0 (control registers, MSRs). A probe passes when its
// bytes run to the end without an exception; some check a result and execute UD2 when it is
// wrong (LZCNT must not behave as BSR). Both engines run the same probes on the same little
// long-mode machine built below, through the `VirtualCPU` protocol only.
//
// `interp`: every bit its table sets must have a probe (a new bit needs a new probe), every
// probe of an advertised bit must pass, and every probe that passes must be advertised (the
// CPU does not hide what it does: CMPXCHG16B worked while CX16 was clear).
// `kvm`: the advertised set is KVM_GET_SUPPORTED_CPUID as Visor passes it on; the probes of the
// bits it advertises must pass. User-level probes run at CPL3, natively on this host's PVM
// backend; kernel-level ones at CPL0, where PVM's host kernel emulates each instruction (it
// cannot emulate SSE there, which is why the SIMD probes are user-level). Bits kvm advertises
// without a probe are listed on stderr, not failed: the host decides those, not Visor.

import Foundation
import Testing
import VisorCore
import VisorKVM
import VisorX86

/// One feature bit: CPUID leaf (and sub-leaf), output register, bit number.
struct CPUIDFeatureBit: Hashable, CustomStringConvertible {
    enum Register: Int, CaseIterable { case eax, ebx, ecx, edx }
    var leaf: UInt32
    var subleaf: UInt32 = 0
    var register: Register
    var bit: Int

    var description: String {
        let leafText = "0x" + String(leaf, radix: 16) + (leaf == 7 ? ".\(subleaf)" : "")
        return "CPUID.\(leafText):\(register)[\(bit)]"
    }
}

/// What a probe needs: a feature bit and instruction bytes that raise #UD (or #GP) without it.
struct CPUIDProbe: CustomStringConvertible, Sendable {
    enum Level: Sendable { case user, kernel }
    var name: String
    var leaf: UInt32
    var subleaf: UInt32 = 0
    var register: CPUIDFeatureBit.Register
    var bit: Int
    var level: Level
    /// CR4 bits the probe needs set before it starts (FSGSBASE).
    var cr4: UInt64 = 0
    var code: [UInt8]

    var feature: CPUIDFeatureBit { CPUIDFeatureBit(leaf: leaf, subleaf: subleaf, register: register, bit: bit) }
    var description: String { "\(name) (\(feature))" }
}

extension CPUIDFeatureBit.Register: Sendable {}

enum CPUIDProbes {
    /// Read CR4, set `bit`, write it back (CPL0).
    static func setCR4(bit: UInt8) -> [UInt8] {
        [0x0f, 0x20, 0xe0, 0x0f, 0xba, 0xe8, bit, 0x0f, 0x22, 0xe0]  // mov rax,cr4; bts eax,bit; mov cr4,rax
    }

    /// RBX points at a zeroed, 64-byte-aligned scratch area for memory operands.
    static let all: [CPUIDProbe] = [
        // Leaf 1 EDX
        CPUIDProbe(name: "FPU", leaf: 1, register: .edx, bit: 0, level: .user,
                   code: [0xd9, 0xe8, 0xdd, 0xd8]),                          // fld1; fstp st(0)
        CPUIDProbe(name: "PSE", leaf: 1, register: .edx, bit: 3, level: .kernel, code: setCR4(bit: 4)),
        CPUIDProbe(name: "TSC", leaf: 1, register: .edx, bit: 4, level: .user, code: [0x0f, 0x31]),  // rdtsc
        CPUIDProbe(name: "MSR", leaf: 1, register: .edx, bit: 5, level: .kernel,
                   code: [0xb9, 0x10, 0x00, 0x00, 0x00, 0x0f, 0x32]),        // mov ecx,0x10 (TSC); rdmsr
        CPUIDProbe(name: "PAE", leaf: 1, register: .edx, bit: 6, level: .kernel, code: setCR4(bit: 5)),
        CPUIDProbe(name: "MCE", leaf: 1, register: .edx, bit: 7, level: .kernel, code: setCR4(bit: 6)),
        CPUIDProbe(name: "CX8", leaf: 1, register: .edx, bit: 8, level: .user,
                   code: [0x0f, 0xc7, 0x0b]),                                // cmpxchg8b [rbx]
        CPUIDProbe(name: "APIC", leaf: 1, register: .edx, bit: 9, level: .kernel,
                   code: [0xb9, 0x1b, 0x00, 0x00, 0x00, 0x0f, 0x32]),        // mov ecx,0x1b (APIC_BASE); rdmsr
        CPUIDProbe(name: "MTRR", leaf: 1, register: .edx, bit: 12, level: .kernel,
                   code: [0xb9, 0xfe, 0x00, 0x00, 0x00, 0x0f, 0x32]),        // mov ecx,0xfe (MTRRCAP); rdmsr
        CPUIDProbe(name: "PGE", leaf: 1, register: .edx, bit: 13, level: .kernel, code: setCR4(bit: 7)),
        CPUIDProbe(name: "MCA", leaf: 1, register: .edx, bit: 14, level: .kernel,
                   code: [0xb9, 0x79, 0x01, 0x00, 0x00, 0x0f, 0x32]),        // mov ecx,0x179 (MCG_CAP); rdmsr
        CPUIDProbe(name: "CMOV", leaf: 1, register: .edx, bit: 15, level: .user,
                   code: [0x0f, 0x44, 0xc1]),                                // cmove eax,ecx
        CPUIDProbe(name: "PAT", leaf: 1, register: .edx, bit: 16, level: .kernel,
                   code: [0xb9, 0x77, 0x02, 0x00, 0x00, 0x0f, 0x32]),        // mov ecx,0x277 (PAT); rdmsr
        CPUIDProbe(name: "CLFSH", leaf: 1, register: .edx, bit: 19, level: .user,
                   code: [0x0f, 0xae, 0x3b]),                                // clflush [rbx]
        CPUIDProbe(name: "MMX", leaf: 1, register: .edx, bit: 23, level: .user, code: [0x0f, 0x77]),  // emms
        CPUIDProbe(name: "FXSR", leaf: 1, register: .edx, bit: 24, level: .user,
                   code: [0x0f, 0xae, 0x03, 0x0f, 0xae, 0x0b]),              // fxsave [rbx]; fxrstor [rbx]
        CPUIDProbe(name: "SSE", leaf: 1, register: .edx, bit: 25, level: .user,
                   code: [0x0f, 0x58, 0xc1]),                                // addps xmm0,xmm1
        CPUIDProbe(name: "SSE2", leaf: 1, register: .edx, bit: 26, level: .user,
                   code: [0x66, 0x0f, 0x58, 0xc1]),                          // addpd xmm0,xmm1
        // Leaf 1 ECX
        CPUIDProbe(name: "SSE3", leaf: 1, register: .ecx, bit: 0, level: .user,
                   code: [0xf2, 0x0f, 0x7c, 0xc1]),                          // haddps xmm0,xmm1
        CPUIDProbe(name: "PCLMULQDQ", leaf: 1, register: .ecx, bit: 1, level: .user,
                   code: [0x66, 0x0f, 0x3a, 0x44, 0xc1, 0x00]),              // pclmulqdq xmm0,xmm1,0
        CPUIDProbe(name: "SSSE3", leaf: 1, register: .ecx, bit: 9, level: .user,
                   code: [0x66, 0x0f, 0x38, 0x00, 0xc1]),                    // pshufb xmm0,xmm1
        CPUIDProbe(name: "CX16", leaf: 1, register: .ecx, bit: 13, level: .user,
                   code: [0x48, 0x0f, 0xc7, 0x0b]),                          // cmpxchg16b [rbx]
        CPUIDProbe(name: "SSE4.1", leaf: 1, register: .ecx, bit: 19, level: .user,
                   code: [0x66, 0x0f, 0x38, 0x2b, 0xc1]),                    // packusdw xmm0,xmm1
        CPUIDProbe(name: "SSE4.2", leaf: 1, register: .ecx, bit: 20, level: .user,
                   code: [0xf2, 0x0f, 0x38, 0xf1, 0xc1]),                    // crc32 eax,ecx
        CPUIDProbe(name: "MOVBE", leaf: 1, register: .ecx, bit: 22, level: .user,
                   code: [0x0f, 0x38, 0xf0, 0x03]),                          // movbe eax,[rbx]
        CPUIDProbe(name: "POPCNT", leaf: 1, register: .ecx, bit: 23, level: .user,
                   code: [0xf3, 0x0f, 0xb8, 0xc1]),                          // popcnt eax,ecx
        CPUIDProbe(name: "TSC-deadline", leaf: 1, register: .ecx, bit: 24, level: .kernel,
                   code: [0xb9, 0xe0, 0x06, 0x00, 0x00, 0x0f, 0x32]),        // mov ecx,0x6e0; rdmsr
        CPUIDProbe(name: "AES", leaf: 1, register: .ecx, bit: 25, level: .user,
                   code: [0x66, 0x0f, 0x38, 0xdc, 0xc1]),                    // aesenc xmm0,xmm1
        CPUIDProbe(name: "RDRAND", leaf: 1, register: .ecx, bit: 30, level: .user,
                   code: [0x0f, 0xc7, 0xf0]),                                // rdrand eax
        CPUIDProbe(name: "hypervisor", leaf: 1, register: .ecx, bit: 31, level: .user,
                   code: [0xb8, 0x00, 0x00, 0x00, 0x40, 0x0f, 0xa2,          // mov eax,0x40000000; cpuid
                          0x81, 0xfb, 0x56, 0x69, 0x73, 0x6f,                // cmp ebx,'Viso'
                          0x74, 0x02, 0x0f, 0x0b]),                          // je +2; ud2
        // Leaf 7.0 EBX
        CPUIDProbe(name: "FSGSBASE", leaf: 7, register: .ebx, bit: 0, level: .user, cr4: 1 << 16,
                   code: [0xf3, 0x48, 0x0f, 0xae, 0xc0]),                    // rdfsbase rax
        CPUIDProbe(name: "TSC_ADJUST", leaf: 7, register: .ebx, bit: 1, level: .kernel,
                   code: [0xb9, 0x3b, 0x00, 0x00, 0x00, 0x0f, 0x32]),        // mov ecx,0x3b (TSC_ADJUST); rdmsr
        CPUIDProbe(name: "BMI1", leaf: 7, register: .ebx, bit: 3, level: .user,
                   code: [0xc4, 0xe2, 0x70, 0xf2, 0xc2]),                    // andn eax,ecx,edx
        CPUIDProbe(name: "SMEP", leaf: 7, register: .ebx, bit: 7, level: .kernel, code: setCR4(bit: 20)),
        CPUIDProbe(name: "BMI2", leaf: 7, register: .ebx, bit: 8, level: .user,
                   code: [0xc4, 0xe2, 0x68, 0xf5, 0xc1]),                    // bzhi eax,ecx,edx
        CPUIDProbe(name: "RDSEED", leaf: 7, register: .ebx, bit: 18, level: .user,
                   code: [0x0f, 0xc7, 0xf8]),                                // rdseed eax
        CPUIDProbe(name: "ADX", leaf: 7, register: .ebx, bit: 19, level: .user,
                   code: [0x66, 0x0f, 0x38, 0xf6, 0xc1]),                    // adcx eax,ecx
        CPUIDProbe(name: "CLFLUSHOPT", leaf: 7, register: .ebx, bit: 23, level: .user,
                   code: [0x66, 0x0f, 0xae, 0x3b]),                          // clflushopt [rbx]
        // Leaf 7.0 EDX
        CPUIDProbe(name: "ARCH_CAPABILITIES", leaf: 7, register: .edx, bit: 29, level: .kernel,
                   code: [0xb9, 0x0a, 0x01, 0x00, 0x00, 0x0f, 0x32]),        // mov ecx,0x10a; rdmsr
        // 0x8000_0001 ECX
        CPUIDProbe(name: "LAHF-SAHF", leaf: 0x8000_0001, register: .ecx, bit: 0, level: .user,
                   code: [0x9f, 0x9e]),                                      // lahf; sahf (in 64-bit mode)
        CPUIDProbe(name: "LZCNT", leaf: 0x8000_0001, register: .ecx, bit: 5, level: .user,
                   code: [0xb9, 0x01, 0x00, 0x00, 0x00,                      // mov ecx,1
                          0xf3, 0x0f, 0xbd, 0xc1,                            // lzcnt eax,ecx (BSR would give 0)
                          0x83, 0xf8, 0x1f, 0x74, 0x02, 0x0f, 0x0b]),        // cmp eax,31; je +2; ud2
        CPUIDProbe(name: "PREFETCHW", leaf: 0x8000_0001, register: .ecx, bit: 8, level: .user,
                   code: [0x0f, 0x0d, 0x0b]),                                // prefetchw [rbx]
        // 0x8000_0001 EDX
        CPUIDProbe(name: "SYSCALL", leaf: 0x8000_0001, register: .edx, bit: 11, level: .kernel,
                   code: [0xb9, 0x80, 0x00, 0x00, 0xc0, 0x0f, 0x32,          // mov ecx,EFER; rdmsr
                          0x83, 0xc8, 0x01, 0x0f, 0x30,                      // or eax,SCE; wrmsr
                          0xb9, 0x82, 0x00, 0x00, 0xc0,                      // mov ecx,LSTAR
                          0x48, 0x8d, 0x05, 0x19, 0x00, 0x00, 0x00,          // lea rax,[rip+25] (past syscall)
                          0x48, 0x89, 0xc2, 0x48, 0xc1, 0xea, 0x20, 0x0f, 0x30,  // mov rdx,rax; shr rdx,32; wrmsr
                          0xb9, 0x81, 0x00, 0x00, 0xc0, 0x31, 0xc0,          // mov ecx,STAR; xor eax,eax
                          0xba, 0x08, 0x00, 0x10, 0x00, 0x0f, 0x30,          // mov edx,0x00100008 (CS 8); wrmsr
                          0x0f, 0x05]),                                      // syscall
        CPUIDProbe(name: "NX", leaf: 0x8000_0001, register: .edx, bit: 20, level: .kernel,
                   code: [0xb9, 0x80, 0x00, 0x00, 0xc0, 0x0f, 0x32,          // mov ecx,EFER; rdmsr
                          0x0d, 0x00, 0x08, 0x00, 0x00, 0x0f, 0x30]),        // or eax,NXE; wrmsr
        CPUIDProbe(name: "RDTSCP", leaf: 0x8000_0001, register: .edx, bit: 27, level: .user,
                   code: [0x0f, 0x01, 0xf9]),                                // rdtscp
        CPUIDProbe(name: "LM", leaf: 0x8000_0001, register: .edx, bit: 29, level: .kernel,
                   code: [0xb9, 0x80, 0x00, 0x00, 0xc0, 0x0f, 0x32,          // mov ecx,EFER; rdmsr
                          0x0f, 0xba, 0xe0, 0x0a, 0x72, 0x02, 0x0f, 0x0b]),  // bt eax,LMA; jc +2; ud2
    ]

    /// The registers of the leaves that hold feature flags, which the tests walk bit by bit.
    static let featureRegisters: [(leaf: UInt32, subleaf: UInt32, register: CPUIDFeatureBit.Register)] = [
        (1, 0, .ecx), (1, 0, .edx),
        (7, 0, .ebx), (7, 0, .ecx), (7, 0, .edx), (7, 1, .eax),
        (0x8000_0001, 0, .ecx), (0x8000_0001, 0, .edx),
    ]

    /// Leaf 1 ECX bit 27, OSXSAVE: a copy of CR4.OSXSAVE, a status rather than a feature.
    static let statusBits: Set<CPUIDFeatureBit> = [CPUIDFeatureBit(leaf: 1, register: .ecx, bit: 27)]
}

/// What became of a probe.
enum ProbeOutcome: Equatable, CustomStringConvertible {
    case completed
    /// An exception with this vector reached the probe machine's IDT.
    case exception(UInt8)
    case tripleFault
    case unexpected(String)

    var description: String {
        switch self {
        case .completed: return "ran to the end"
        case .exception(let v): return "raised \(Self.names[Int(v)] ?? "exception \(v)")"
        case .tripleFault: return "triple-faulted"
        case .unexpected(let s): return s
        }
    }
    static let names: [Int: String] = [0: "#DE", 6: "#UD", 7: "#NM", 13: "#GP", 14: "#PF", 17: "#AC", 19: "#XM"]
}

/// A small long-mode machine, the same on every engine: two identity-mapped 2 MiB pages, the
/// first for the kernel (page tables, a GDT with kernel and user segments and a TSS, an IDT
/// whose 32 handlers report their vector with `out 0x81, al`, kernel code), the second for user
/// code, stack and scratch data (so SMEP can be switched on under kernel code). The code under
/// test runs at CPL3 (IOPL 3, so it may use OUT) or CPL0 and ends with `out 0x80, al`; reads
/// from ports, MMIO and MSRs are answered with 0.
struct ProbeMachine {
    let engine: any Engine

    static let pml4: UInt64 = 0x1000, gdt: UInt64 = 0x4000, tss: UInt64 = 0x5000, idt: UInt64 = 0x6000
    static let handlers: UInt64 = 0x7000, kernelStack: UInt64 = 0x9000, kernelCode: UInt64 = 0x1_0000
    static let userCode: UInt64 = 0x20_0000, userStack: UInt64 = 0x21_0000, scratch: UInt64 = 0x22_0000
    static let donePort: UInt16 = 0x80, exceptionPort: UInt16 = 0x81
    static let epilogue: [UInt8] = [0xe6, 0x80, 0xeb, 0xfe]  // out 0x80,al; jmp $

    func makeMemory(code body: [UInt8], at address: UInt64) throws -> GuestMemory {
        let memory = try GuestMemory(size: 4 << 20)
        func q(_ v: UInt64, _ at: UInt64) throws { try memory.store(v, at: GuestPhysicalAddress(at)) }
        try q(0x2000 | 7, Self.pml4)                 // PML4[0] → PDPT, present, writable, user
        try q(0x3000 | 7, 0x2000)                    // PDPT[0] → PD
        try q(0x0000_0000 | 0x83, 0x3000)            // PD[0]: 2 MiB page at 0, supervisor
        try q(0x0020_0000 | 0x87, 0x3008)            // PD[1]: 2 MiB page at 2 MiB, user
        try q(0x00af_9a00_0000_ffff, Self.gdt + 0x08)  // kernel code, 64-bit
        try q(0x00cf_9200_0000_ffff, Self.gdt + 0x10)  // kernel data
        try q(0x00af_fa00_0000_ffff, Self.gdt + 0x18)  // user code, 64-bit, DPL 3
        try q(0x00cf_f200_0000_ffff, Self.gdt + 0x20)  // user data, DPL 3
        try q(0x0000_8b00_0000_0067 | (Self.tss << 16), Self.gdt + 0x28)  // busy 64-bit TSS
        try q(Self.kernelStack, Self.tss + 4)        // RSP0
        for vector in 0..<32 {
            let handler = Self.handlers + UInt64(vector) * 16
            try memory.write([0xb0, UInt8(vector), 0xe6, 0x81, 0xf4, 0xeb, 0xfd],  // mov al,v; out 0x81,al; hlt; jmp hlt
                             at: GuestPhysicalAddress(handler))
            let low = (handler & 0xffff) | (0x08 << 16) | (0x8e00 << 32) | ((handler >> 16 & 0xffff) << 48)
            try q(low, Self.idt + UInt64(vector) * 16)
            try q(handler >> 32, Self.idt + UInt64(vector) * 16 + 8)
        }
        try memory.write(body + Self.epilogue, at: GuestPhysicalAddress(address))
        return memory
    }

    func initialState(user: Bool, cr4: UInt64) -> X86State {
        var s = X86State()
        if user {
            s.cs = SegmentRegister(selector: 0x1b, base: 0, limit: 0xffff_ffff, type: 0xb, dpl: 3, longMode: true,
                                   granularity4K: true)
            s.ss = SegmentRegister(selector: 0x23, base: 0, limit: 0xffff_ffff, type: 0x3, dpl: 3,
                                   defaultSize32: true, granularity4K: true)
            s.rsp = Self.userStack
        } else {
            s.cs = .flatCode(selector: 0x08, longMode: true)
            s.ss = .flatData(selector: 0x10)
            s.rsp = Self.kernelStack - 0x100
        }
        s.ds = s.ss; s.es = s.ss; s.fs = s.ss; s.gs = s.ss
        s.tr = .taskState(selector: 0x28, base: Self.tss, limit: 0x67)
        s.gdtr = DescriptorTableRegister(base: Self.gdt, limit: 0x37)
        s.idtr = DescriptorTableRegister(base: Self.idt, limit: 32 * 16 - 1)
        s.cr0 = X86.cr0ProtectionEnable | X86.cr0MonitorCoprocessor | X86.cr0ExtensionType | X86.cr0NumericError
            | X86.cr0WriteProtect | X86.cr0Paging
        s.cr3 = Self.pml4
        s.cr4 = X86.cr4PAE | X86.cr4OSFXSR | X86.cr4OSXMMEXCPT | cr4
        s.efer = X86.eferLME | X86.eferLMA
        s.rflags = X86.rflagsReserved1 | 3 << 12  // IOPL 3
        s.rip = user ? Self.userCode : Self.kernelCode
        s.rbx = Self.scratch
        return s
    }

    /// Runs `body` and says how it ended; `state` is set to the registers at the end.
    func run(_ body: [UInt8], user: Bool, cr4: UInt64 = 0, state: inout X86State, setup: (inout X86State) -> Void = { _ in })
        throws -> ProbeOutcome
    {
        let memory = try makeMemory(code: body, at: user ? Self.userCode : Self.kernelCode)
        let vcpu = try engine.makeMachine(memory: memory, options: MachineOptions()).makeVCPU(index: 0)
        var start = initialState(user: user, cr4: cr4)
        setup(&start)
        try vcpu.setState(start)
        for _ in 0..<64 {
            let exit: Exit
            do { exit = try vcpu.run() } catch { return .unexpected("the engine failed: \(error)") }
            switch exit {
            case .portWrite(Self.donePort, _, _):
                state = try vcpu.state()
                return .completed
            case .portWrite(Self.exceptionPort, _, let vector):
                return .exception(UInt8(truncatingIfNeeded: vector))
            case .portRead, .mmioRead, .msrRead:
                vcpu.completeRead(0)
            case .portWrite, .mmioWrite, .msrWrite, .interruptWindow:
                continue
            case .shutdown:
                return .tripleFault
            default:
                return .unexpected("exit \(exit)")
            }
        }
        return .unexpected("no end after 64 exits")
    }

    func run(_ probe: CPUIDProbe) throws -> ProbeOutcome {
        var state = X86State()
        return try run(probe.code, user: probe.level == .user, cr4: probe.cr4, state: &state)
    }

    /// CPUID `leaf`.`subleaf` as a guest at CPL3 sees it.
    func cpuid(_ leaf: UInt32, _ subleaf: UInt32 = 0) throws -> [UInt32] {
        var state = X86State()
        let outcome = try run([0x0f, 0xa2], user: true, state: &state) { s in  // cpuid
            s.rax = UInt64(leaf); s.rcx = UInt64(subleaf)
        }
        guard outcome == .completed else { throw ProbeFailure(text: "CPUID \(leaf) \(outcome)") }
        return [state.rax, state.rbx, state.rcx, state.rdx].map { UInt32(truncatingIfNeeded: $0) }
    }

    /// Every feature bit the guest's CPUID sets in the feature leaves it answers.
    func advertisedFeatures() throws -> Set<CPUIDFeatureBit> {
        let maxBasic = try cpuid(0)[0], maxExtended = try cpuid(0x8000_0000)[0]
        let maxLeaf7Subleaf = maxBasic >= 7 ? try cpuid(7)[0] : 0
        var bits = Set<CPUIDFeatureBit>()
        for (leaf, subleaf, register) in CPUIDProbes.featureRegisters {
            let answered = leaf >= 0x8000_0000 ? leaf <= maxExtended : leaf <= maxBasic && subleaf <= maxLeaf7Subleaf
            guard answered else { continue }
            let value = try cpuid(leaf, subleaf)[register.rawValue]
            for bit in 0..<32 where value >> bit & 1 != 0 {
                let feature = CPUIDFeatureBit(leaf: leaf, subleaf: subleaf, register: register, bit: bit)
                if !CPUIDProbes.statusBits.contains(feature) { bits.insert(feature) }
            }
        }
        return bits
    }
}

struct ProbeFailure: Error, CustomStringConvertible { var text: String; var description: String { text } }

@Suite("CPUID says what the CPU does", .timeLimit(.minutes(2)))
struct CPUIDFeatureTests {
    static let probesByFeature = Dictionary(CPUIDProbes.all.map { ($0.feature, $0) }, uniquingKeysWith: { a, _ in a })

    @Test("the probe table names each feature bit once")
    func probesAreDistinct() {
        #expect(Self.probesByFeature.count == CPUIDProbes.all.count)
    }

    @Test("the probe machine sees an exception: UD2 is reported as #UD on interp")
    func harnessSeesUndefined() throws {
        let machine = ProbeMachine(engine: InterpEngine())
        var state = X86State()
        #expect(try machine.run([0x0f, 0x0b], user: true, state: &state) == .exception(6))
        #expect(try machine.run([0x90], user: true, state: &state) == .completed)
        #expect(try machine.run([0x0f, 0x20, 0xe0], user: true, state: &state) == .exception(13), "mov rax,cr4 at CPL3")
    }

    @Test("interp answers no feature leaf the probes do not walk")
    func interpLeavesAreKnown() {
        // Identification and address-size leaves carry no feature flags; 0x8000_0002-4 is the brand;
        // 0x15 and 0x16 are the TSC's and the processor's frequencies.
        let informational: Set<UInt32> = [0, 0x15, 0x16, 0x8000_0000, 0x8000_0002, 0x8000_0003, 0x8000_0004, 0x8000_0008]
        let walked = Set(CPUIDProbes.featureRegisters.map(\.leaf))
        for entry in InterpEngine.cpuidLeaves {
            #expect(walked.contains(entry.function) || informational.contains(entry.function),
                    "leaf 0x\(String(entry.function, radix: 16)) is neither walked for features nor known to hold none")
        }
    }

    @Test("every feature bit interp advertises has a probe")
    func interpBitsHaveProbes() throws {
        let advertised = try ProbeMachine(engine: InterpEngine()).advertisedFeatures()
        let unprobed = advertised.filter { Self.probesByFeature[$0] == nil }
        #expect(unprobed.isEmpty, "no probe for \(unprobed.sorted { $0.description < $1.description }): add one to CPUIDProbes.all")
    }

    @Test("every feature interp advertises runs on interp, and every probe that runs is advertised")
    func interpRunsWhatItAdvertises() throws {
        let machine = ProbeMachine(engine: InterpEngine())
        let advertised = try machine.advertisedFeatures()
        for probe in CPUIDProbes.all {
            let outcome = try machine.run(probe)
            if advertised.contains(probe.feature) {
                #expect(outcome == .completed, "interp advertises \(probe) but the probe \(outcome)")
            } else {
                #expect(outcome != .completed, "interp executes \(probe) but does not advertise it")
            }
        }
    }

    @Test("every probed feature kvm advertises runs on kvm", .enabled(if: Host.kvmAvailable, "needs /dev/kvm"))
    func kvmRunsWhatItAdvertises() throws {
        let machine = ProbeMachine(engine: KVMEngine())
        var state = X86State()
        #expect(try machine.run([0x0f, 0x0b], user: true, state: &state) == .exception(6), "the harness sees #UD")
        let advertised = try machine.advertisedFeatures()
        var probed: [String] = []
        for probe in CPUIDProbes.all where advertised.contains(probe.feature) {
            let outcome = try machine.run(probe)
            #expect(outcome == .completed, "kvm advertises \(probe) but the probe \(outcome)")
            probed.append(probe.name)
        }
        let unprobed = advertised.filter { Self.probesByFeature[$0] == nil }
            .sorted { ($0.leaf, $0.register.rawValue, $0.bit) < ($1.leaf, $1.register.rawValue, $1.bit) }
        FileHandle.standardError.write(Data("""
            CPUID on kvm: probed and passed \(probed.count): \(probed.joined(separator: " "))
            CPUID on kvm: advertised without a probe (the host's to answer for): \(unprobed.map(\.description).joined(separator: " "))

            """.utf8))
    }
}
