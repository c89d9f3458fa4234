// The system instructions bt translates instead of leaving to the interpreter: PUSHF and MOV
// from a segment register (sensitive: counted as interp counts them) and CLI (IF cleared in
// the guest's RFLAGS, or a #GP by the interpreter when CPL > IOPL).

import Testing
import VisorCore
import VisorX86
import VisorX86Decode
@testable import VisorBT

@Suite("bt: PUSHF, MOV from Sreg and CLI translated")
struct BTSystemInstructionTests {
    /// add eax, eax; pushfq; pop rbx; mov ecx, ds; mov [0x3000], fs; mov dx, gs; cli;
    /// pushfq; pop rsi; hlt.
    static let code: [UInt8] = [
        0x01, 0xc0,                                      // add eax, eax
        0x9c,                                            // pushfq
        0x5b,                                            // pop rbx
        0x8c, 0xd9,                                      // mov ecx, ds
        0x8c, 0x24, 0x25, 0x00, 0x30, 0x00, 0x00,        // mov [0x3000], fs
        0x66, 0x8c, 0xea,                                // mov dx, gs
        0xfa,                                            // cli
        0x9c,                                            // pushfq
        0x5e,                                            // pop rsi
        0xf4,                                            // hlt
    ]

    func prepare(_ h: BTHarness, cpl: UInt8 = 0) throws {
        try h.load(Self.code)
        h.cpu.segments[3] = .flatData(selector: 0x18)
        h.cpu.segments[4] = .flatData(selector: 0x33)
        h.cpu.segments[5] = .flatData(selector: 0x2b)
        h.cpu.gpr[0] = 0x8000_0001
        h.cpu.gpr[2] = 0xffff_ffff_ffff_ffff
        h.cpu.rflags |= 0x200 | 0x400   // IF, and DF (kept in the pushed image)
        h.cpu.cpl = cpl
    }

    @Test("they run translated and leave what the interpreter leaves, counted the same")
    func matchInterpreter() throws {
        let interp = try BTHarness(translated: false)
        let bt = try BTHarness(translated: true)
        for h in [interp, bt] {
            try prepare(h)
            #expect(h.run() == .halted)
        }
        #expect(bt.cpu.gpr == interp.cpu.gpr)
        #expect(bt.cpu.rflags == interp.cpu.rflags)
        #expect(bt.cpu.rflags & 0x200 == 0, "CLI cleared IF")
        #expect(bt.cpu.gpr[3] & 0x200 != 0, "the first PUSHF saw IF set")
        #expect(bt.cpu.gpr[6] & 0x200 == 0, "the second PUSHF saw it clear")
        #expect(bt.cpu.gpr[1] == 0x18)
        #expect(bt.cpu.gpr[2] == 0xffff_ffff_ffff_002b, "a 16-bit MOV keeps the rest of RDX")
        let stored = try bt.bus.memory.read(at: GuestPhysicalAddress(0x3000), count: 2)
        #expect(stored == [0x33, 0x00])
        #expect(bt.machine.sensitiveInstructions == interp.machine.sensitiveInstructions)
        #expect(bt.machine.sensitiveInstructions.count(.pushf, cpl: 0) == 2)
        #expect(bt.machine.sensitiveInstructions.count(.movFromSegment, cpl: 0) == 3)
        let stats = try #require(bt.executor).statistics
        #expect(stats.instructionsRun == UInt64(9), "all but HLT ran translated")
    }

    @Test("CLI with CPL above IOPL stops the block: the interpreter raises the #GP")
    func cliAboveIOPL() throws {
        let interp = try BTHarness(translated: false)
        let bt = try BTHarness(translated: true)
        for h in [interp, bt] {
            try prepare(h, cpl: 3)
            _ = h.run(budget: 100)
        }
        #expect(bt.cpu.gpr == interp.cpu.gpr)
        #expect(bt.cpu.rip == interp.cpu.rip)
        #expect(bt.cpu.rflags == interp.cpu.rflags)
        #expect(bt.machine.isShutdown == interp.machine.isShutdown)
        let stats = try #require(bt.executor).statistics
        #expect(stats.instructionsRun >= 6, "the instructions before CLI ran translated")
    }
}
