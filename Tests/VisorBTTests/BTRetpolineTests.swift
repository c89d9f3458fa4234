// Linux calls through retpoline thunks (`__x86_indirect_thunk_rax`: a CALL over a speculation
// trap to `mov [rsp], rax; ret`). bt translates such a thunk as one indirect jump that leaves
// what the three instructions leave: the register's value in the 8 bytes below RSP, RSP as it
// was, RIP at the target. These tests hold it to interp's results, faults included.

import Testing
import VisorCore
import VisorX86
@testable import VisorBT

@Suite("bt: retpoline thunks")
struct BTRetpolineTests {
    static let thunkRAX: UInt64 = 0x1800
    static let thunkR11: UInt64 = 0x1840

    /// call 1f; pause; lfence; jmp .-7 (the trap); 1: mov [rsp], reg; ret.
    static func thunk(_ move: [UInt8]) -> [UInt8] {
        [0xe8, 0x07, 0x00, 0x00, 0x00, 0xf3, 0x90, 0x0f, 0xae, 0xe8, 0xeb, 0xf9] + move + [0xc3]
    }

    /// A loop of ECX rounds calling f (through RAX's thunk) and g (through R11's), then HLT.
    /// f: add rbx, 1; ret. g: add rdx, 3; ret.
    static func program(rounds: UInt32) -> [(UInt64, [UInt8])] {
        func call(_ target: UInt64, from rip: UInt64) -> [UInt8] {
            [0xe8] + btBytes(UInt64(UInt32(truncatingIfNeeded: Int64(target) - Int64(rip + 5))), 4)
        }
        var main: [UInt8] = [0xb9] + btBytes(UInt64(rounds), 4)             // mov ecx, rounds
        main += [0x48, 0xc7, 0xc0, 0x00, 0x11, 0x00, 0x00]                 // L: mov rax, 0x1100 (f)
        main += call(thunkRAX, from: 0x1000 + UInt64(main.count))
        main += [0x49, 0xc7, 0xc3, 0x40, 0x11, 0x00, 0x00]                 // mov r11, 0x1140 (g)
        main += call(thunkR11, from: 0x1000 + UInt64(main.count))
        main += [0xff, 0xc9, 0x75, UInt8(truncatingIfNeeded: 5 - (main.count + 4)), 0xf4]  // dec ecx; jnz L; hlt
        return [(0x1000, main),
                (0x1100, [0x48, 0x83, 0xc3, 0x01, 0xc3]),                  // f
                (0x1140, [0x48, 0x83, 0xc2, 0x03, 0xc3]),                  // g
                (thunkRAX, thunk([0x48, 0x89, 0x04, 0x24])),               // mov [rsp], rax
                (thunkR11, thunk([0x4c, 0x89, 0x1c, 0x24]))]               // mov [rsp], r11
    }

    static func harness(translated: Bool, paging: Bool = false) throws -> BTHarness {
        let h = try BTHarness(translated: translated)
        if paging { try h.enablePaging() }
        for (address, bytes) in program(rounds: 500) { try h.load(bytes, at: address) }
        h.cpu.rip = BTHarness.codeAddress
        return h
    }

    @Test("indirect calls through two thunks: interp's registers, stack bytes and count, one jump per thunk",
          .enabled(if: BTFastPaths.hostHasBMI2, "the translation needs the inline paths (BMI2)"))
    func callsThroughThunks() throws {
        let interp = try Self.harness(translated: false)
        let bt = try Self.harness(translated: true)
        #expect(interp.run() == .halted)
        #expect(bt.run() == .halted)
        #expect(bt.cpu.gpr == interp.cpu.gpr)
        #expect(bt.cpu.gpr[3] == 500 && bt.cpu.gpr[2] == 1500, "f and g each ran 500 times")
        #expect(bt.cpu.rip == interp.cpu.rip)
        let stack = GuestPhysicalAddress(0x8_0000 - 0x100)
        #expect(try bt.bus.memory.read(at: stack, count: 0x100) == interp.bus.memory.read(at: stack, count: 0x100),
                "the bytes below RSP (the thunks' return slots, holding the target) as on interp")
        let stats = try #require(bt.executor).statistics
        #expect(stats.retpolineBlocks == 2, "each thunk became one block ending in a jump")
        #expect(stats.instructionsRun == UInt64(interp.machine.instructionsRetired) - 1, "all but HLT ran translated")
    }

    @Test("a thunk called with a non-canonical target raises #GP at its RET, as on interp",
          .enabled(if: BTFastPaths.hostHasBMI2, "the translation needs the inline paths (BMI2)"))
    func nonCanonicalTargetFaultsAtTheReturn() throws {
        var results: [BTHarness] = []
        for translated in [false, true] {
            let h = try Self.harness(translated: translated, paging: true)
            // After 100 good rounds the 101st call of f goes to a non-canonical address: RAX is
            // loaded from [0x7000], which holds f until the loop writes the bad target there.
            var main: [UInt8] = [0xb9] + btBytes(500, 4)
            main += [0x48, 0x8b, 0x04, 0x25, 0x00, 0x70, 0x00, 0x00]            // L: mov rax, [0x7000]
            main += [0xe8] + btBytes(UInt64(UInt32(truncatingIfNeeded: Int64(Self.thunkRAX) - Int64(0x1000 + main.count + 5))), 4)
            main += [0x48, 0xff, 0x04, 0x25, 0x08, 0x70, 0x00, 0x00]            // inc qword [0x7008]
            main += [0x48, 0x83, 0x3c, 0x25, 0x08, 0x70, 0x00, 0x00, 0x64]      // cmp qword [0x7008], 100
            main += [0x75, 0x12]                                                // jne over the next two
            main += [0x48, 0xb8] + btBytes(0x8000_0000_0000_1100, 8)            // mov rax, bad
            main += [0x48, 0x89, 0x04, 0x25, 0x00, 0x70, 0x00, 0x00]            // mov [0x7000], rax
            main += [0xff, 0xc9]                                                // dec ecx
            let back = -(main.count + 2)
            main += [0x75, UInt8(truncatingIfNeeded: back), 0xf4]               // jnz L; hlt
            try h.load(main, at: 0x1000)
            try h.bus.memory.write(btBytes(0x1100, 8) + btBytes(0, 8), at: GuestPhysicalAddress(0x7000))
            h.cpu.rip = BTHarness.codeAddress
            #expect(h.run(budget: 100_000) == .halted)
            results.append(h)
        }
        let (interp, bt) = (results[0], results[1])
        // Stopped in the #GP handler (vector 13's HLT), with the RET's frame.
        #expect(interp.cpu.rip == BTHarness.handler + 13 + 1)
        #expect(bt.cpu.rip == interp.cpu.rip)
        #expect(bt.cpu.gpr == interp.cpu.gpr)
        #expect(bt.cpu.rflags == interp.cpu.rflags)
        for page in [UInt64(0x7000), 0x7_f000] {
            let a = GuestPhysicalAddress(page)
            #expect(try bt.bus.memory.read(at: a, count: 4096) == interp.bus.memory.read(at: a, count: 4096),
                    "page \(String(page, radix: 16))")
        }
        let frame = try interp.bus.memory.read(at: GuestPhysicalAddress(interp.cpu.gpr[4]), count: 16)
        #expect(frame[0] == 0, "#GP's error code is 0")
        #expect(UInt64(frame[8]) | UInt64(frame[9]) << 8 == Self.thunkRAX + 16, "the fault is the RET's")
        #expect(try #require(bt.executor).statistics.retpolineBlocks >= 1)
    }
}
