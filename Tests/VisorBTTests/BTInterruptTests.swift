// Interrupts and translated blocks: an event pending across an interrupt shadow (STI, MOV SS)
// is taken, as `injectInterrupt` promises and interp does, right after the one instruction the
// shadow covers — not after the rest of a translated block, and not before that instruction
// when the block of a translated STI stops in front of it.

import Testing
import VisorCore
import VisorX86
@testable import VisorBT

@Suite("bt: interrupts at block boundaries")
struct BTInterruptTests {
    struct Case: Sendable, CustomStringConvertible {
        let description: String
        /// The shadowing instruction.
        let opener: [UInt8]
        let flags: UInt64
        let nmi: Bool
    }

    /// Openers the interpreter runs (STI is translated: see the tests below).
    static let cases: [Case] = [
        Case(description: "interrupt pending across MOV SS", opener: [0x8e, 0xd3], flags: 2 | 0x200, nmi: false),
        Case(description: "NMI pending across MOV SS", opener: [0x8e, 0xd3], flags: 2, nmi: true),
    ]

    /// opener; inc rax ×4; hlt — the event arriving after the opener (RBX = 16, the data selector).
    @Test("an event pending across an interrupt shadow is taken after the shadowed instruction", arguments: cases)
    func pendingAcrossShadow(c: Case) throws {
        var rax: [UInt64] = []
        var rip: [UInt64] = []
        for translated in [false, true] {
            let h = try BTHarness(translated: translated)
            try h.enablePaging()
            try h.load(c.opener + Array(repeating: [0x48, 0xff, 0xc0], count: 4).flatMap { $0 } + [0xf4])
            h.cpu.gpr[4] = 0x7800
            h.cpu.gpr[3] = 16
            h.cpu.rflags = c.flags
            // The opener runs (on the interpreter: it is not translated), then the event arrives.
            #expect(h.run(budget: 1) == .budgetExhausted)
            #expect(h.cpu.interruptShadow, "the opener set the shadow")
            if c.nmi { h.machine.injectNMI() } else { h.machine.injectInterrupt(vector: 20) }
            #expect(h.run(budget: 100) == .halted)
            rax.append(h.cpu.gpr[0])
            rip.append(h.cpu.rip)
        }
        let vector: UInt64 = c.nmi ? 2 : 20
        #expect(rip == [BTHarness.handler + vector + 1, BTHarness.handler + vector + 1], "both in the handler")
        #expect(rax[0] == 1, "interp: one instruction after the opener")
        #expect(rax[1] == rax[0], "bt took the event after \(rax[1]) instructions, interp after \(rax[0])")
    }

    /// sti; mov [rbx], eax; inc rax ×4; hlt, run by interp and by bt, until HLT.
    /// With `mmio`, the MOV's page maps to physical memory outside RAM (MMIO, which translated
    /// code leaves to the interpreter).
    func stiThenStore(translated: Bool, mmio: Bool, event: (X86Machine) -> Void, before: Bool)
        throws -> (rax: UInt64, rip: UInt64, shadowSeen: Bool) {
        let h = try BTHarness(translated: translated)
        try h.enablePaging()
        let rbx: UInt64 = mmio ? 0x3f_f000 : 0x7000
        if mmio { try h.mapPage(rbx, to: 0x1000_0000) }
        try h.load([0xfb, 0x89, 0x03] + Array(repeating: [0x48, 0xff, 0xc0], count: 4).flatMap { $0 } + [0xf4])
        h.cpu.gpr[4] = 0x7800
        h.cpu.gpr[3] = rbx
        h.cpu.rflags = 2
        var shadowSeen = false
        if before {
            event(h.machine)
        } else {
            #expect(h.run(budget: 1) == .budgetExhausted)
            shadowSeen = h.cpu.interruptShadow && h.cpu.rip == BTHarness.codeAddress + 1
            if let executor = h.executor { #expect(executor.statistics.instructionsRun == 1, "the STI ran translated") }
            event(h.machine)
        }
        #expect(h.run(budget: 100) == .halted)
        return (h.cpu.gpr[0], h.cpu.rip, shadowSeen)
    }

    /// The MOV stores to MMIO, so the translated block stops right after the STI, with the
    /// event not yet there.
    @Test("a translated STI whose block stops before the next instruction leaves it in the shadow",
          arguments: [false, true])
    func shadowAfterTranslatedSTI(nmi: Bool) throws {
        for translated in [false, true] {
            let r = try stiThenStore(translated: translated, mmio: true, event: { m in
                if nmi { m.injectNMI() } else { m.injectInterrupt(vector: 20) }
            }, before: false)
            #expect(r.shadowSeen, "the STI alone retired, and its shadow covers the MOV")
            #expect(r.rip == BTHarness.handler + (nmi ? 2 : 20) + 1, "in the handler")
            #expect(r.rax == 0, "the event was taken right after the MOV, before the INCs")
        }
    }

    /// The interrupt waits (IF clear) as the block is entered: the translated STI stops the
    /// block and the interpreter runs it, so the interrupt comes after the MOV in its shadow.
    @Test("an interrupt waiting when a translated STI is reached is taken after the STI's shadow")
    func interruptWaitingAtTranslatedSTI() throws {
        for translated in [false, true] {
            let r = try stiThenStore(translated: translated, mmio: false, event: { $0.injectInterrupt(vector: 20) },
                                     before: true)
            #expect(r.rip == BTHarness.handler + 20 + 1, "in the handler")
            #expect(r.rax == 0, "taken right after the MOV, before the INCs (translated: \(translated))")
        }
    }

    /// With nothing waiting, the translated STI does not end its block: STI, MOV and the INCs
    /// run as one.
    @Test("with no interrupt waiting, a translated STI runs in its block")
    func translatedSTIRunsOn() throws {
        let h = try BTHarness(translated: true)
        try h.enablePaging()
        try h.load([0xfb, 0x89, 0x03] + Array(repeating: [0x48, 0xff, 0xc0], count: 4).flatMap { $0 } + [0xf4])
        h.cpu.gpr[4] = 0x7800
        h.cpu.gpr[3] = 0x7000
        h.cpu.rflags = 2
        #expect(h.run(budget: 100) == .halted)
        #expect(h.cpu.gpr[0] == 4)
        #expect(h.cpu.rip == BTHarness.codeAddress + 3 + 12 + 1, "past the HLT")
        #expect(h.cpu.rflags & 0x200 != 0)
        let stats = try #require(h.executor).statistics
        #expect(stats.instructionsRun == 6, "STI, MOV and four INCs translated")
    }
}
