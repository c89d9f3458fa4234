// Interrupts and translated blocks: an external interrupt pending across STI is taken, as
// `injectInterrupt` promises and interp does, right after the one instruction STI shadows —
// not after the rest of a translated block.

import Testing
import VisorCore
import VisorX86
@testable import VisorBT

@Suite("bt: interrupts at block boundaries")
struct BTInterruptTests {
    /// sti; inc rax ×4; hlt — with vector 20 pending and IF = 0 on entry.
    @Test("an interrupt pending across STI is taken after the shadowed instruction")
    func pendingAcrossSTI() throws {
        var rax: [UInt64] = []
        for translated in [false, true] {
            let h = try BTHarness(translated: translated)
            try h.enablePaging()
            try h.load([0xfb] + Array(repeating: [0x48, 0xff, 0xc0], count: 4).flatMap { $0 } + [0xf4])
            h.cpu.gpr[4] = 0x7800
            h.cpu.rflags = 2
            h.machine.injectInterrupt(vector: 20)
            #expect(h.run(budget: 100) == .halted)
            #expect(h.cpu.rip == BTHarness.handler + 20 + 1, "translated: \(translated): in the handler")
            rax.append(h.cpu.gpr[0])
        }
        #expect(rax[0] == 1, "interp: one instruction after STI")
        #expect(rax[1] == rax[0], "bt took the interrupt after \(rax[1]) instructions, interp after \(rax[0])")
    }
}
