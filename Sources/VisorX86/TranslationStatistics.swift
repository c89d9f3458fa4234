// What a translating block executor (the `bt` engine's) made and ran, for `visor run --stats`.
// The executor keeps its counts and hands them over through `X86TranslationStatisticsSource`;
// the machine adds the instructions its step loop retired in all, so the report can say how
// much of the guest's code ran translated and how much the interpreter still ran. The runtime
// reads them through `X86Machine.translationStatistics` without knowing the executor's module.

/// A translating executor's counts: one vCPU's, or a domain's summed over its vCPUs.
public struct X86TranslationStatistics: Sendable, Equatable {
    /// A count the executor keeps beyond the common ones, shown by name.
    public struct Count: Sendable, Equatable {
        public var name: String
        public var value: UInt64
        public init(name: String, value: UInt64) {
            self.name = name
            self.value = value
        }
    }

    /// Blocks translated, and the guest instructions in them.
    public var blocksTranslated: UInt64 = 0
    public var instructionsTranslated: UInt64 = 0
    /// Host nanoseconds spent translating.
    public var translationNanoseconds: UInt64 = 0
    /// Host bytes of translated code in the code cache(s) now.
    public var codeBytes: UInt64 = 0
    /// Times a code cache was emptied because it was full.
    public var cacheResets: UInt64 = 0
    /// Translated blocks dropped because their guest code was written.
    public var blocksInvalidated: UInt64 = 0
    /// Entries into translated code (each runs one block, or more where the executor goes from
    /// block to block itself), and the guest instructions they retired.
    public var entries: UInt64 = 0
    public var instructionsRun: UInt64 = 0
    /// Guest instructions the step loop retired in all, translated or interpreted (set by
    /// `X86Machine.translationStatistics`, not by the executor).
    public var instructionsRetired: UInt64 = 0
    /// The executor's own further counts, in its order.
    public var more: [Count] = []

    public init() {}

    /// Instructions the interpreter ran: what translated code did not cover.
    public var instructionsInterpreted: UInt64 {
        instructionsRetired > instructionsRun ? instructionsRetired - instructionsRun : 0
    }

    /// Adds another vCPU's counts to these.
    public mutating func merge(_ other: X86TranslationStatistics) {
        blocksTranslated &+= other.blocksTranslated
        instructionsTranslated &+= other.instructionsTranslated
        translationNanoseconds &+= other.translationNanoseconds
        codeBytes &+= other.codeBytes
        cacheResets &+= other.cacheResets
        blocksInvalidated &+= other.blocksInvalidated
        entries &+= other.entries
        instructionsRun &+= other.instructionsRun
        instructionsRetired &+= other.instructionsRetired
        for count in other.more {
            if let i = more.firstIndex(where: { $0.name == count.name }) {
                more[i].value &+= count.value
            } else {
                more.append(count)
            }
        }
    }

    /// The `--stats` lines, headed `label` (the engine's name).
    public func report(label: String) -> String {
        func oneDecimal(_ value: Double) -> String {
            let tenths = Int((value * 10).rounded())
            return "\(tenths / 10).\(tenths % 10)"
        }
        let perInstruction = instructionsTranslated == 0
            ? "-" : oneDecimal(Double(translationNanoseconds) / Double(instructionsTranslated))
        let share = instructionsRetired == 0 ? "-" : oneDecimal(100 * Double(instructionsRun) / Double(instructionsRetired))
        var lines = [
            "\(label): translated \(blocksTranslated) blocks of \(instructionsTranslated) guest instructions, "
                + "\(perInstruction) ns per instruction; code cache \(codeBytes) bytes, \(cacheResets) resets, "
                + "\(blocksInvalidated) blocks invalidated",
            "\(label): entered translated code \(entries) times; instructions \(instructionsRetired): \(instructionsRun) translated "
                + "(\(share) %), \(instructionsInterpreted) by the interpreter",
        ]
        if !more.isEmpty { lines.append("\(label): " + more.map { "\($0.name)=\($0.value)" }.joined(separator: " ")) }
        return lines.joined(separator: "\n")
    }
}

/// A block executor that reports what it translated and ran (`instructionsRetired` is the
/// machine's to fill in).
public protocol X86TranslationStatisticsSource: X86BlockExecutor {
    /// The counts so far. Read on the vCPU's thread, or once that thread has ended.
    var translationStatistics: X86TranslationStatistics { get }
}

extension X86Machine {
    /// Its block executor's counts together with the instructions it retired in all; nil when
    /// it has no executor that counts (the `interp` engine). Driving thread only, or once that
    /// thread has ended.
    public var translationStatistics: X86TranslationStatistics? {
        guard let source = blockExecutor as? any X86TranslationStatisticsSource else { return nil }
        var statistics = source.translationStatistics
        statistics.instructionsRetired = instructionsRetired
        return statistics
    }
}
