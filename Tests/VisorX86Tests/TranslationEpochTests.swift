// The translation epoch moves when CR0, CR3, CR4, EFER or the CPL changes, and not when one is
// written with the value it has: translated code's jump cache (bt) is emptied on each move, and
// Linux rewrites the CPL on every interrupt and IRET at CPL0.

import Testing
@testable import VisorX86

@Suite("translation epoch")
struct TranslationEpochTests {
    @Test("a write of the same CPL or control register leaves the epoch; a change moves it")
    func epochMovesOnChangeOnly() {
        let cpu = X86CPU()
        let start = cpu.translationEpoch
        cpu.cpl = 0
        cpu.cr3 = 0
        cpu.cr4 = 0
        cpu.efer = 0
        let cr0 = cpu.cr0
        cpu.cr0 = cr0
        #expect(cpu.translationEpoch == start)
        cpu.cpl = 3
        #expect(cpu.translationEpoch == start + 1)
        cpu.cr3 = 0x1000
        #expect(cpu.translationEpoch == start + 2)
        cpu.cr4 = 0x20
        #expect(cpu.translationEpoch == start + 3)
        cpu.cr0 |= 1
        #expect(cpu.translationEpoch == start + 4)
        cpu.efer = 0x100
        #expect(cpu.translationEpoch == start + 5)
        cpu.cpl = 3
        #expect(cpu.translationEpoch == start + 5)
    }
}
