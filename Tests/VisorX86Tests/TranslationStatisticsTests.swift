// What a translating block executor reports for `--stats` (`X86TranslationStatistics`): the
// machine adds the instructions it retired, vCPUs' counts add up, and the report says how much
// ran translated.

import Testing
import VisorCore
import VisorX86

/// An executor that translates nothing and reports fixed counts.
private final class CountingExecutor: X86TranslationStatisticsSource {
    var counts = X86TranslationStatistics()
    func executeBlock(on machine: X86Machine) -> Int { 0 }
    func codeInvalidated(physicalPage: UInt64?) {}
    var translationStatistics: X86TranslationStatistics { counts }
}

/// An executor that reports nothing.
private final class SilentExecutor: X86BlockExecutor {
    func executeBlock(on machine: X86Machine) -> Int { 0 }
    func codeInvalidated(physicalPage: UInt64?) {}
}

@Suite("Translation statistics")
struct TranslationStatisticsTests {
    static func counts(blocks: UInt64, instructions: UInt64, nanoseconds: UInt64, run: UInt64, retired: UInt64)
        -> X86TranslationStatistics {
        var s = X86TranslationStatistics()
        s.blocksTranslated = blocks
        s.instructionsTranslated = instructions
        s.translationNanoseconds = nanoseconds
        s.codeBytes = 128
        s.cacheResets = 1
        s.blocksInvalidated = 2
        s.entries = blocks * 3
        s.instructionsRun = run
        s.instructionsRetired = retired
        return s
    }

    @Test("a machine reports its executor's counts with the instructions it retired; none without a counting executor")
    func machineAddsRetired() throws {
        let h = Harness()
        #expect(h.machine.translationStatistics == nil, "interp: no executor")
        h.machine.blockExecutor = SilentExecutor()
        #expect(h.machine.translationStatistics == nil, "an executor that does not count")

        let executor = CountingExecutor()
        executor.counts = Self.counts(blocks: 2, instructions: 7, nanoseconds: 700, run: 0, retired: 0)
        h.machine.blockExecutor = executor
        try h.bus.memory.write([UInt8](repeating: 0x90, count: 5), at: GuestPhysicalAddress(Harness.startRIP))
        #expect(h.machine.run(budget: 5) == .budgetExhausted)
        let s = try #require(h.machine.translationStatistics)
        #expect(s.instructionsRetired == 5 && h.machine.instructionsRetired == 5)
        #expect(s.blocksTranslated == 2 && s.instructionsTranslated == 7 && s.translationNanoseconds == 700)
        #expect(s.instructionsInterpreted == 5, "the executor ran none of them")
    }

    @Test("vCPUs' counts add up; the executor's own counts merge by name, in order")
    func merge() {
        var a = Self.counts(blocks: 2, instructions: 10, nanoseconds: 500, run: 20, retired: 30)
        a.more = [.init(name: "chained", value: 1)]
        var b = Self.counts(blocks: 1, instructions: 5, nanoseconds: 250, run: 5, retired: 6)
        b.more = [.init(name: "jumpcache", value: 4), .init(name: "chained", value: 2)]
        a.merge(b)
        #expect(a.blocksTranslated == 3 && a.instructionsTranslated == 15 && a.translationNanoseconds == 750)
        #expect(a.codeBytes == 256 && a.cacheResets == 2 && a.blocksInvalidated == 4 && a.entries == 9)
        #expect(a.instructionsRun == 25 && a.instructionsRetired == 36 && a.instructionsInterpreted == 11)
        #expect(a.more == [.init(name: "chained", value: 3), .init(name: "jumpcache", value: 4)])
    }

    @Test("the report: what was translated, at what cost, and the share of instructions run translated")
    func report() {
        let s = Self.counts(blocks: 2, instructions: 10, nanoseconds: 500, run: 20, retired: 30)
        #expect(s.report(label: "bt") == """
            bt: translated 2 blocks of 10 guest instructions, 50.0 ns per instruction; code cache 128 bytes, 1 resets, 2 blocks invalidated
            bt: entered translated code 6 times; instructions 30: 20 translated (66.7 %), 10 by the interpreter
            """)
        #expect(X86TranslationStatistics().report(label: "bt").contains("- ns per instruction"), "nothing translated: no ratio")
        var odd = X86TranslationStatistics()
        odd.instructionsRun = 5  // more than retired: never a negative count
        #expect(odd.instructionsInterpreted == 0)
    }
}
