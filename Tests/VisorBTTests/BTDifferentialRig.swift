// Two machines in one mode — `interp` alone and `interp` behind a BTExecutor — run the same
// generated case from identical state; their results (registers, RIP, RFLAGS, the scratch and
// stack pages, the outcome) are compared. Seeds: a fixed list in CI; VISOR_BT_DIFF_CASES=N and
// VISOR_BT_DIFF_SEED=S run N cases from seed S on demand. Case k of seed S uses seed S+k, so a
// failure's replay line runs exactly that case.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
import VisorCore
import VisorX86
import VisorX86Decode
@testable import VisorBT

/// What a run leaves that the comparison looks at.
struct BTDiffState: Equatable {
    var gpr: [UInt64]
    var rip: UInt64
    var rflags: UInt64
    var scratch: [UInt8]
    var stack: [UInt8]
    var outcome: StepOutcome
    var cr2: UInt64
    /// Instructions the machine counted as retired in the run.
    var retired: UInt64
}

/// The initial state and code of one case.
struct BTDiffCase {
    var code: [(address: UInt64, bytes: [UInt8])]
    var rip: UInt64
    var regs: [UInt64]
    var flags: UInt64
    var scratch: [UInt8]
    var stack: [UInt8]
    var pokes: [(address: UInt64, value: UInt64)] = []
    /// Flags the comparison ignores (undefined per the SDM).
    var undefined: UInt64
    /// With paging on (`BTDiffRig(paging:)`): how the first scratch page is mapped.
    var scratchPresent = true, scratchWritable = true

    /// A page of random bytes from `rng`.
    static func randomPage(_ rng: inout BTRandom) -> [UInt8] {
        var page = [UInt8](repeating: 0, count: 4096)
        for i in stride(from: 0, to: 4096, by: 8) {
            let v = rng.next()
            for k in 0..<8 { page[i + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(k))) }
        }
        return page
    }

    var listing: String {
        code.map { "\(String($0.address, radix: 16)): \(btHex($0.bytes))" }.joined(separator: "\n    ")
    }
}

/// Case counts and seeds for one test.
struct BTDiffPlan {
    let runs: [(seed: UInt64, cases: Int)]

    /// `ciSeeds` × `ciCases`, unless VISOR_BT_DIFF_CASES / VISOR_BT_DIFF_SEED say otherwise.
    static func make(ciSeeds: [UInt64], ciCases: Int) -> BTDiffPlan {
        func env(_ name: String) -> UInt64? {
            guard let raw = getenv(name) else { return nil }
            let s = String(cString: raw)
            return s.hasPrefix("0x") ? UInt64(s.dropFirst(2), radix: 16) : UInt64(s)
        }
        if let cases = env("VISOR_BT_DIFF_CASES") {
            return BTDiffPlan(runs: [(env("VISOR_BT_DIFF_SEED") ?? ciSeeds[0], Int(cases))])
        }
        if let seed = env("VISOR_BT_DIFF_SEED") { return BTDiffPlan(runs: [(seed, ciCases)]) }
        return BTDiffPlan(runs: ciSeeds.map { ($0, ciCases) })
    }
}

/// The two machines.
final class BTDiffRig {
    let mode: CodeMode
    private(set) var interp: BTHarness
    private(set) var bt: BTHarness

    /// With `paging` (64-bit mode): 4-level paging and an IDT of HLT handlers (BTPagingSupport).
    let paging: Bool

    init(mode: CodeMode, paging: Bool = false) throws {
        self.mode = mode
        self.paging = paging
        interp = try Self.harness(translated: false, mode: mode, paging: paging)
        bt = try Self.harness(translated: true, mode: mode, paging: paging)
    }

    /// A machine whose FS and GS have the bases the generator assumes.
    static func harness(translated: Bool, mode: CodeMode, paging: Bool = false) throws -> BTHarness {
        let h = try BTHarness(translated: translated, mode: mode)
        if paging { try h.enablePaging() }
        h.cpu.segments[4].base = BTCaseBuilder.fsBase
        h.cpu.segments[5].base = BTCaseBuilder.gsBase
        if mode == .bits16 {
            h.cpu.segments[4].selector = UInt16(BTCaseBuilder.fsBase >> 4)
            h.cpu.segments[5].selector = UInt16(BTCaseBuilder.gsBase >> 4)
        }
        return h
    }

    var statistics: BTStatistics { bt.executor?.statistics ?? BTStatistics() }

    /// Runs `c` on both; returns (interp, bt, instructions bt ran translated).
    func run(_ c: BTDiffCase, budget: Int = 10_000) throws -> (BTDiffState, BTDiffState, UInt64) {
        let before = statistics.instructionsRun
        let a = try run(c, on: interp, budget: budget)
        let b = try run(c, on: bt, budget: budget)
        let translated = statistics.instructionsRun &- before
        // A machine in shutdown stays there: start the next case on fresh ones.
        if a.outcome == .shutdown { interp = try Self.harness(translated: false, mode: mode, paging: paging) }
        if b.outcome == .shutdown { bt = try Self.harness(translated: true, mode: mode, paging: paging) }
        return (a, b, translated)
    }

    private func run(_ c: BTDiffCase, on h: BTHarness, budget: Int) throws -> BTDiffState {
        let m = h.bus.memory
        try m.fill(0xf4, at: GuestPhysicalAddress(BTDiffLayout.code), count: UInt64(BTDiffLayout.codeBytes))
        for (address, bytes) in c.code { try m.write(bytes, at: GuestPhysicalAddress(address)) }
        try m.write(c.scratch, at: GuestPhysicalAddress(BTDiffLayout.scratch))
        try m.write(c.stack, at: GuestPhysicalAddress(BTDiffLayout.stack))
        for (address, value) in c.pokes { try m.write(btBytes(value, 8), at: GuestPhysicalAddress(address)) }
        if paging {
            try h.mapPage(BTDiffLayout.scratch, present: c.scratchPresent, writable: c.scratchWritable)
        }
        h.machine.resetCaches()
        let cpu = h.cpu
        cpu.cr2 = 0
        cpu.gpr = c.regs
        cpu.rip = c.rip
        // Random status flags and DF (which translated code keeps clear on the host).
        cpu.rflags = (c.flags & (BTFlag.status | 0x400)) | 2
        cpu.halted = false
        cpu.interruptShadow = false
        let before = h.machine.instructionsRetired
        let outcome = h.run(budget: budget)
        return BTDiffState(gpr: cpu.gpr, rip: cpu.rip, rflags: cpu.rflags,
                           scratch: try m.read(at: GuestPhysicalAddress(BTDiffLayout.scratch), count: 8192),
                           stack: try m.read(at: GuestPhysicalAddress(BTDiffLayout.stack), count: 4096),
                           outcome: outcome, cr2: cpu.cr2, retired: h.machine.instructionsRetired &- before)
    }

    static let names = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
                        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"]

    /// What differs between `a` (interp) and `b` (bt), ignoring `undefined` flags.
    static func differences(_ a: BTDiffState, _ b: BTDiffState, undefined: UInt64) -> [String] {
        var out: [String] = []
        func h(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
        for i in 0..<16 where a.gpr[i] != b.gpr[i] {
            out.append("\(names[i]): interp \(h(a.gpr[i])) bt \(h(b.gpr[i]))")
        }
        if a.cr2 != b.cr2 { out.append("cr2: interp \(h(a.cr2)) bt \(h(b.cr2))") }
        if a.rip != b.rip { out.append("rip: interp \(h(a.rip)) bt \(h(b.rip))") }
        if a.rflags & ~undefined != b.rflags & ~undefined {
            out.append("rflags (undefined \(h(undefined)) masked): interp \(h(a.rflags)) bt \(h(b.rflags))")
        }
        for (name, x, y, base) in [("scratch", a.scratch, b.scratch, BTDiffLayout.scratch),
                                   ("stack", a.stack, b.stack, BTDiffLayout.stack)] where x != y {
            let first = (0..<x.count).first { x[$0] != y[$0] } ?? 0
            let end = min(x.count, first + 16)
            out.append("\(name) memory from \(h(base + UInt64(first))): interp \(btHex(Array(x[first..<end]))) bt \(btHex(Array(y[first..<end])))")
        }
        if a.outcome != b.outcome { out.append("outcome: interp \(a.outcome) bt \(b.outcome)") }
        if a.retired != b.retired { out.append("instructions retired: interp \(a.retired) bt \(b.retired)") }
        return out
    }
}
