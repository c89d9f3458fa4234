// The `bt` executor's counts as the runtime reads them for `--stats` (`X86TranslationStatistics`).

import VisorX86

extension BTExecutor: X86TranslationStatisticsSource {
    public var translationStatistics: X86TranslationStatistics {
        let s = statistics
        var t = X86TranslationStatistics()
        t.blocksTranslated = s.blocksTranslated
        t.instructionsTranslated = s.instructionsTranslated
        t.translationNanoseconds = s.translationNanoseconds
        t.codeBytes = s.codeBytes
        t.cacheResets = s.cacheResets
        t.blocksInvalidated = s.blocksInvalidated
        t.entries = s.entries
        t.instructionsRun = s.instructionsRun
        t.more = [.init(name: "exits linked", value: s.links),
                  .init(name: "loads through callouts", value: s.loadCallouts),
                  .init(name: "stores through callouts", value: s.storeCallouts),
                  .init(name: "jump cache misses found from translated code", value: s.chainLookups),
                  .init(name: "CPL or mode changes that kept their tables", value: s.viewsResumed),
                  .init(name: "CR3 writes that kept the global pages' entries", value: s.globalEntriesKept),
                  .init(name: "changes of mapping that dropped every entry", value: s.mappingsForgotten),
                  .init(name: "SYSCALLs and SYSRETs without leaving translated code", value: s.systemCalls),
                  .init(name: "blocks ending in an instruction that crosses into the next page", value: s.crossingBlocks),
                  .init(name: "retpoline thunks translated as one indirect jump", value: s.retpolineBlocks)]
        return t
    }
}
