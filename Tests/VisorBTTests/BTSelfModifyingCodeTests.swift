// Self- and cross-modifying code under bt (issue 13): a loop that rewrites the immediate of its
// own next instruction every iteration, through the same linear address and through another
// linear mapping of the same physical page, gives interp's result each iteration; and code one
// vCPU writes is run as written by another bt vCPU after that one's next serializing
// instruction (CPUID), the two driven in turn from this thread.

import Testing
import VisorCore
import VisorX86
@testable import VisorBT

@Suite("bt: self- and cross-modifying code")
struct BTSelfModifyingCodeTests {
    /// ecx = 10; ebx = 0; loop { store cl over the low immediate byte of the next MOV;
    /// mov eax, 0xffffffff (as patched); ebx += eax; log[ecx] = eax; ecx -= 1 } ; hlt.
    /// `store` is the patching instruction, whose length fixes the layout.
    static func patchingLoop(store: [UInt8]) -> [UInt8] {
        var code: [UInt8] = [0xb9, 0x0a, 0x00, 0x00, 0x00, 0x31, 0xdb]
        let loop = code.count
        code += store
        code += [0xb8, 0xff, 0xff, 0xff, 0xff]                    // mov eax, imm32
        code += [0x01, 0xc3]                                      // add ebx, eax
        code += [0x89, 0x04, 0x8d, 0x00, 0xa0, 0x00, 0x00]        // mov [0xa000 + rcx*4], eax
        code += [0xff, 0xc9]                                      // dec ecx
        code += [0x75, UInt8(truncatingIfNeeded: loop - (code.count + 2))]  // jnz loop
        code += [0xf4]
        return code
    }

    /// Runs the loop on interp and bt and compares registers and the per-iteration log.
    /// `expected(ecx)` is EAX in the iteration with that ECX.
    func check(_ code: [UInt8], aliasPage: UInt64?,
               expected: (UInt64) -> UInt64 = { 0xffff_ff00 | $0 }) throws {
        var results: [(BTHarness, [UInt8])] = []
        for translated in [false, true] {
            let h = try BTHarness(translated: translated)
            if let aliasPage {
                try h.enablePaging()
                try h.mapPage(aliasPage, to: BTHarness.codeAddress)
            }
            try h.load(code)
            #expect(h.run(budget: 10_000) == .halted)
            results.append((h, try h.bus.memory.read(at: GuestPhysicalAddress(0xa000), count: 64)))
        }
        let (interp, interpLog) = results[0], (bt, btLog) = results[1]
        #expect(bt.cpu.gpr == interp.cpu.gpr)
        #expect(bt.cpu.rip == interp.cpu.rip)
        #expect(bt.cpu.rflags == interp.cpu.rflags)
        #expect(btLog == interpLog, "per-iteration values")
        // Each iteration saw its own patch.
        for c in 1...10 {
            let v = btLog[4 * c..<4 * c + 4].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            #expect(v == expected(UInt64(c)), "iteration with ecx = \(c)")
        }
        let expectedSum = (1...10).reduce(UInt64(0)) { ($0 + expected(UInt64($1))) & 0xffff_ffff }
        #expect(bt.cpu.gpr[3] == expectedSum)
        let stats = try #require(bt.executor).statistics
        #expect(stats.instructionsRun > 0)
        #expect(stats.blocksInvalidated >= 9, "the patched block was dropped each iteration")
    }

    @Test("a loop patching its next instruction's immediate (RIP-relative store) runs each version")
    func sameMapping() throws {
        // mov [rip+1], cl: the byte after the store's end is the MOV's first immediate byte.
        try check(Self.patchingLoop(store: [0x88, 0x0d, 0x01, 0x00, 0x00, 0x00]), aliasPage: nil)
    }

    @Test("a loop patching its next instruction by read-modify-write (XOR byte [rip+1], 0x55) runs each version")
    func readModifyWrite() throws {
        // The immediate's low byte goes ff -> aa -> ff ...: iteration i (ecx = 11 - i) sees
        // 0xaa when i is odd.
        try check(Self.patchingLoop(store: [0x80, 0x35, 0x01, 0x00, 0x00, 0x00, 0x55]), aliasPage: nil,
                  expected: { c in 0xffff_ff00 | ((11 - c) % 2 == 1 ? 0xaa : 0xff) })
    }

    @Test("code written through another linear mapping of its physical page is seen")
    func otherMapping() throws {
        // Linear 0x300000 maps the code's physical page; mov [0x300000 + 0x0f], cl writes the
        // immediate (the store is 7 bytes at 0x1007, the MOV's immediate at 0x100f).
        let alias: UInt64 = 0x30_0000
        try check(Self.patchingLoop(store: [0x88, 0x0c, 0x25, 0x0f, 0x00, 0x30, 0x00]), aliasPage: alias)
    }

    @Test("code another vCPU writes runs as written after this vCPU's next CPUID", arguments: [false, true])
    func otherVCPU(writerTranslated: Bool) throws {
        let memory = try GuestMemory(size: 4 << 20)
        let shared = X86SharedState(memory: memory, vcpuCount: 2)
        let reader = try BTHarness(translated: true, memory: memory, shared: shared, vcpuIndex: 0)
        let writer = try BTHarness(translated: writerTranslated, memory: memory, shared: shared, vcpuIndex: 1)
        // 0x2000: mov ebx, 7; mov [0xa000], ebx; hlt. 0x3000: cpuid; jmp 0x2000.
        try memory.write([0xbb, 0x07, 0x00, 0x00, 0x00, 0x89, 0x1c, 0x25, 0x00, 0xa0, 0x00, 0x00, 0xf4],
                         at: GuestPhysicalAddress(0x2000))
        try memory.write([0x0f, 0xa2, 0xe9, 0xf9, 0xef, 0xff, 0xff], at: GuestPhysicalAddress(0x3000))
        // The writer: mov byte [0x2001], 9; hlt.
        try memory.write([0xc6, 0x04, 0x25, 0x01, 0x20, 0x00, 0x00, 0x09, 0xf4], at: GuestPhysicalAddress(0x1000))

        func runReader(from rip: UInt64) -> StepOutcome {
            reader.cpu.rip = rip
            reader.cpu.halted = false
            return reader.run(budget: 1000)
        }
        // The reader translates and runs 0x2000.
        #expect(runReader(from: 0x2000) == .halted)
        #expect(reader.cpu.gpr[3] == 7)
        let ranBefore = try #require(reader.executor).statistics.instructionsRun
        #expect(ranBefore >= 2, "the block at 0x2000 ran translated")
        // The writer rewrites the immediate.
        writer.cpu.rip = 0x1000
        #expect(writer.run(budget: 1000) == .halted)
        #expect(try memory.read(at: GuestPhysicalAddress(0x2001), count: 1) == [9])
        // Through CPUID (serializing) to 0x2000: the new code runs.
        #expect(runReader(from: 0x3000) == .halted)
        #expect(reader.cpu.gpr[3] == 9)
        #expect(try memory.read(at: GuestPhysicalAddress(0xa000), count: 4) == [9, 0, 0, 0])
        let stats = try #require(reader.executor).statistics
        #expect(stats.blocksInvalidated >= 1, "the reader dropped its stale block")
        #expect(stats.instructionsRun >= ranBefore + 2, "the rewritten block ran translated")
    }
}
