// What `visor run --stats` prints: exits by reason, and where the time went.

import VisorCore
import VisorVirtio
import VisorX86

/// Counts exits by reason and port, and the time spent in the guest and in Visor.
public struct ExitStatistics: Sendable {
    public struct Bucket: Sendable, Equatable {
        public var count: UInt64 = 0
        /// Nanoseconds Visor spent handling these exits (from the exit to the next guest entry).
        public var handlingNanoseconds: UInt64 = 0
    }

    /// Exits by `Exit.reasonIndex`.
    private var buckets = [Bucket](repeating: Bucket(), count: Exit.reasonNames.count)
    /// Exits by `Exit.reasonName`, for the reasons that occurred.
    public var byReason: [String: Bucket] {
        var result: [String: Bucket] = [:]
        for (i, b) in buckets.enumerated() where b.count > 0 { result[Exit.reasonNames[i]] = b }
        return result
    }
    /// Instructions the engine left to Visor's software CPU (`Exit.instructionEmulated`), by name.
    public private(set) var byEmulatedInstruction: [String: UInt64] = [:]
    /// Port accesses by port number, reads and writes together.
    public private(set) var byPort: [UInt16: UInt64] = [:]
    /// Nanoseconds inside the engine's run call (guest time plus the engine's own exit cost).
    public private(set) var guestNanoseconds: UInt64 = 0
    /// Wall-clock nanoseconds from the first entry to the end.
    public var wallNanoseconds: UInt64 = 0
    /// Guest accesses nothing answered: port reads and writes, MMIO reads and writes.
    public var unbacked = UnbackedAccesses()

    public struct UnbackedAccesses: Sendable, Equatable {
        public var portReads: UInt64 = 0, portWrites: UInt64 = 0
        public var mmioReads: UInt64 = 0, mmioWrites: UInt64 = 0
    }

    public init() {}

    /// Interrupts injected into the guest.
    public var injectedInterrupts: UInt64 = 0
    /// Hypercalls by number and events delivered (the domain's, set at the end of the run).
    public var paravirtual: PVStatistics?
    /// What became of the host's console input (set by whoever fed it, at the end of the run).
    public var consoleInput: ConsoleInputStatistics?
    /// The virtio devices' queue counts (the domain's, set at the end of the run).
    public var virtioDevices: [VirtioDeviceStatistics] = []
    /// Robin and Irvine's sensitive instructions the guest executed, by kind and CPL (its vCPUs'
    /// together, set at the end of the run); nil when the engine cannot see them (`kvm`: the
    /// hardware runs them without an exit).
    public var sensitiveInstructions: SensitiveInstructionCounts?
    /// What the engine's translator made and ran, summed over the vCPUs, under the engine's
    /// name (`bt`; nil on engines that translate nothing). Set at the end of the run.
    public var translation: (engine: String, counts: X86TranslationStatistics)?

    public var totalExits: UInt64 { buckets.reduce(0) { $0 &+ $1.count } }

    /// Adds another vCPU's counts to these (wall time and unbacked counts are the domain's and
    /// are set by the caller).
    mutating func merge(_ other: ExitStatistics) {
        for i in buckets.indices {
            buckets[i].count &+= other.buckets[i].count
            buckets[i].handlingNanoseconds &+= other.buckets[i].handlingNanoseconds
        }
        for (port, count) in other.byPort { byPort[port, default: 0] &+= count }
        for (name, count) in other.byEmulatedInstruction { byEmulatedInstruction[name, default: 0] &+= count }
        guestNanoseconds &+= other.guestNanoseconds
        injectedInterrupts &+= other.injectedInterrupts
    }

    mutating func recordRun(nanoseconds: UInt64) { guestNanoseconds &+= nanoseconds }

    mutating func record(_ exit: Exit, handlingNanoseconds: UInt64) {
        let i = exit.reasonIndex
        buckets[i].count &+= 1
        buckets[i].handlingNanoseconds &+= handlingNanoseconds
        switch exit {
        case .portRead(let port, _), .portWrite(let port, _, _): byPort[port, default: 0] &+= 1
        case .instructionEmulated(let name): byEmulatedInstruction[name, default: 0] &+= 1
        default: break
        }
    }

    /// The report, a table a person can read.
    public var report: String {
        func ms(_ ns: UInt64) -> String {
            let tenths = (ns + 50_000) / 100_000
            return "\(tenths / 10).\(tenths % 10) ms"
        }
        var lines = ["exits: \(totalExits) in \(ms(wallNanoseconds)) (in guest \(ms(guestNanoseconds)))"]
        lines.append(pad("reason", 16) + pad("count", 12, right: true) + pad("handling", 14, right: true) + pad("avg", 12, right: true))
        for (reason, b) in byReason.sorted(by: { $0.value.count > $1.value.count }) {
            let average = b.count == 0 ? 0 : b.handlingNanoseconds / b.count
            lines.append(pad(reason, 16) + pad("\(b.count)", 12, right: true) + pad(ms(b.handlingNanoseconds), 14, right: true)
                         + pad("\(average) ns", 12, right: true))
        }
        if injectedInterrupts > 0 { lines.append("interrupts injected: \(injectedInterrupts)") }
        if let pv = paravirtual, pv != PVStatistics() { lines.append(pv.report) }
        if !byPort.isEmpty {
            lines.append("ports: " + byPort.sorted { $0.value > $1.value }.prefix(8)
                .map { "0x\(String($0.key, radix: 16))=\($0.value)" }.joined(separator: " "))
        }
        if !byEmulatedInstruction.isEmpty {
            lines.append("emulated by Visor: " + byEmulatedInstruction.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
                .map { "\($0.key)=\($0.value)" }.joined(separator: " "))
        }
        if let input = consoleInput, input != ConsoleInputStatistics() { lines.append(input.report) }
        lines += virtioDevices.map(\.report)
        lines += sensitiveInstructionsReport
        if let translation { lines.append(translation.counts.report(label: translation.engine)) }
        let u = unbacked
        if u != UnbackedAccesses() {
            lines.append("unbacked: port reads \(u.portReads), port writes \(u.portWrites), mmio reads \(u.mmioReads), mmio writes \(u.mmioWrites)")
        }
        return lines.joined(separator: "\n")
    }

    /// The sensitive-instructions section: a heading and one line per instruction that
    /// occurred, or one line saying the engine cannot count them.
    var sensitiveInstructionsReport: [String] {
        guard let counts = sensitiveInstructions else {
            return ["sensitive instructions: not counted (the hardware runs them without an exit)"]
        }
        let heading = "sensitive instructions (unprivileged but sensitive, Robin & Irvine 2000):"
        if counts.isEmpty { return [heading + " none"] }
        return [heading] + counts.reportLines.map { "  " + $0 }
    }

    private func pad(_ s: String, _ width: Int, right: Bool = false) -> String {
        let fill = String(repeating: " ", count: max(0, width - s.count))
        return right ? fill + s : s + fill
    }
}

/// Console input from the host (`HostConsole`): bytes read, taken by the guest's console (COM1's
/// FIFO or the PV input queue), and dropped because the guest never took them.
public struct ConsoleInputStatistics: Sendable, Equatable {
    /// Bytes read for the guest (Ctrl-] not counted).
    public var received: UInt64 = 0
    /// Bytes the guest's console took.
    public var delivered: UInt64 = 0
    /// Bytes dropped: typed while the backlog was full, or still waiting when input stopped.
    public var dropped: UInt64 = 0

    public init() {}

    public var report: String {
        "console input: \(received) bytes read, \(delivered) taken by the guest, \(dropped) dropped (never taken)"
    }
}
