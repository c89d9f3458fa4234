// The bt engine's mechanism: blocks are translated and run as host code, their results match
// the interpreter's, stores to translated code drop it, and a full code cache starts over.

import Testing
import VisorCore
import VisorX86
import VisorX86Decode
@testable import VisorBT

@Suite("bt: translated blocks")
struct BTExecutorTests {
    /// rcx = 1000; rax = 0; loop { rax += rcx; rbx ^= rax; rcx -= 1 } until rcx = 0; hlt.
    static let sumLoop: [UInt8] = [
        0x48, 0xc7, 0xc1, 0xe8, 0x03, 0x00, 0x00,  // mov rcx, 1000
        0x31, 0xc0,                                // xor eax, eax
        0x48, 0x01, 0xc8,                          // L: add rax, rcx
        0x48, 0x31, 0xc3,                          // xor rbx, rax
        0x48, 0xff, 0xc9,                          // dec rcx
        0x75, 0xf5,                                // jnz L
        0xf4,                                      // hlt
    ]

    @Test("a loop runs as translated blocks and ends with the interpreter's registers and flags")
    func loopMatchesInterpreter() throws {
        let interp = try BTHarness(translated: false)
        let bt = try BTHarness(translated: true)
        for h in [interp, bt] {
            try h.load(Self.sumLoop)
            #expect(h.run() == .halted)
        }
        #expect(bt.cpu.gpr == interp.cpu.gpr)
        #expect(bt.cpu.rip == interp.cpu.rip)
        #expect(bt.cpu.rflags == interp.cpu.rflags)
        #expect(bt.cpu.gpr[0] == 500_500)
        let stats = try #require(bt.executor).statistics
        // The loop body is one block run 1000 times, jumping to itself through the jump cache:
        // a few entries from Swift (the budget ends one every `instructionsPerEntry`), not one per block.
        // Only HLT went to the interpreter.
        #expect(stats.entries <= 4002 / Int(BTExecutor.instructionsPerEntry) + 3)
        #expect(stats.instructionsRun == 2 + 4 * 1000)
        // The loop's back edge targets its own page: linked straight to the block's body.
        #expect(stats.links >= 1)
        #expect(bt.machine.instructionsRetired == interp.machine.instructionsRetired)
    }

    @Test("a direct JMP within the page is followed: one block runs on past it")
    func jumpFollowed() throws {
        // mov eax, 1; jmp +2 (over a UD2 that must not run); add eax, 2; hlt.
        let code: [UInt8] = [0xb8, 0x01, 0x00, 0x00, 0x00, 0xeb, 0x02, 0x0f, 0x0b, 0x83, 0xc0, 0x02, 0xf4]
        let interp = try BTHarness(translated: false)
        let bt = try BTHarness(translated: true)
        for h in [interp, bt] {
            try h.load(code)
            #expect(h.run() == .halted)
        }
        #expect(bt.cpu.gpr == interp.cpu.gpr)
        #expect(bt.cpu.rflags == interp.cpu.rflags)
        #expect(bt.cpu.gpr[0] == 3)
        let stats = try #require(bt.executor).statistics
        // MOV, JMP and ADD in one block (HLT is the interpreter's).
        #expect(stats.blocksTranslated == 1)
        #expect(stats.instructionsTranslated == 3)
        #expect(stats.instructionsRun == 3)
    }

    @Test("going back to a CPL seen under the same mapping takes up its jump cache and TLB again")
    func viewResumed() throws {
        // The sum loop, then JMP $ (HLT would fault at CPL3): each run ends with the budget.
        let code = Array(Self.sumLoop.dropLast()) + [0xeb, 0xfe]
        let bt = try BTHarness(translated: true)
        try bt.load(code)
        #expect(bt.run(budget: 20_000) == .budgetExhausted)
        let executor = try #require(bt.executor)
        #expect(executor.statistics.viewsResumed == 0)
        // The same code at CPL3 (a new view: new generations), then at CPL0 again.
        for (cpl, resumed) in [(UInt8(3), UInt64(0)), (0, 1)] {
            bt.cpu.rip = BTHarness.codeAddress
            bt.cpu.cpl = cpl
            #expect(bt.run(budget: 20_000) == .budgetExhausted)
            #expect(bt.cpu.gpr[0] == 500_500)
            #expect(executor.statistics.viewsResumed == resumed)
        }
        // Another address space keeps what holds for global pages, the saved views with it
        // (paging is off here, so nothing was logged as global: their entries are dropped, but
        // CPL3's generations are taken up again).
        bt.cpu.cr3 = 0x5000
        bt.cpu.rip = BTHarness.codeAddress
        bt.cpu.cpl = 3
        #expect(bt.run(budget: 20_000) == .budgetExhausted)
        #expect(bt.cpu.gpr[0] == 500_500)
        #expect(executor.statistics.viewsResumed == 2)
        #expect(executor.statistics.globalEntriesKept == 1)
        // A change of paging (CR4 here) forgets the saved views: CPL0 again starts afresh.
        bt.cpu.cr4 |= X86.cr4PAE
        bt.cpu.rip = BTHarness.codeAddress
        bt.cpu.cpl = 0
        #expect(bt.run(budget: 20_000) == .budgetExhausted)
        #expect(bt.cpu.gpr[0] == 500_500)
        #expect(executor.statistics.viewsResumed == 2)
        #expect(executor.statistics.globalEntriesKept == 1)
        // `--stats` shows both.
        let more = executor.translationStatistics.more
        #expect(more.contains { $0.name == "CPL or mode changes that kept their tables" && $0.value == 2 })
        #expect(more.contains { $0.name == "CR3 writes that kept the global pages' entries" && $0.value == 1 })
    }

    @Test("a CR3 write keeps the jump cache entries of global pages and drops the others")
    func globalPagesKept() throws {
        let bt = try BTHarness(translated: true)
        try bt.enablePaging()
        bt.cpu.cr4 |= X86SystemBits.cr4PGE
        // 0x1000: global; 0x5000: not. Each runs `inc rax ×3; hlt`; 0x6000 reloads CR3.
        try bt.mapPage(0x1000, global: true)
        let body: [UInt8] = Array(repeating: [0x48, 0xff, 0xc0], count: 3).flatMap { $0 } + [0xf4]
        try bt.load(body, at: 0x1000)
        try bt.load(body, at: 0x5000)
        try bt.load([0x0f, 0x22, 0xd8, 0xf4], at: 0x6000)  // mov cr3, rax; hlt
        bt.cpu.gpr[4] = 0x7800
        for rip in [UInt64(0x1000), 0x5000] {
            bt.cpu.rip = rip
            bt.cpu.halted = false
            #expect(bt.run(budget: 100) == .halted)
        }
        let executor = try #require(bt.executor)
        #expect(executor.jumpCacheHolds(0x1000) && executor.jumpCacheHolds(0x5000))
        bt.cpu.gpr[0] = BTHarness.pml4
        bt.cpu.rip = 0x6000
        bt.cpu.halted = false
        #expect(bt.run(budget: 100) == .halted)
        #expect(executor.statistics.globalEntriesKept == 1)
        #expect(executor.jumpCacheHolds(0x1000), "a global page's entry outlives the CR3 write")
        #expect(!executor.jumpCacheHolds(0x5000), "another page's entry does not")
        // And both still run, the same.
        for rip in [UInt64(0x1000), 0x5000] {
            bt.cpu.rip = rip
            bt.cpu.gpr[0] = 0
            bt.cpu.halted = false
            #expect(bt.run(budget: 100) == .halted)
            #expect(bt.cpu.gpr[0] == 3)
        }
    }

    @Test("translation ahead is bounded: a page of zeros (ADD [RAX], AL) is not translated whole for one block")
    func translationAheadBounded() throws {
        // The bt fuzz target's timeout: code followed by zeros made each batch translate 24
        // blocks of 64 read-modify-write instructions that never ran.
        let bt = try BTHarness(translated: true)
        try bt.load([UInt8](repeating: 0, count: 4096))
        bt.cpu.gpr[0] = 0x6000
        _ = bt.run(budget: 10)
        let stats = try #require(bt.executor).statistics
        #expect(stats.instructionsTranslated >= 64, "the block asked for was translated")
        #expect(stats.instructionsTranslated <= UInt64(2 * BlockTranslator.maximumInstructions + BTExecutor.batchInstructions))
    }

    @Test("a store into a translated block drops it: the new code runs")
    func selfModifyingCode() throws {
        // 0x1000: mov eax, 1; call 0x1100 (patches 0x2000); jmp 0x2000. 0x2000: mov ebx, 7; hlt.
        // First pass runs 0x2000 as written (translated); the second pass runs it after the
        // store rewrote the immediate to 9.
        let bt = try BTHarness(translated: true)
        let target: [UInt8] = [0xbb, 0x07, 0x00, 0x00, 0x00, 0xf4]  // mov ebx, 7; hlt
        try bt.load(target, at: 0x2000)
        // Run it once so it is translated.
        bt.cpu.rip = 0x2000
        #expect(bt.run() == .halted)
        #expect(bt.cpu.gpr[3] == 7)
        let translatedBefore = try #require(bt.executor).statistics.blocksTranslated
        // Now code that patches the immediate through a store (mov byte [0x2001], 9) and jumps.
        let patcher: [UInt8] = [
            0xc6, 0x04, 0x25, 0x01, 0x20, 0x00, 0x00, 0x09,  // mov byte [0x2001], 9
            0xe9, 0xf3, 0x0f, 0x00, 0x00,                    // jmp 0x2000
        ]
        try bt.bus.memory.write(patcher, at: GuestPhysicalAddress(0x1000))
        bt.cpu.rip = 0x1000
        bt.cpu.halted = false
        #expect(bt.run() == .halted)
        #expect(bt.cpu.gpr[3] == 9)
        let stats = try #require(bt.executor).statistics
        #expect(stats.blocksInvalidated >= 1)
        #expect(stats.blocksTranslated > translatedBefore)
    }

    /// At 0x1ff8: L: inc rcx; mov rax, imm64 (its last five bytes on the next page, the top one
    /// `top` at 0x2004); dec rdx; jnz L; hlt. `head` goes at 0x1ff8, `tail` at the start of
    /// whatever physical page linear 0x2000 maps to.
    static func crossingLoop(top: UInt8) -> (head: [UInt8], tail: [UInt8]) {
        let head: [UInt8] = [0x48, 0xff, 0xc1, 0x48, 0xb8, 0x88, 0x77, 0x66]
        let tail: [UInt8] = [0x55, 0x44, 0x33, 0x22, top,  // the immediate's last bytes
                             0x48, 0xff, 0xca,             // dec rdx
                             0x75, 0xee,                   // jnz 0x1ff8
                             0xf4]                         // hlt
        return (head, tail)
    }

    static func crossingValue(top: UInt8) -> UInt64 { UInt64(top) << 56 | 0x22_3344_5566_7788 }

    @Test("an instruction that crosses into the next page ends a translated block: the loop around it never leaves translated code")
    func crossingInstructionTranslated() throws {
        let interp = try BTHarness(translated: false)
        let bt = try BTHarness(translated: true)
        let (head, tail) = Self.crossingLoop(top: 0x11)
        for h in [interp, bt] {
            try h.load(head, at: 0x1ff8)
            try h.load(tail, at: 0x2000)
            h.cpu.rip = 0x1ff8
            h.cpu.gpr[2] = 1000
            #expect(h.run() == .halted)
        }
        #expect(bt.cpu.gpr == interp.cpu.gpr)
        #expect(bt.cpu.rflags == interp.cpu.rflags)
        #expect(bt.cpu.gpr[0] == Self.crossingValue(top: 0x11))
        #expect(bt.cpu.gpr[1] == 1000)
        // Every instruction but the HLT ran translated: the crossing MOV, and the DEC and JNZ
        // after it on the next page, without the interpreter.
        let stats = try #require(bt.executor).statistics
        #expect(stats.instructionsRun == 4 * 1000)
        #expect(stats.crossingBlocks == 1)
        #expect(bt.machine.instructionsRetired == interp.machine.instructionsRetired)
    }

    @Test("a block ending in a crossing instruction is dropped by a store to its bytes on the next page")
    func crossingInstructionRewritten() throws {
        let bt = try BTHarness(translated: true)
        let (head, tail) = Self.crossingLoop(top: 0x11)
        try bt.load(head, at: 0x1ff8)
        try bt.load(tail, at: 0x2000)
        bt.cpu.rip = 0x1ff8
        bt.cpu.gpr[2] = 10
        #expect(bt.run() == .halted)
        #expect(bt.cpu.gpr[0] == Self.crossingValue(top: 0x11))
        // mov byte [0x2004], 0x99; hlt — the store goes through translated code too.
        try bt.load([0xc6, 0x04, 0x25, 0x04, 0x20, 0x00, 0x00, 0x99, 0xf4], at: 0x3000)
        bt.cpu.rip = 0x3000
        bt.cpu.halted = false
        #expect(bt.run() == .halted)
        let invalidated = try #require(bt.executor).statistics.blocksInvalidated
        bt.cpu.rip = 0x1ff8
        bt.cpu.gpr[2] = 10
        bt.cpu.halted = false
        #expect(bt.run() == .halted)
        #expect(bt.cpu.gpr[0] == Self.crossingValue(top: 0x99))
        #expect(invalidated >= 1)
    }

    @Test("a block ending in a crossing instruction follows the next page's mapping: remapped by the guest (PTE store, INVLPG), it is made again")
    func crossingInstructionRemapped() throws {
        let interp = try BTHarness(translated: false)
        let bt = try BTHarness(translated: true)
        // Linear 0x2000 maps to physical 0x2000 (top byte 0x11), then to 0x9000 (top byte 0x99).
        // 0x3000: mov rax, PTE of 0x2000; mov rbx, 0x9003; mov [rax], rbx; invlpg [0x2000]; hlt.
        let pte = BTHarness.pageTableEntries + 2 * 8
        let remap: [UInt8] = [0x48, 0xb8] + btBytes(pte, 8) + [0x48, 0xbb] + btBytes(0x9003, 8)
            + [0x48, 0x89, 0x18, 0x0f, 0x01, 0x3c, 0x25, 0x00, 0x20, 0x00, 0x00, 0xf4]
        for h in [interp, bt] {
            try h.enablePaging()
            let (head, tail) = Self.crossingLoop(top: 0x11)
            try h.load(head, at: 0x1ff8)
            try h.load(tail, at: 0x2000)
            try h.load(Self.crossingLoop(top: 0x99).tail, at: 0x9000)
            try h.load(remap, at: 0x3000)
            h.cpu.rip = 0x1ff8
            h.cpu.gpr[2] = 10
            #expect(h.run() == .halted)
            #expect(h.cpu.gpr[0] == Self.crossingValue(top: 0x11))
            for rip: UInt64 in [0x3000, 0x1ff8] {
                h.cpu.rip = rip
                h.cpu.gpr[2] = 10
                h.cpu.halted = false
                #expect(h.run() == .halted)
            }
            #expect(h.cpu.gpr[0] == Self.crossingValue(top: 0x99))
        }
        #expect(bt.cpu.gpr == interp.cpu.gpr)
        // Made once for each mapping.
        #expect(try #require(bt.executor).statistics.crossingBlocks == 2)
        #expect(bt.machine.instructionsRetired == interp.machine.instructionsRetired)
    }

    @Test("a spent budget stops translated code at the next link back, not at a forward link")
    func budgetCheckedOnLinksBack() throws {
        let bt = try BTHarness(translated: true)
        // 100 blocks `add rax, 1; jns next`, then `add rax, 1; jns start`: one loop of 202
        // instructions whose only link back is the last.
        var code: [UInt8] = []
        for _ in 0..<100 { code += [0x48, 0x83, 0xc0, 0x01, 0x79, 0x00] }
        code += [0x48, 0x83, 0xc0, 0x01]
        let back = -(code.count + 6)
        code += [0x0f, 0x89] + withUnsafeBytes(of: Int32(back).littleEndian) { Array($0) }
        try bt.load(code)
        // Translates and links every block; stops at the link back once the budget is spent.
        _ = bt.run(budget: 3000)
        #expect(bt.cpu.rip == BTHarness.codeAddress)
        let before = bt.machine.instructionsRetired
        // The budget is spent after 50, but the forward links do not look: the loop runs to
        // its link back.
        _ = bt.run(budget: 50)
        #expect(bt.machine.instructionsRetired - before == 202)
        #expect(bt.cpu.rip == BTHarness.codeAddress)
        #expect(bt.cpu.gpr[0] == (bt.machine.instructionsRetired / 2))
    }

    @Test("a code cache too small for the working set starts over and stays correct")
    func cacheResets() throws {
        let interp = try BTHarness(translated: false)
        let bt = try BTHarness(translated: true, cacheBytes: 4096)
        // 64 little blocks, each `add rax, imm; jns next`, run 20 times round (a conditional
        // branch ends a block; a JMP within the page would be followed into one block).
        var code: [UInt8] = [0x48, 0xc7, 0xc1, 0x14, 0x00, 0x00, 0x00]  // mov rcx, 20
        let loopStart = code.count
        for i in 0..<64 {
            code += [0x48, 0x05, UInt8(i), 0x01, 0x00, 0x00]  // add rax, 0x100+i
            code += [0x79, 0x00]                              // jns next: either way on (new block)
        }
        code += [0x48, 0xff, 0xc9]                            // dec rcx
        let back = loopStart - (code.count + 6)
        code += [0x0f, 0x85] + withUnsafeBytes(of: Int32(back).littleEndian) { Array($0) }  // jnz loopStart
        code += [0xf4]
        for h in [interp, bt] {
            try h.load(code)
            #expect(h.run() == .halted)
        }
        #expect(bt.cpu.gpr == interp.cpu.gpr)
        #expect(bt.cpu.rflags == interp.cpu.rflags)
        let stats = try #require(bt.executor).statistics
        #expect(stats.cacheResets > 0)
        #expect(stats.codeBytes <= 4096)
    }

    /// mov ecx, 5000; xor eax, eax; call f; call g; add rax, 1000 (skipped: g returns past it);
    /// add rax, 7; push 42; call h; hlt. f (0x1040) recurses until ECX is 0, adding ECX on the
    /// way back; g (0x1060) moves its return address 6 bytes on; h (0x1080) reads the pushed 42
    /// and returns with `ret 8`.
    static let calls: [UInt8] = {
        var code: [UInt8] = [
            0xb9, 0x88, 0x13, 0x00, 0x00,                // mov ecx, 5000
            0x31, 0xc0,                                  // xor eax, eax
            0xe8, 0x34, 0x00, 0x00, 0x00,                // call f
            0xe8, 0x4f, 0x00, 0x00, 0x00,                // call g
            0x48, 0x05, 0xe8, 0x03, 0x00, 0x00,          // add rax, 1000
            0x48, 0x83, 0xc0, 0x07,                      // add rax, 7
            0x6a, 0x2a,                                  // push 42
            0xe8, 0x5e, 0x00, 0x00, 0x00,                // call h
            0xf4,                                        // hlt
        ]
        code += [UInt8](repeating: 0xcc, count: 0x40 - code.count)
        code += [0xff, 0xc9, 0x74, 0x0a, 0x51, 0xe8, 0xf6, 0xff, 0xff, 0xff,  // f: dec ecx; jz done; push rcx; call f
                 0x59, 0x48, 0x01, 0xc8, 0xc3]                              // pop rcx; add rax, rcx; done: ret
        code += [UInt8](repeating: 0xcc, count: 0x60 - code.count)
        code += [0x5a, 0x48, 0x83, 0xc2, 0x06, 0x52, 0xc3]                  // g: pop rdx; add rdx, 6; push rdx; ret
        code += [UInt8](repeating: 0xcc, count: 0x80 - code.count)
        code += [0x48, 0x8b, 0x5c, 0x24, 0x08, 0xc2, 0x08, 0x00]            // h: mov rbx, [rsp + 8]; ret 8
        return code
    }()

    @Test("calls and returns through the host stack: deeper than an entry, to changed return addresses, RET imm16")
    func callsAndReturns() throws {
        let interp = try BTHarness(translated: false)
        let bt = try BTHarness(translated: true)
        for h in [interp, bt] {
            try h.load(Self.calls)
            #expect(h.run() == .halted)
        }
        #expect(bt.cpu.gpr == interp.cpu.gpr)
        #expect(bt.cpu.rflags == interp.cpu.rflags)
        #expect(bt.cpu.gpr[0] == 4999 * 5000 / 2 + 7, "the recursion's sum, g's skip, the last ADD")
        #expect(bt.cpu.gpr[3] == 42 && bt.cpu.gpr[4] == 0x8_0000)
        let stats = try #require(bt.executor).statistics
        #expect(stats.entries > 1, "5000 calls and returns take more than one entry's budget")
        #expect(stats.instructionsRun == UInt64(interp.machine.instructionsRetired) - 1, "all but HLT ran translated")
    }

    @Test("a code cache that starts over while calls are outstanding: their returns still come back right")
    func returnsAcrossCacheReset() throws {
        let interp = try BTHarness(translated: false)
        let bt = try BTHarness(translated: true, cacheBytes: 4096)
        // mov ecx, 3; L: call f0; dec ecx; jnz L; hlt. f_i (0x1100 + 16 i): call f_i+1; add rax, i;
        // ret; the last: add rax, 1000; ret. Each call translates the next function's blocks,
        // which empties the small cache with every caller's return still to come.
        let depth = 48
        var code: [UInt8] = [0xb9, 0x03, 0x00, 0x00, 0x00]                  // mov ecx, 3
        code += [0xe8] + btBytes(UInt64(UInt32(bitPattern: Int32(0x100 - 10))), 4)  // L (0x1005): call f0
        code += [0xff, 0xc9, 0x75, 0xf7, 0xf4]                               // dec ecx; jnz L; hlt
        code += [UInt8](repeating: 0xcc, count: 0x100 - code.count)
        for i in 0..<depth {
            if i < depth - 1 {
                code += [0xe8] + btBytes(11, 4) + [0x48, 0x83, 0xc0, UInt8(i), 0xc3]  // call f_i+1; add rax, i; ret
            } else {
                code += [0x48, 0x05, 0xe8, 0x03, 0x00, 0x00, 0xc3]                 // add rax, 1000; ret
            }
            code += [UInt8](repeating: 0xcc, count: 0x100 + 16 * (i + 1) - code.count)
        }
        for h in [interp, bt] {
            try h.load(code)
            #expect(h.run() == .halted)
        }
        #expect(bt.cpu.gpr == interp.cpu.gpr)
        #expect(bt.cpu.gpr[0] == 3 * UInt64(1000 + (depth - 2) * (depth - 1) / 2))
        #expect(try #require(bt.executor).statistics.cacheResets > 0)
    }
}

@Suite("bt: the host TLB")
struct BTHostTLBTests {
    @Test("a copy loop's loads and stores hit the host TLB: one callout per page, not per access",
          .enabled(if: BTFastPaths.hostHasBMI2, "the inline TLB probe needs BMI2 on the host"))
    func copyLoopHitsTheTLB() throws {
        // rsi = 0x10_0000, rdi = 0x20_0000, rcx = 4096 qwords (8 pages each side):
        // loop { rax = [rsi]; [rdi] = rax; rsi += 8; rdi += 8; rcx -= 1 } until 0; hlt.
        let code: [UInt8] = [
            0x48, 0xc7, 0xc6, 0x00, 0x00, 0x10, 0x00,  // mov rsi, 0x100000
            0x48, 0xc7, 0xc7, 0x00, 0x00, 0x20, 0x00,  // mov rdi, 0x200000
            0x48, 0xc7, 0xc1, 0x00, 0x10, 0x00, 0x00,  // mov rcx, 4096
            0x48, 0x8b, 0x06,                          // L: mov rax, [rsi]
            0x48, 0x89, 0x07,                          // mov [rdi], rax
            0x48, 0x83, 0xc6, 0x08,                    // add rsi, 8
            0x48, 0x83, 0xc7, 0x08,                    // add rdi, 8
            0x48, 0xff, 0xc9,                          // dec rcx
            0x75, 0xeb,                                // jnz L
            0xf4,
        ]
        let bt = try BTHarness(translated: true)
        try bt.load(code)
        #expect(bt.run() == .halted)
        let stats = try #require(bt.executor).statistics
        #expect(stats.instructionsRun >= 6 * 4096)
        // 8 source pages and 8 destination pages: a miss (callout) on each first touch.
        #expect(stats.loadCallouts <= 16, "loads through callouts: \(stats.loadCallouts)")
        #expect(stats.storeCallouts <= 16, "stores through callouts: \(stats.storeCallouts)")
    }

    /// Eight pages, each loaded from and then stored to: mov rax, [rdi]; mov [rdi + 8], rax;
    /// add rdi, 4096, eight times. Pages 0x10-0x13 are mapped dirty, 0x14-0x17 clean.
    static let loadThenStore: [UInt8] = [
        0x48, 0xc7, 0xc7, 0x00, 0x00, 0x01, 0x00,  // mov rdi, 0x10000
        0xb9, 0x08, 0x00, 0x00, 0x00,              // mov ecx, 8
        0x48, 0x8b, 0x07,                          // L: mov rax, [rdi]
        0x48, 0x89, 0x47, 0x08,                    // mov [rdi + 8], rax
        0x48, 0x81, 0xc7, 0x00, 0x10, 0x00, 0x00,  // add rdi, 4096
        0xff, 0xc9,                                // dec ecx
        0x75, 0xee,                                // jnz L
        0xf4,
    ]

    @Test("a load's miss enters a dirty writable page for stores too; a clean page's first store still sets D",
          .enabled(if: BTFastPaths.hostHasBMI2, "the inline TLB probe needs BMI2 on the host"))
    func loadFillsWritableDirtyPagesForStores() throws {
        let interp = try BTHarness(translated: false)
        let bt = try BTHarness(translated: true)
        for h in [interp, bt] {
            try h.enablePaging()
            for page in 0..<UInt64(8) { try h.mapPage(0x1_0000 + page << 12, dirty: page < 4) }
            for page in 0..<UInt64(8) { try h.bus.memory.write(btBytes(0x100 + page, 8), at: GuestPhysicalAddress(0x1_0000 + page << 12)) }
            try h.load(Self.loadThenStore)
            #expect(h.run() == .halted)
        }
        #expect(bt.cpu.gpr == interp.cpu.gpr)
        for page in 0..<UInt64(8) {
            let address = GuestPhysicalAddress(0x1_0000 + page << 12)
            #expect(try bt.bus.memory.read(at: address, count: 16) == interp.bus.memory.read(at: address, count: 16))
            // The page table entries: D set by the clean pages' stores, as on interp.
            let entry = GuestPhysicalAddress(BTHarness.pageTableEntries + (0x10 + page) * 8)
            let pte = try bt.bus.memory.read(at: entry, count: 8)
            #expect(pte == (try interp.bus.memory.read(at: entry, count: 8)), "page \(page)'s entry")
            #expect(pte[0] & 0x40 != 0, "page \(page) is dirty after the store")
        }
        let stats = try #require(bt.executor).statistics
        // Each page's load misses once. Only the four clean pages' stores go through the
        // callout (which sets D); the dirty pages' stores hit the entry the load made.
        #expect(stats.loadCallouts == 8, "loads through callouts: \(stats.loadCallouts)")
        #expect(stats.storeCallouts == 4, "stores through callouts: \(stats.storeCallouts)")
    }
}

@Suite("bt: the jump cache's two ways")
struct BTJumpCacheTests {
    /// A RIP on another page whose jump cache slot is `rip`'s.
    static func slotSharer(of rip: UInt64, from start: UInt64) -> UInt64? {
        var candidate = start
        while candidate < 0x7_0000 {
            if candidate >> 12 != rip >> 12 && BTContext.jumpSlot(candidate) == BTContext.jumpSlot(rip) { return candidate }
            candidate += 1
        }
        return nil
    }

    @Test("two hot RIPs sharing a slot both stay: indirect jumps between them find their blocks in translated code",
          .enabled(if: BTFastPaths.hostHasBMI2, "translated code looks up the jump cache inline with BMI2"))
    func slotSharersBothStay() throws {
        let a: UInt64 = 0x1000
        let b = try #require(Self.slotSharer(of: a, from: 0x2000))
        let bt = try BTHarness(translated: true)
        let interp = try BTHarness(translated: false)
        for h in [bt, interp] {
            // a: dec ecx; jz out; jmp rbx (to b) — b: add rdx, 1; jmp rax (to a) — out: hlt.
            try h.load([0xff, 0xc9, 0x74, 0x02, 0xff, 0xe3, 0xf4], at: a)
            try h.load([0x48, 0x83, 0xc2, 0x01, 0xff, 0xe0], at: b)
            h.cpu.gpr[0] = a; h.cpu.gpr[3] = b; h.cpu.gpr[1] = 2000; h.cpu.gpr[2] = 0
            h.cpu.rip = a
            #expect(h.run() == .halted)
        }
        #expect(bt.cpu.gpr == interp.cpu.gpr)
        #expect(bt.cpu.gpr[2] == 1999)
        let executor = try #require(bt.executor)
        #expect(executor.jumpCacheHolds(a) && executor.jumpCacheHolds(b))
        // Each found its block once; with one way per slot, each jump evicted the other's.
        #expect(executor.statistics.chainLookups <= 4, "lookups from translated code: \(executor.statistics.chainLookups)")
    }

    @Test("a CR3 write drops a non-global entry that moved to the victim way, and keeps the global one")
    func victimWayDroppedAtCR3Write() throws {
        let bt = try BTHarness(translated: true)
        try bt.enablePaging()
        bt.cpu.cr4 |= X86SystemBits.cr4PGE
        // 0x5000 (not global) runs first; then a global page's RIP sharing its slot pushes it
        // to the victim way.
        let sharer = try #require(Self.slotSharer(of: 0x5000, from: 0x8000))
        try bt.mapPage(sharer & ~0xfff, global: true)
        let body: [UInt8] = [0x48, 0xff, 0xc0, 0xf4]  // inc rax; hlt
        try bt.load(body, at: 0x5000)
        try bt.load(body, at: sharer)
        try bt.load([0x0f, 0x22, 0xd8, 0xf4], at: 0x6000)  // mov cr3, rax; hlt
        bt.cpu.gpr[4] = 0x7800
        for rip in [UInt64(0x5000), sharer] {
            bt.cpu.rip = rip
            bt.cpu.halted = false
            #expect(bt.run(budget: 100) == .halted)
        }
        let executor = try #require(bt.executor)
        #expect(executor.jumpCacheHolds(0x5000) && executor.jumpCacheHolds(sharer), "both ways hold an entry")
        bt.cpu.gpr[0] = BTHarness.pml4
        bt.cpu.rip = 0x6000
        bt.cpu.halted = false
        #expect(bt.run(budget: 100) == .halted)
        #expect(executor.statistics.globalEntriesKept == 1)
        #expect(!executor.jumpCacheHolds(0x5000), "the victim way's non-global entry is dropped")
        // The global one's slot was logged by the other's fill and emptied with it: it is
        // found again on the next run, the same.
        bt.cpu.rip = sharer
        bt.cpu.gpr[0] = 0
        bt.cpu.halted = false
        #expect(bt.run(budget: 100) == .halted)
        #expect(bt.cpu.gpr[0] == 1)
    }
}
