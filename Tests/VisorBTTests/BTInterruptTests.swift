// Interrupts and translated blocks: an event pending across an interrupt shadow (STI, MOV SS)
// is taken, as `injectInterrupt` promises and interp does, right after the one instruction the
// shadow covers — not after the rest of a translated block.

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

    static let cases: [Case] = [
        Case(description: "interrupt pending across STI", opener: [0xfb], flags: 2, nmi: false),
        Case(description: "NMI pending across STI", opener: [0xfb], flags: 2, nmi: true),
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
}
