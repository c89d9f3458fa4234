// A REP string instruction with a huge count over memory that never runs out must not hold
// the vCPU thread: it yields between bounded runs of iterations (RIP still on it, registers
// updated, as after an interrupt on hardware), so budgets and stop requests still work.

import Foundation
import Testing
import VisorCore
@testable import VisorX86

// The time limit guards against a hang, not a slow host: on a busy 2-core machine a test may
// wait minutes for one of Swift Testing's threads.
@Suite(.timeLimit(.minutes(5)))
struct RepeatBoundTests {
    /// 511 GiB of linear addresses (PDPT[1...511]) all mapping the 2 MiB of RAM at physical 0.
    func endlessMemoryMachine(_ code: [UInt8]) throws -> InterpVirtualCPU {
        let f = SysMachine.longMode()
        let directory: UInt64 = 0x13000
        for i in 0..<512 { f.bus.w64(directory + 8 * UInt64(i), 0x0 | 0x83) }
        for i in 1..<512 { f.bus.w64(SysLayout.pdpt + 8 * UInt64(i), directory | 3) }
        f.bus.bytes(SysLayout.code, code)
        let vm = try InterpEngine().makeMachine(memory: f.bus.memory, options: MachineOptions())
        let cpu = try #require(try vm.makeVCPU(index: 0) as? InterpVirtualCPU)
        try cpu.setState(f.cpu.state)
        return cpu
    }

    static let repLods: [UInt8] = [
        0x48, 0xbe, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00,  // mov rsi, 0x4000_0000
        0x48, 0xc7, 0xc1, 0xff, 0xff, 0xff, 0xff,                    // mov rcx, -1
        0xf3, 0x48, 0xad,                                            // rep lodsq
        0xf4,                                                        // hlt
    ]

    @Test("a budgeted run returns while an endless REP LODS is still going")
    func budgetEndsAnEndlessRep() throws {
        let cpu = try endlessMemoryMachine(Self.repLods)
        #expect(try cpu.run(budget: 1000) == .stopped)
        let s = try cpu.state()
        #expect(s.rip == SysLayout.code + 17, "RIP stays on the REP instruction")
        #expect(s.rcx < UInt64.max - 1000, "iterations were done")
        #expect(s.rsi > 0x4000_0000)
        // It resumes where it left off.
        #expect(try cpu.run(budget: 1000) == .stopped)
        #expect(try cpu.state().rsi > s.rsi)
    }

    @Test("requestStop from another thread stops an endless REP LODS")
    func stopEndsAnEndlessRep() throws {
        let cpu = try endlessMemoryMachine(Self.repLods)
        let stopper = Thread { usleep(100_000); cpu.requestStop() }
        stopper.start()
        #expect(try cpu.run() == .stopped)
    }

    /// The machine above with the last page of the address space mapped too: PML4[511] →
    /// PDPT[511] → the 2 MiB pages, so 0xffff_ffff_ffff_f000 is physical 0x1f_f000.
    func topPageMachine(_ code: [UInt8]) throws -> InterpVirtualCPU {
        let cpu = try endlessMemoryMachine([])
        let memory = cpu.machine.memory
        try memory.store(SysLayout.pdpt | 3, at: GuestPhysicalAddress(SysLayout.pml4 + 8 * 511))
        for (i, byte) in code.enumerated() { try memory.store(byte, at: GuestPhysicalAddress(SysLayout.code + UInt64(i))) }
        return cpu
    }

    // Found by fuzzing (interpreter target, 2026-12-05): FNSAVE, FNSTENV and FXSAVE checked that
    // every page of their image was writable by stepping an address 4 KiB at a time until it
    // passed the image's end; with the image in the last page of the address space the step
    // wrapped to 0 and went on through all 2^52 pages, holding the vCPU thread for hours.
    @Test("FNSAVE and FXSAVE into the last page of the address space finish", arguments: [
        // mov rax, 0xffff_ffff_ffff_f010; fninit; fnsave [rax]; hlt
        [0x48, 0xc7, 0xc0, 0x10, 0xf0, 0xff, 0xff, 0xdb, 0xe3, 0xdd, 0x30, 0xf4] as [UInt8],
        // mov rax, 0xffff_ffff_ffff_f000; fninit; fxsave [rax]; hlt
        [0x48, 0xc7, 0xc0, 0x00, 0xf0, 0xff, 0xff, 0xdb, 0xe3, 0x0f, 0xae, 0x00, 0xf4],
    ])
    func imageInTheLastPage(code: [UInt8]) throws {
        let cpu = try topPageMachine(code)
        _ = try cpu.run(budget: 100)
        let s = try cpu.state()
        #expect(s.rip == SysLayout.code + UInt64(code.count), "the store and HLT retired")
        let fcw = try cpu.machine.memory.load(UInt16.self, at: GuestPhysicalAddress(0x1f_f000 + (code[3] == 0x10 ? 0x10 : 0)))
        #expect(fcw == 0x037f, "the image holds FNINIT's control word")
    }
}
