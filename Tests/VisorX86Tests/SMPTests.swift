// Several interp vCPUs of one machine on their own host threads over the same RAM: LOCK-prefixed
// instructions and XCHG are atomic across them (exact counts after racing loops), code one vCPU
// writes reaches another by its next serializing point, and an application processor started
// in real mode (as after INIT/SIPI) runs a typical trampoline into long mode.

import Dispatch
import Synchronization
import Testing
import VisorCore
@testable import VisorX86
import VisorX86Decode

/// A machine of `count` interp vCPUs over the long-mode fixture, each in the fixture's state.
func smpMachine(_ count: Int, code: [UInt8]) throws -> ([InterpVirtualCPU], SysMachine) {
    let f = SysMachine.longMode()
    f.bus.bytes(SysLayout.code, code)
    let vm = try InterpEngine().makeMachine(memory: f.bus.memory, options: MachineOptions(vcpuCount: count))
    var cpus: [InterpVirtualCPU] = []
    for i in 0..<count {
        let cpu = try #require(try vm.makeVCPU(index: i) as? InterpVirtualCPU)
        try cpu.setState(f.cpu.state)
        cpus.append(cpu)
    }
    return (cpus, f)
}

/// Runs `cpu` until an exit other than a budget stop, or `limit` instructions (then `.stopped`).
func runToExit(_ cpu: InterpVirtualCPU, limit: Int = 200_000_000) -> Exit {
    var left = limit
    while left > 0 {
        let exit = cpu.run(budget: 1 << 16)
        if exit != .stopped { return exit }
        left -= 1 << 16
    }
    return .stopped
}

@Suite struct LockedInstructionTests {
    /// Each vCPU runs RSI iterations of, with RBX = 0x20_0000:
    ///   lock xadd [rbx], eax (eax = 1)          dword, aligned
    ///   lock inc dword [rbx+0x42]               misaligned inside one 8-byte word
    ///   lock inc dword [rbx+0x86]               crosses an 8-byte word: the machine lock
    ///   1: mov rax, [rbx+0x100]; lea rdx, [rax+1]; lock cmpxchg [rbx+0x100], rdx; jnz 1b
    ///   2: xor eax, eax; mov edx, 1; lock cmpxchg [rbx+0x200], edx; jnz 2b   spin lock...
    ///      inc dword [rbx+0x300]; mov dword [rbx+0x200], 0                  ...plain inside, plain release
    ///   3: mov eax, 1; xchg [rbx+0x400], eax; test eax, eax; jnz 3b          XCHG lock...
    ///      inc dword [rbx+0x500]; mov dword [rbx+0x400], 0
    /// then HLT. A lost update shows as a short count; a failing LOCK CMPXCHG that wrote back a
    /// stale 1 over the holder's release would leave the spin lock held forever.
    static let racingLoops: [UInt8] = [
        0xbb, 0x00, 0x00, 0x20, 0x00, 0xb8, 0x01, 0x00, 0x00, 0x00, 0xf0, 0x0f, 0xc1, 0x03, 0xf0, 0xff,
        0x43, 0x42, 0xf0, 0xff, 0x83, 0x86, 0x00, 0x00, 0x00, 0x48, 0x8b, 0x83, 0x00, 0x01, 0x00, 0x00,
        0x48, 0x8d, 0x50, 0x01, 0xf0, 0x48, 0x0f, 0xb1, 0x93, 0x00, 0x01, 0x00, 0x00, 0x75, 0xea, 0x31,
        0xc0, 0xba, 0x01, 0x00, 0x00, 0x00, 0xf0, 0x0f, 0xb1, 0x93, 0x00, 0x02, 0x00, 0x00, 0x75, 0xef,
        0xff, 0x83, 0x00, 0x03, 0x00, 0x00, 0xc7, 0x83, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0xb8, 0x01, 0x00, 0x00, 0x00, 0x87, 0x83, 0x00, 0x04, 0x00, 0x00, 0x85, 0xc0, 0x75, 0xf1, 0xff,
        0x83, 0x00, 0x05, 0x00, 0x00, 0xc7, 0x83, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff,
        0xce, 0x75, 0x92, 0xf4,
    ]

    @Test func lockedCountersAreExactAcrossTwoHostThreads() throws {
        let iterations: UInt64 = 20_000
        let (cpus, f) = try smpMachine(2, code: Self.racingLoops)
        for (i, cpu) in cpus.enumerated() {
            var s = try cpu.state()
            s.rsi = iterations
            s.rsp = SysLayout.stack - UInt64(i) * 0x1000
            try cpu.setState(s)
        }
        let exits = Mutex<[Int: Exit]>([:])
        DispatchQueue.concurrentPerform(iterations: cpus.count) { i in
            let exit = runToExit(cpus[i], limit: 30_000_000)
            exits.withLock { $0[i] = exit }
        }
        #expect(exits.withLock { $0 } == [0: .halt, 1: .halt], "neither vCPU is stuck on a lock")
        let total = 2 * iterations
        let base: UInt64 = 0x20_0000
        #expect(UInt64(f.bus.r32(base)) == total, "lock xadd")
        #expect(UInt64(f.bus.r32(base + 0x42)) == total, "lock inc, misaligned in a word")
        #expect(UInt64(f.bus.r32(base + 0x86)) == total, "lock inc across words (machine lock)")
        #expect(f.bus.r64(base + 0x100) == total, "lock cmpxchg loop")
        #expect(UInt64(f.bus.r32(base + 0x300)) == total, "plain increment under a lock cmpxchg spin lock")
        #expect(UInt64(f.bus.r32(base + 0x500)) == total, "plain increment under an xchg spin lock")
        #expect(f.bus.r32(base + 0x200) == 0 && f.bus.r32(base + 0x400) == 0, "both locks released")
    }

    /// Runs `code` (then HLT) on a lone long-mode vCPU with RBX = 0x20_0000.
    func runLocked(_ code: [UInt8], prepare: (SysMachine) -> Void) throws -> (X86State, SysMachine) {
        let (cpu, f) = try interpVCPU(code + [0xf4], prepare: prepare)
        var s = try cpu.state()
        s.rbx = 0x20_0000
        try cpu.setState(s)
        #expect(try cpu.run() == .halt)
        return (try cpu.state(), f)
    }

    @Test func lockedCompareExchangeThatFailsLeavesMemoryAndLoadsTheAccumulator() throws {
        // mov eax, 5; mov ecx, 9; lock cmpxchg [rbx], ecx
        let (s, f) = try runLocked([0xb8, 0x05, 0, 0, 0, 0xb9, 0x09, 0, 0, 0, 0xf0, 0x0f, 0xb1, 0x0b]) {
            $0.bus.w32(0x20_0000, 7)
        }
        #expect(f.bus.r32(0x20_0000) == 7)
        #expect(s.rax == 7 && s.rflags & X86SystemBits.flagZF == 0)
    }

    @Test func lockedCompareExchangeThatSucceedsStores() throws {
        // mov eax, 7; mov ecx, 9; lock cmpxchg [rbx+1], ecx   (misaligned inside a word)
        let (s, f) = try runLocked([0xb8, 0x07, 0, 0, 0, 0xb9, 0x09, 0, 0, 0, 0xf0, 0x0f, 0xb1, 0x4b, 0x01]) {
            $0.bus.w64(0x20_0000, 0xaa00_0000_07bb)
        }
        #expect(f.bus.r64(0x20_0000) == 0xaa00_0000_09bb, "the neighbouring bytes are kept")
        #expect(s.rflags & X86SystemBits.flagZF != 0)
    }

    @Test func lockedBitTestAndSetReachesTheWordTheRegisterOffsetSelects() throws {
        // mov eax, 35; lock bts [rbx], eax  → bit 3 of the dword at +4
        let (s, f) = try runLocked([0xb8, 35, 0, 0, 0, 0xf0, 0x0f, 0xab, 0x03]) { _ in }
        #expect(f.bus.r32(0x20_0004) == 8)
        #expect(s.rflags & X86SystemBits.flagCF == 0, "the bit was clear")
    }

    @Test func lockedCompareExchange8BStoresOnEqual() throws {
        // xor eax, eax; xor edx, edx; mov ebx', ... : rbx holds the address, so use rsi as base:
        // mov rsi, rbx; mov ebx, 0x11; mov ecx, 0x22; lock cmpxchg8b [rsi]
        let (s, f) = try runLocked([0x48, 0x89, 0xde, 0xbb, 0x11, 0, 0, 0, 0xb9, 0x22, 0, 0, 0,
                                    0xf0, 0x0f, 0xc7, 0x0e]) { _ in }
        #expect(f.bus.r64(0x20_0000) == 0x22_0000_0011)
        #expect(s.rflags & X86SystemBits.flagZF != 0)
    }

    @Test func xchgAcrossAPageBoundaryIsCompleteUnderTheMachineLock() throws {
        // mov eax, 0x11223344; xchg [rbx+0xffe], eax
        let (s, f) = try runLocked([0xb8, 0x44, 0x33, 0x22, 0x11, 0x87, 0x83, 0xfe, 0x0f, 0, 0]) {
            $0.bus.w32(0x20_0ffe, 0xaabb_ccdd)
        }
        #expect(f.bus.r32(0x20_0ffe) == 0x1122_3344)
        #expect(s.rax == 0xaabb_ccdd)
    }

    @Test func lockedAddOnMMIOIsAnOrdinaryReadAndWrite() throws {
        // lock add dword [0x5000_0000], 1   (outside RAM: 1 GiB at 0x4000_0000 mapped to itself)
        let (cpu, _) = try interpVCPU([0xf0, 0x83, 0x04, 0x25, 0x00, 0x00, 0x00, 0x50, 0x01, 0xf4]) {
            $0.bus.w64(SysLayout.pdpt + 8, 0x4000_0000 | 0x83)
        }
        #expect(try cpu.run() == .mmioRead(address: GuestPhysicalAddress(0x5000_0000), size: 4))
        cpu.completeRead(41)
        #expect(try cpu.run() == .mmioWrite(address: GuestPhysicalAddress(0x5000_0000), size: 4, value: 42))
        #expect(try cpu.run() == .halt)
    }

    @Test func lockedWriteToAReadOnlyPageFaultsAsAWrite() throws {
        // lock inc dword [0x60_0000] on a read-only 4 KiB page → #PF, error code P | W.
        let (cpu, f) = try interpVCPU([0xf0, 0xff, 0x04, 0x25, 0x00, 0x00, 0x60, 0x00, 0xf4]) { f in
            f.bus.w64(SysLayout.pd + 24, 0x23000 | 3)
            f.bus.w64(0x23000, 0x30000 | 1)  // present, not writable
            f.gate(14, handler: SysLayout.code + 0x100)
            f.bus.bytes(SysLayout.code + 0x100, [0xf4])
        }
        #expect(try cpu.run() == .halt)
        #expect(f.bus.r64(SysLayout.stack - 48) == 3, "present, write")
        #expect(f.bus.r32(0x30000) == 0)
    }
}

@Suite struct CrossModifyingCodeTests {
    /// vCPU 1's code at 0x10_1000: top: mov al, 1; out 0x80, al; cpuid; jmp top
    static let reader: [UInt8] = [0xb0, 0x01, 0xe6, 0x80, 0x0f, 0xa2, 0xeb, 0xf8]
    /// vCPU 0's code at 0x10_0000: mov byte [0x10_1001], 2; hlt  (patches the reader's MOV AL)
    static let writer: [UInt8] = [0xc6, 0x04, 0x25, 0x01, 0x10, 0x10, 0x00, 0x02, 0xf4]

    func setUp(reader: [UInt8]) throws -> ([InterpVirtualCPU], SysMachine) {
        let (cpus, f) = try smpMachine(2, code: Self.writer)
        f.bus.bytes(SysLayout.code + 0x1000, reader)
        var s = try cpus[1].state()
        s.rip = SysLayout.code + 0x1000
        try cpus[1].setState(s)
        return (cpus, f)
    }

    /// The next port-write exit of `machine` stepped directly, without `run()`'s serializing entry.
    func nextOut(_ cpu: InterpVirtualCPU) -> Exit? {
        guard cpu.machine.run(budget: 100) == .pendingExit else { return nil }
        return cpu.bus.takePendingExit()
    }

    @Test func aSerializingInstructionDropsCodeAnotherVCPUWrote() throws {
        let (cpus, _) = try setUp(reader: Self.reader)
        #expect(nextOut(cpus[1]) == .portWrite(port: 0x80, size: 1, value: 1))
        #expect(cpus[1].machine.decodeCache.pageCount == 1, "vCPU 1 has the page decoded")
        #expect(try cpus[0].run() == .halt, "vCPU 0 patched it")
        // vCPU 1 goes on: CPUID (serializing), then the patched MOV AL.
        #expect(nextOut(cpus[1]) == .portWrite(port: 0x80, size: 1, value: 2))
        #expect(nextOut(cpus[1]) == .portWrite(port: 0x80, size: 1, value: 2))
    }

    @Test func enteringRunDropsCodeAnotherVCPUWrote() throws {
        // top: mov al, 1; out 0x80, al; hlt; jmp top
        let (cpus, _) = try setUp(reader: [0xb0, 0x01, 0xe6, 0x80, 0xf4, 0xeb, 0xf9])
        #expect(try cpus[1].run() == .portWrite(port: 0x80, size: 1, value: 1))
        #expect(try cpus[1].run() == .halt)
        #expect(try cpus[0].run() == .halt)
        #expect(try cpus[1].run() == .portWrite(port: 0x80, size: 1, value: 2))
    }

    @Test func takingAnInterruptDropsCodeAnotherVCPUWrote() throws {
        // top: mov al, 1; out 0x80, al; jmp top   (no serializing instruction in the loop)
        let (cpus, f) = try setUp(reader: [0xb0, 0x01, 0xe6, 0x80, 0xeb, 0xfa])
        // The handler is IRETQ at 0x10_2000.
        f.gate(0x40, handler: SysLayout.code + 0x2000)
        f.bus.bytes(SysLayout.code + 0x2000, [0x48, 0xcf])
        var s = try cpus[1].state()
        s.rflags |= X86SystemBits.flagIF
        try cpus[1].setState(s)
        #expect(nextOut(cpus[1]) == .portWrite(port: 0x80, size: 1, value: 1))
        #expect(try cpus[0].run() == .halt)
        try cpus[1].injectInterrupt(vector: 0x40)
        #expect(nextOut(cpus[1]) == .portWrite(port: 0x80, size: 1, value: 2))
    }

    @Test func aLoneVCPUDoesNotLogItsCodeWrites() throws {
        let (cpus, _) = try smpMachine(1, code: Self.writer)
        #expect(cpus[0].machine.shared.tracksCrossModifyingCode == false)
        #expect(try cpus[0].run() == .halt)
    }
}

@Suite struct ApplicationProcessorTests {
    /// A typical AP trampoline, assembled for 0x8000 (SIPI vector 8):
    ///   .code16: cli; mov ax, cs; mov ds, ax; lgdtl [gdtr]; mov eax, cr0; or eax, 1; mov cr0, eax
    ///            ljmpl 0x08:pm32
    ///   .code32: pm32: mov ax, 0x10; mov ds/es/ss, ax; CR4.PAE; mov cr3, 0x10000 (the fixture's
    ///            PML4); rdmsr/wrmsr EFER.LME; CR0.PG; ljmpl 0x18:lm64
    ///   .code64: lm64: mov ax, 0x10; mov ds, ax; mov ss, ax; mov esp, 0x9000; push 0x64; pop rax
    ///            out 0x80, al; mov ecx, 0x1b; rdmsr; hlt
    ///   gdt: null, 32-bit code, data, 64-bit code; gdtr: limit 31, base 0x8078
    static let trampoline: [UInt8] = [
        0xfa, 0x8c, 0xc8, 0x8e, 0xd8, 0x66, 0x0f, 0x01, 0x16, 0x98, 0x00, 0x0f, 0x20, 0xc0, 0x66, 0x83,
        0xc8, 0x01, 0x0f, 0x22, 0xc0, 0x66, 0xea, 0x1d, 0x80, 0x00, 0x00, 0x08, 0x00, 0x66, 0xb8, 0x10,
        0x00, 0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0, 0x0f, 0x20, 0xe0, 0x83, 0xc8, 0x20, 0x0f, 0x22, 0xe0,
        0xb8, 0x00, 0x00, 0x01, 0x00, 0x0f, 0x22, 0xd8, 0xb9, 0x80, 0x00, 0x00, 0xc0, 0x0f, 0x32, 0x0d,
        0x00, 0x01, 0x00, 0x00, 0x0f, 0x30, 0x0f, 0x20, 0xc0, 0x0d, 0x00, 0x00, 0x00, 0x80, 0x0f, 0x22,
        0xc0, 0xea, 0x58, 0x80, 0x00, 0x00, 0x18, 0x00, 0x66, 0xb8, 0x10, 0x00, 0x8e, 0xd8, 0x8e, 0xd0,
        0xbc, 0x00, 0x90, 0x00, 0x00, 0x6a, 0x64, 0x58, 0xe6, 0x80, 0xb9, 0x1b, 0x00, 0x00, 0x00, 0x0f,
        0x32, 0xf4, 0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0xff, 0xff, 0x00, 0x00, 0x00, 0x9a, 0xcf, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x92, 0xcf, 0x00,
        0xff, 0xff, 0x00, 0x00, 0x00, 0x9a, 0xaf, 0x00, 0x1f, 0x00, 0x78, 0x80, 0x00, 0x00,
    ]

    /// The state Visor gives an AP after INIT/SIPI with `vector`: real mode, CS = vector << 8,
    /// base vector << 12, IP = 0, everything else as after INIT.
    static func startupState(vector: UInt8) -> X86State {
        var s = X86State()
        s.cr0 = 0x6000_0010
        s.cs = SegmentRegister(selector: UInt16(vector) << 8, base: UInt64(vector) << 12, limit: 0xffff, type: 0xb)
        for r in [\X86State.ds, \.es, \.ss, \.fs, \.gs] { s[keyPath: r] = SegmentRegister() }
        s.gdtr = DescriptorTableRegister(base: 0, limit: 0xffff)
        s.idtr = DescriptorTableRegister(base: 0, limit: 0xffff)
        s.rip = 0
        s.rflags = 2
        return s
    }

    @Test func anAPStartedInRealModeRunsATrampolineIntoLongMode() throws {
        let (cpus, f) = try smpMachine(2, code: [0xf4])
        f.bus.bytes(0x8000, Self.trampoline)
        let ap = cpus[1]
        try ap.setState(Self.startupState(vector: 8))
        // Budgeted: in real mode a fault goes through the IVT at 0 and, should the decoder break,
        // would loop forever; with a budget the test fails instead of hanging.
        #expect(ap.run(budget: 100_000) == .portWrite(port: 0x80, size: 1, value: 0x64), "reached 64-bit code")
        #expect(ap.run(budget: 100_000) == .halt)
        let s = try ap.state()
        #expect(s.efer & X86SystemBits.eferLMA != 0 && s.cr0 & X86SystemBits.cr0PG != 0)
        #expect(s.cs.selector == 0x18 && s.cs.longMode)
        #expect(s.rip == 0x8000 + 0x72, "past the HLT")
        #expect(s.rdx << 32 | s.rax == 0xfee0_0800, "an AP's APIC base has no BSP bit")
        #expect(s.rflags & X86SystemBits.flagIF == 0)
    }
}
