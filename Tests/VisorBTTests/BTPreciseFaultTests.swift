// Faults in translated code are precise (issue 13): with 4-level paging on, a block whose Nth
// instruction touches a not-present page, stores to a read-only one (CR0.WP), crosses into an
// absent page or uses a non-canonical address stops before that instruction; the interpreter
// then raises the fault, delivered through the IDT to a HLT. bt's whole state afterwards —
// registers, RIP (the handler's, naming the vector), RFLAGS, CR2, the stack with the frame and
// error code, the memory the earlier instructions stored to — equals interp's, and exactly the
// N instructions before the faulting one ran translated.

import Testing
import VisorCore
import VisorX86
@testable import VisorBT

@Suite("bt: faults in translated blocks are precise")
struct BTPreciseFaultTests {
    static let absent: UInt64 = 0x5000
    static let readOnly: UInt64 = 0x6000
    static let nonCanonical: UInt64 = 0x8000_0000_0000_0000
    static let callTarget: UInt64 = 0x3100

    /// Register-only and one store: what must have retired before the fault.
    static let prefix: [[UInt8]] = [
        [0x48, 0xff, 0xc3],                                      // inc rbx
        [0x48, 0x89, 0x1c, 0x25, 0x00, 0xa0, 0x00, 0x00],        // mov [0xa000], rbx
        [0x48, 0x6b, 0xf3, 0x07],                                // imul rsi, rbx, 7
        [0x48, 0x01, 0xf7],                                      // add rdi, rsi
        [0x49, 0x89, 0xf0],                                      // mov r8, rsi
    ]

    struct Kind: Sendable, CustomStringConvertible {
        let description: String
        let bytes: [UInt8]
        /// RDX (the address register).
        let address: UInt64
        /// The vector delivered, nil when the instruction completes.
        let vector: UInt64?
        var rsp: UInt64 = 0x7800
    }

    static let kinds: [Kind] = [
        Kind(description: "load from a not-present page", bytes: [0x48, 0x8b, 0x0a], address: absent + 8, vector: 14),
        Kind(description: "byte load (movzx) from a not-present page", bytes: [0x0f, 0xb6, 0x0a], address: absent + 1, vector: 14),
        Kind(description: "store to a not-present page", bytes: [0x48, 0x89, 0x02], address: absent + 16, vector: 14),
        Kind(description: "setcc to a not-present page", bytes: [0x0f, 0x94, 0x02], address: absent + 3, vector: 14),
        Kind(description: "store to a read-only page", bytes: [0x48, 0x89, 0x02], address: readOnly + 24, vector: 14),
        Kind(description: "read-modify-write of a read-only page", bytes: [0x48, 0x01, 0x02], address: readOnly + 32, vector: 14),
        Kind(description: "load crossing into a not-present page", bytes: [0x48, 0x8b, 0x0a], address: absent - 4, vector: 14),
        Kind(description: "load from a non-canonical address", bytes: [0x48, 0x8b, 0x0a], address: nonCanonical, vector: 13),
        Kind(description: "store to a non-canonical address", bytes: [0x89, 0x02], address: nonCanonical | 0x40, vector: 13),
        Kind(description: "indirect jump through a not-present page", bytes: [0xff, 0x22], address: absent + 8, vector: 14),
        Kind(description: "indirect jump to a non-canonical address", bytes: [0xff, 0xe2], address: nonCanonical, vector: 13),
        Kind(description: "return to a non-canonical address", bytes: [0xc3], address: 0, vector: 13, rsp: 0x7a00),
        // Controls: the same accesses where they are allowed complete.
        Kind(description: "load from a read-only page (no fault)", bytes: [0x48, 0x8b, 0x0a], address: readOnly + 8, vector: nil),
        Kind(description: "indirect call through a read-only page (no fault)", bytes: [0xff, 0x12], address: readOnly + 8, vector: nil),
    ]

    static func harness(translated: Bool, kind: Kind, prefixCount: Int) throws -> BTHarness {
        let h = try BTHarness(translated: translated)
        try h.enablePaging()
        try h.mapPage(absent, present: false)
        try h.mapPage(readOnly, writable: false)
        let m = h.bus.memory
        try m.fill(0xf4, at: GuestPhysicalAddress(0x1000), count: 0x1000)
        try m.fill(0xf4, at: GuestPhysicalAddress(callTarget), count: 16)
        var code = prefix.prefix(prefixCount).flatMap { $0 }
        code += kind.bytes
        code += [0x48, 0xff, 0xc7, 0xf4]  // inc rdi; hlt
        try h.load(code)
        try m.write(btBytes(callTarget, 8), at: GuestPhysicalAddress(readOnly + 8))
        try m.write(btBytes(nonCanonical | 0x1234, 8), at: GuestPhysicalAddress(0x7a00))  // for RET
        let cpu = h.cpu
        for i in 0..<16 { cpu.gpr[i] = 0x1111_1111 * UInt64(i + 1) }
        cpu.gpr[2] = kind.address
        cpu.gpr[4] = kind.rsp
        cpu.rflags = 0x2 | BTFlag.cf | BTFlag.zf
        cpu.rip = BTHarness.codeAddress
        return h
    }

    /// bt's registers, RIP, RFLAGS, CR2, CS and the pages a run writes (the stack, with any
    /// exception frame, at 0x7000; the prefix's store at 0xa000; the read-only page) are interp's.
    static func expectSameState(_ interp: BTHarness, _ bt: BTHarness, _ label: String) throws {
        #expect(bt.cpu.gpr == interp.cpu.gpr, "\(label)")
        #expect(bt.cpu.rip == interp.cpu.rip, "\(label)")
        #expect(bt.cpu.rflags == interp.cpu.rflags, "\(label)")
        #expect(bt.cpu.cr2 == interp.cpu.cr2, "\(label)")
        #expect(bt.cpu.segments[X86CPU.cs] == interp.cpu.segments[X86CPU.cs], "\(label)")
        for page in [0x7000, 0xa000, readOnly] as [UInt64] {
            let x = try interp.bus.memory.read(at: GuestPhysicalAddress(page), count: 4096)
            let y = try bt.bus.memory.read(at: GuestPhysicalAddress(page), count: 4096)
            #expect(x == y, "\(label): page \(String(page, radix: 16))")
        }
    }

    @Test("a block faulting at its Nth instruction leaves interp's state: handler, frame, CR2, earlier stores",
          arguments: kinds)
    func faultIsPrecise(kind: Kind) throws {
        for n in 0...Self.prefix.count {
            let interp = try Self.harness(translated: false, kind: kind, prefixCount: n)
            let bt = try Self.harness(translated: true, kind: kind, prefixCount: n)
            let a = interp.run(budget: 1000)
            let b = bt.run(budget: 1000)
            let label = "\(kind), after \(n) instructions"
            #expect(a == .halted, "\(label)")
            #expect(b == a, "\(label)")
            try Self.expectSameState(interp, bt, label)
            let stats = try #require(bt.executor).statistics
            if let vector = kind.vector {
                // Stopped in the handler for the right vector (HLT at handler + vector retired).
                #expect(interp.cpu.rip == BTHarness.handler + vector + 1, "\(label)")
                // The instructions before the faulting one retired (RBX was incremented and
                // stored when the prefix had them), translated, and nothing after it ran.
                if n >= 1 { #expect(interp.cpu.gpr[3] == 0x4444_4445, "\(label)") }
                #expect(interp.cpu.gpr[7] == (n >= 4 ? 0x8888_8888 &+ 0x4444_4445 &* 7 : 0x8888_8888), "\(label)")
                #expect(stats.instructionsRun == UInt64(n), "\(label): \(stats.instructionsRun) ran translated")
            } else {
                #expect(stats.instructionsRun >= UInt64(n + 1), "\(label): \(stats.instructionsRun) ran translated")
            }
        }
    }

    /// Random programs (BTDifferentialTests' generator) over a scratch page made absent or
    /// read-only: the first access (or store) faults somewhere in a block, and bt must stop
    /// exactly where interp delivers the #PF — same registers, RIP, RFLAGS, CR2, frame.
    @Test("random blocks faulting on an absent or read-only scratch page end as on the interpreter")
    func randomBlocksFault() throws {
        let rig = try BTDiffRig(mode: .bits64, paging: true)
        let plan = BTDiffPlan.make(ciSeeds: BTDifferentialTests.ciSeeds, ciCases: 300)
        var failures = 0, total = 0, faulted = 0
        var translated: UInt64 = 0
        for run in plan.runs {
            for k in 0..<run.cases {
                let seed = run.seed &+ UInt64(k)
                var c = BTProgram.make(mode: .bits64, seed: seed).diffCase
                c.scratchPresent = seed & 1 == 0
                c.scratchWritable = false
                var (a, b, ran) = try rig.run(c)
                translated &+= ran
                total += 1
                if a.rip == BTHarness.handler + 14 + 1 {
                    faulted += 1
                    // The frame holds RFLAGS (above the error code, RIP and CS): AF there is
                    // as undefined as in the register when the program may have left it so.
                    let slot = Int(a.gpr[4] &+ 24 &- BTDiffLayout.stack)
                    if c.undefined & BTFlag.af != 0 && slot >= 0 && slot < 4096 && b.gpr[4] == a.gpr[4] {
                        a.stack[slot] &= ~UInt8(BTFlag.af)
                        b.stack[slot] &= ~UInt8(BTFlag.af)
                    }
                }
                let problems = BTDiffRig.differences(a, b, undefined: c.undefined)
                if !problems.isEmpty {
                    failures += 1
                    if failures <= 10 {
                        Issue.record(BTDifferentialTests.report(.bits64, seed, c, problems + [
                            "scratch page \(c.scratchPresent ? "read-only" : "absent")"]))
                    }
                }
            }
        }
        #expect(failures == 0, "\(failures) of \(total) programs differ")
        #expect(faulted * 2 >= total, "\(faulted) of \(total) programs took the #PF")
        #expect(translated > 0)
    }
}
