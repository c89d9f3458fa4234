// The `bt` engine's section of `--stats`: its vCPUs' translation counts, read through the
// software CPU (`X86Machine.translationStatistics`) so that the runtime need not know VisorBT.

import VisorCore
import VisorX86

extension ExitStatistics {
    /// Sums the translation counts of those of `vcpus` that translate into `translation`
    /// (left nil when none does: kvm, interp). Only once the vCPUs' threads have ended: a
    /// software CPU's state belongs to its thread.
    mutating func collectTranslation(from vcpus: [any VirtualCPU], engine: String) {
        var total: X86TranslationStatistics?
        for case let cpu as InterpVirtualCPU in vcpus {
            guard let counts = cpu.machine.translationStatistics else { continue }
            if total == nil { total = counts } else { total?.merge(counts) }
        }
        translation = total.map { (engine, $0) }
    }
}
