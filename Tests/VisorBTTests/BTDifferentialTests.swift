// bt against interp on generated code (issue 13, "How it is checked"): every covered
// instruction family at every operand size, register and memory forms (base/index/scale/disp,
// RIP-relative, the other address size through 0x67), random values and flags; and random
// blocks of them with forward branches, a counted backward loop, calls and memory accesses,
// ending in HLT — in 64-, 32- and 16-bit code. Each case runs on both machines from identical
// state and must end identically, except for flags the SDM leaves undefined.

import Testing
import VisorCore
import VisorX86
import VisorX86Decode
@testable import VisorBT

/// A random program: slots of instructions, branches to later slots, one counted loop.
struct BTProgram {
    var diffCase: BTDiffCase
    var instructions: Int

    /// A branch to a slot (`slots.count` + 1 is the final HLT).
    struct Unit {
        var insn: BTInstruction
        var target: Int?
    }

    static func make(mode: CodeMode, seed: UInt64) -> BTProgram {
        var rng = BTRandom(seed: seed)
        let wide: [UInt8] = mode == .bits64 ? Array(0..<16) : Array(0..<8)
        let scratchRegister = rng.pick([3, 5, 6, 7] as [UInt8])
        let counter = rng.pick(wide.filter { $0 != 4 && $0 != scratchRegister })
        let reserved: Set<UInt8> = [4, scratchRegister, counter]
        var b = BTCaseBuilder(mode: mode, rng: rng, reserved: reserved, scratchRegister: scratchRegister)
        b.regs[Int(scratchRegister)] = BTCaseBuilder.scratchPointer
        b.regs[Int(counter)] = UInt64(1 + b.rng.below(3))
        let free = wide.filter { !reserved.contains($0) }
        let operandSize: UInt8 = mode == .bits16 ? 2 : 4
        // Flags a later instruction might read are never left undefined: an instruction with
        // undefined flags other than AF is followed (in the same slot, so no branch lands between)
        // by a CMP that defines them all. AF is read by nothing generated here; it is masked at
        // the end if any instruction may have left it undefined.
        func fixup(_ b: inout BTCaseBuilder) -> BTInstruction {
            var insn = BTInstruction([0x81])
            insn.setModRM(reg: 7, .register(b.rng.pick(free)))
            insn.immediate = b.immediate(Int(operandSize))
            if mode == .bits64 && b.rng.bool() { insn.rexW = true }
            return insn
        }
        let families: [BTFamily] = [.alu, .aluImmediate, .mov, .unary, .shift, .imul, .setcc, .cmov,
                                    .extendMove, .lea, .accumulatorExtend, .xchg]
        let slotCount = 4 + b.rng.below(24)
        var slots: [[Unit]] = []
        var maskAF = false
        for i in 0..<slotCount {
            b.taken = reserved
            b.legacyByte = false
            let choice = b.rng.below(100)
            if choice < 15 {
                // A forward branch: Jcc, JMP or (64-bit) CALL, to a later slot or the end.
                let target = i + 1 + b.rng.below(slotCount + 1 - i)
                let kind = b.rng.below(mode == .bits64 ? 5 : 4)
                var insn: BTInstruction
                if kind == 4 {
                    insn = BTInstruction([0xe8])
                } else if kind < 3 {
                    insn = BTInstruction([0x70 + UInt8(b.rng.below(16))])
                } else {
                    insn = BTInstruction([0xeb])
                }
                slots.append([Unit(insn: insn, target: target)])
            } else if choice < 20 {
                // Instructions the translator leaves to the interpreter, between translated ones.
                var insn: BTInstruction
                if mode != .bits16 && b.rng.bool() {
                    let r = b.rng.pick(free)
                    insn = BTInstruction([0x0f, 0xc8 + (r & 7)])  // BSWAP
                    if r >= 8 { insn.rexB = true }
                    if mode == .bits64 && b.rng.bool() { insn.rexW = true }
                } else {
                    insn = BTInstruction([0xf0, 0x01])  // LOCK ADD [scratch], r
                    let r = b.rng.pick(free)
                    insn.setModRM(reg: r, b.memory(size: Int(operandSize)))
                }
                slots.append([Unit(insn: insn, target: nil)])
            } else {
                let family = mode == .bits64 && b.rng.below(10) == 0 ? BTFamily.stack : b.rng.pick(families)
                // (A family with no form here, e.g. CDQ with rDX reserved, becomes a NOP.)
                let insn = b.make(family, at: 0) ?? BTInstruction([0x90])
                var slot = [Unit(insn: insn, target: nil)]
                if insn.undefined & ~BTFlag.af != 0 {
                    slot.append(Unit(insn: fixup(&b), target: nil))
                } else if insn.undefined & BTFlag.af != 0 {
                    maskAF = true
                }
                slots.append(slot)
            }
        }
        // The loop: DEC counter; JNZ back to a random slot.
        var dec: BTInstruction
        if mode == .bits64 {
            dec = BTInstruction([0xff])
            dec.setModRM(reg: 1, .register(counter))
        } else {
            dec = BTInstruction([0x48 + counter])
        }
        let loopStart = b.rng.below(slots.count + 1)
        slots.append([Unit(insn: dec, target: nil), Unit(insn: BTInstruction([0x75]), target: loopStart)])
        var hlt = BTInstruction([0xf4])
        hlt.undefined = 0
        slots.append([Unit(insn: hlt, target: nil)])

        // A third of the programs start late in the first code page, so that blocks end at the
        // page's end and an instruction may straddle it (left to the interpreter).
        let start = BTDiffLayout.code + (b.rng.below(3) == 0 ? 0xe00 + UInt64(b.rng.below(0x180)) : 0)
        // Layout: branches start short (or near at random) and grow until every one reaches.
        let nearWidth = mode == .bits16 ? 2 : 4
        var near = slots.map { $0.map { $0.target != nil && (b.rng.bool() || $0.insn.opcode == [0xe8]) } }
        func nearForm(_ u: Unit) -> [UInt8] {
            switch u.insn.opcode[0] {
            case 0xeb: return [0xe9]
            case 0xe8: return [0xe8]
            default: return [0x0f, 0x80 + (u.insn.opcode[0] & 0xf)]
            }
        }
        var addresses: [[UInt64]] = []
        var slotStart: [UInt64] = []
        while true {
            addresses = []
            slotStart = []
            var at = start
            for (s, slot) in slots.enumerated() {
                slotStart.append(at)
                var row: [UInt64] = []
                for (k, u) in slot.enumerated() {
                    row.append(at)
                    let width = u.target == nil ? 0 : near[s][k] ? nearWidth + nearForm(u).count : 1 + u.insn.opcode.count
                    at += UInt64(u.target == nil ? u.insn.length : width)
                }
                addresses.append(row)
            }
            var grew = false
            for (s, slot) in slots.enumerated() {
                for (k, u) in slot.enumerated() where u.target != nil && !near[s][k] {
                    let end = Int64(addresses[s][k]) + 2
                    let d = Int64(slotStart[u.target!]) - end
                    if d < -128 || d > 127 { near[s][k] = true; grew = true }
                }
            }
            if !grew { break }
        }
        var code: [(address: UInt64, bytes: [UInt8])] = []
        var count = 0
        for (s, slot) in slots.enumerated() {
            for (k, u) in slot.enumerated() {
                var insn = u.insn
                if let t = u.target {
                    if near[s][k] { insn.opcode = nearForm(u) }
                    insn.branch = (slotStart[t], near[s][k] ? nearWidth : 1)
                }
                code.append((addresses[s][k], insn.bytes(at: addresses[s][k], mode: mode)))
                count += 1
            }
        }
        var rngAfter = b.rng
        let flags = rngAfter.next()
        let scratch = BTDiffCase.randomPage(&rngAfter) + BTDiffCase.randomPage(&rngAfter)
        let stack = BTDiffCase.randomPage(&rngAfter)
        let c = BTDiffCase(code: code, rip: start, regs: b.regs, flags: flags, scratch: scratch,
                           stack: stack, undefined: maskAF ? BTFlag.af : 0)
        return BTProgram(diffCase: c, instructions: count)
    }
}

@Suite("bt vs interp: generated code", .serialized)
struct BTDifferentialTests {
    static let modes: [CodeMode] = [.bits64, .bits32, .bits16]
    static let ciSeeds: [UInt64] = [0x5eed_0001, 0xb7d1_ff00_0000, 0x13_0013]

    /// One single-instruction case: the instruction at `BTDiffLayout.single` in a page of HLT.
    static func singleCase(mode: CodeMode, seed: UInt64) -> (BTDiffCase, expectTranslated: Bool) {
        var b = BTCaseBuilder(mode: mode, rng: BTRandom(seed: seed))
        let families = BTFamily.allCases.filter { mode == .bits64 || $0 != .stack }
        let family = b.rng.pick(families)
        let insn = b.make(family, at: BTDiffLayout.single) ?? BTInstruction([0x90])
        var rng = b.rng
        let flags = rng.next()
        let scratch = BTDiffCase.randomPage(&rng) + BTDiffCase.randomPage(&rng)
        let stack = BTDiffCase.randomPage(&rng)
        let c = BTDiffCase(code: [(BTDiffLayout.single, insn.bytes(at: BTDiffLayout.single, mode: mode))],
                           rip: BTDiffLayout.single, regs: b.regs, flags: flags, scratch: scratch, stack: stack,
                           pokes: b.pokes, undefined: insn.undefined)
        return (c, b.expectTranslated)
    }

    static func report(_ mode: CodeMode, _ seed: UInt64, _ c: BTDiffCase, _ problems: [String]) -> Comment {
        """
        bt differs from interp (\(mode)), seed 0x\(String(seed, radix: 16)) \
        (replay: VISOR_BT_DIFF_SEED=0x\(String(seed, radix: 16)) VISOR_BT_DIFF_CASES=1)
            \(c.listing)
          \(problems.joined(separator: "\n  "))
        """
    }

    @Test("every covered instruction, alone, ends as on the interpreter and ran translated", arguments: modes)
    func singleInstructions(mode: CodeMode) throws {
        let rig = try BTDiffRig(mode: mode)
        let plan = BTDiffPlan.make(ciSeeds: Self.ciSeeds, ciCases: mode == .bits64 ? 2500 : 800)
        var failures = 0, total = 0, translatedCases = 0
        for run in plan.runs {
            for k in 0..<run.cases {
                let seed = run.seed &+ UInt64(k)
                let (c, expectTranslated) = Self.singleCase(mode: mode, seed: seed)
                let (a, b, translated) = try rig.run(c, budget: 100)
                total += 1
                var problems = BTDiffRig.differences(a, b, undefined: c.undefined)
                if expectTranslated && translated != 1 {
                    problems.append("ran \(translated) instructions translated, expected 1 (left to the interpreter?)")
                }
                if translated == 1 { translatedCases += 1 }
                if !problems.isEmpty {
                    failures += 1
                    if failures <= 10 { Issue.record(Self.report(mode, seed, c, problems)) }
                }
            }
        }
        #expect(failures == 0, "\(failures) of \(total) cases differ")
        // Not a test that passes by never translating.
        #expect(translatedCases > 0)
        #expect(translatedCases * 10 >= total * 9, "\(translatedCases) of \(total) cases ran translated")
    }

    @Test("random blocks with branches, a loop and memory end as on the interpreter", arguments: modes)
    func randomBlocks(mode: CodeMode) throws {
        let rig = try BTDiffRig(mode: mode)
        let plan = BTDiffPlan.make(ciSeeds: Self.ciSeeds, ciCases: mode == .bits64 ? 300 : 150)
        var failures = 0, total = 0
        var retired: UInt64 = 0, translated: UInt64 = 0
        for run in plan.runs {
            for k in 0..<run.cases {
                let seed = run.seed &+ UInt64(k)
                let p = BTProgram.make(mode: mode, seed: seed)
                let (a, b, ran) = try rig.run(p.diffCase)
                retired &+= a.retired
                translated &+= ran
                total += 1
                var problems = BTDiffRig.differences(a, b, undefined: p.diffCase.undefined)
                if a.outcome != .halted { problems.append("interp did not halt: \(a.outcome)") }
                if !problems.isEmpty {
                    failures += 1
                    if failures <= 10 { Issue.record(Self.report(mode, seed, p.diffCase, problems)) }
                }
            }
        }
        #expect(failures == 0, "\(failures) of \(total) programs differ")
        #expect(translated > 0)
        // Most of what ran, ran translated (HLT, BSWAP, LOCK ADD and refused accesses did not).
        #expect(translated * 2 >= retired, "\(translated) of \(retired) instructions ran translated")
    }
}

@Suite("bt differential generator")
struct BTCaseGeneratorTests {
    /// The comparison only sees the scratch and stack pages: a memory operand that missed them
    /// would hide a wrong access. Every form the generator makes (base/index/scale/disp,
    /// RIP-relative, absolute, 16-bit, 0x67, segment overrides) is checked to reach its target,
    /// on the interpreter, through a store of a marker.
    @Test("generated memory operands reach the address they were made for", arguments: BTDifferentialTests.modes)
    func memoryOperandsLand(mode: CodeMode) throws {
        let h = try BTDiffRig.harness(translated: false, mode: mode)
        let size: UInt8 = mode == .bits64 ? 8 : 4
        var checked = 0
        for seed in UInt64(0)..<2000 {
            var b = BTCaseBuilder(mode: mode, rng: BTRandom(seed: seed))
            b.taken.insert(0)
            let operand = b.memory(size: Int(size))
            guard b.expectTranslated else { continue }  // a page crossing or MMIO on purpose
            var insn = BTInstruction([0x89])  // mov [mem], eax / rax
            insn.setModRM(reg: 0, operand)
            b.sized(&insn, size)
            let marker: UInt64 = 0x5a5a_0000_0000_a5a5 | seed << 16
            var regs = b.regs
            regs[0] = marker
            let bytes = insn.bytes(at: BTDiffLayout.single, mode: mode)
            let m = h.bus.memory
            try m.fill(0xf4, at: GuestPhysicalAddress(BTDiffLayout.code), count: UInt64(BTDiffLayout.codeBytes))
            try m.write(bytes, at: GuestPhysicalAddress(BTDiffLayout.single))
            try m.fill(0, at: GuestPhysicalAddress(BTDiffLayout.scratch), count: 0x2000)
            h.machine.resetCaches()
            h.cpu.gpr = regs
            h.cpu.rip = BTDiffLayout.single
            h.cpu.halted = false
            #expect(h.run(budget: 10) == .halted, "seed \(seed): \(btHex(bytes))")
            let stored = try m.read(at: GuestPhysicalAddress(b.lastTarget), count: Int(size))
            #expect(stored == btBytes(marker, Int(size)),
                    "seed \(seed): \(btHex(bytes)) target 0x\(String(b.lastTarget, radix: 16))")
            checked += 1
        }
        #expect(checked > 1500)
    }
}
