// Regions where the guest's flags are dead (`BlockTranslator.flagsDeadBefore`), or live only
// at the block's end (`flagsLiveOnlyAtEnd`): there the host TLB probe clobbers the host's
// RFLAGS, after the region's first access saved the guest's in the context (and the block's
// exit puts them back). A fault inside such a region must still show the guest's flags from before the
// faulting instruction, in RFLAGS and in the exception frame, exactly as on the interpreter —
// also when an earlier access of the region went through a callout (which must not overwrite
// the saved flags with the clobbered ones).

import Testing
import VisorCore
import VisorX86
import VisorX86Decode
@testable import VisorBT

@Suite("bt: faults where the guest's flags are dead")
struct BTDeadFlagsTests {
    struct Case: Sendable, CustomStringConvertible {
        let description: String
        let bytes: [UInt8]
        /// RDX (the address register).
        let address: UInt64
        /// Instructions of `bytes` that complete before the one that faults (or, with no fault,
        /// that run translated at least).
        let before: Int
        let vector: UInt64?
        var rsp: UInt64 = 0x7800
    }

    static let absent = BTPreciseFaultTests.absent, readOnly = BTPreciseFaultTests.readOnly

    static let cases: [Case] = [
        Case(description: "load, then CMP", bytes: [0x48, 0x8b, 0x0a, 0x48, 0x39, 0xd9],    // mov rcx,[rdx]; cmp rcx,rbx
             address: absent + 8, before: 0, vector: 14),
        Case(description: "stack load through a callout, then a faulting store, then TEST",
             bytes: [0x48, 0x8b, 0x0c, 0x24, 0x48, 0x89, 0x0a, 0x48, 0x85, 0xc9],          // mov rcx,[rsp]; mov [rdx],rcx; test rcx,rcx
             address: absent + 16, before: 1, vector: 14),
        Case(description: "push, then a faulting load, then SUB",
             bytes: [0x50, 0x48, 0x8b, 0x0a, 0x48, 0x29, 0xc1],                             // push rax; mov rcx,[rdx]; sub rcx,rax
             address: absent + 24, before: 1, vector: 14),
        Case(description: "CMP with memory alone", bytes: [0x48, 0x3b, 0x1a],                // cmp rbx,[rdx]
             address: absent + 32, before: 0, vector: 14),
        Case(description: "load, then ADD to a read-only page",
             bytes: [0x48, 0x8b, 0x0a, 0x48, 0x01, 0x0a],                                   // mov rcx,[rdx]; add [rdx],rcx
             address: readOnly + 8, before: 1, vector: 14),
        Case(description: "load crossing into a not-present page, then AND",
             bytes: [0x48, 0x8b, 0x0a, 0x48, 0x21, 0xc8],                                   // mov rcx,[rdx]; and rax,rcx
             address: absent - 4, before: 0, vector: 14),
        Case(description: "non-canonical store, then XOR", bytes: [0x89, 0x02, 0x31, 0xc0],  // mov [rdx],eax; xor eax,eax
             address: BTPreciseFaultTests.nonCanonical | 0x40, before: 0, vector: 13),
        // Runs where the flags are live only at the block's end: the exit puts them back.
        Case(description: "load, then RET", bytes: [0x48, 0x8b, 0x0a, 0xc3],                 // mov rcx,[rdx]; ret
             address: absent + 8, before: 0, vector: 14),
        Case(description: "load, then RET to a non-canonical address (the stop after the flags are put back)",
             bytes: [0x48, 0x8b, 0x0a, 0xc3], address: readOnly + 8, before: 1, vector: 13, rsp: 0x7a00),
        Case(description: "push, then a faulting indirect CALL through memory",
             bytes: [0x50, 0xff, 0x12], address: absent + 40, before: 1, vector: 14),      // push rax; call [rdx]
        // Controls: no fault, the region's work and the flags its last instruction made, or
        // (the CALL) the flags as they were, carried into the next block.
        Case(description: "load from a read-only page, then CMP (no fault)",
             bytes: [0x48, 0x8b, 0x0a, 0x48, 0x39, 0xd9, 0x0f, 0x92, 0xc0],                // ...; setb al
             address: readOnly + 8, before: 3, vector: nil),
        Case(description: "load and push, then an indirect CALL through a read-only page (no fault)",
             bytes: [0x48, 0x8b, 0x0a, 0x51, 0xff, 0x12], address: readOnly + 8, before: 3, vector: nil),
    ]

    @Test("a fault inside a dead-flags region leaves interp's state, flags and frame included", arguments: cases)
    func faultInRegion(c: Case) throws {
        let kind = BTPreciseFaultTests.Kind(description: c.description, bytes: c.bytes, address: c.address, vector: c.vector,
                                            rsp: c.rsp)
        for n in 0...BTPreciseFaultTests.prefix.count {
            let interp = try BTPreciseFaultTests.harness(translated: false, kind: kind, prefixCount: n)
            let bt = try BTPreciseFaultTests.harness(translated: true, kind: kind, prefixCount: n)
            // Every status flag set on entry (the prefix's ADD, when it runs, changes them):
            // flags a clobbering probe made up would show.
            for h in [interp, bt] { h.cpu.rflags = 0x2 | BTFlag.status }
            let a = interp.run(budget: 1000)
            let b = bt.run(budget: 1000)
            let label = "\(c), after \(n) instructions"
            #expect(a == .halted, "\(label)")
            #expect(b == a, "\(label)")
            // RFLAGS, and the frame's copy of it on the stack page among the pages compared.
            try BTPreciseFaultTests.expectSameState(interp, bt, label)
            let stats = try #require(bt.executor).statistics
            if let vector = c.vector {
                #expect(interp.cpu.rip == BTHarness.handler + vector + 1, "\(label)")
                #expect(stats.instructionsRun == UInt64(n + c.before), "\(label): \(stats.instructionsRun) ran translated")
            } else {
                #expect(stats.instructionsRun >= UInt64(n + c.before), "\(label): \(stats.instructionsRun) ran translated")
            }
        }
    }

    static func decode(_ bytes: [UInt8]) -> [GuestInstruction] {
        var out: [GuestInstruction] = []
        var at = 0
        while at < bytes.count {
            guard case .instruction(let insn) = Decoder.decode(Array(bytes[at...]), mode: .bits64) else { break }
            out.append(GuestInstruction(rip: UInt64(at), insn: insn))
            at += Int(insn.length)
        }
        return out
    }

    @Test("the regions: up to an instruction that writes every flag, never across a flag reader or the block's end")
    func regions() {
        // mov rcx,[rdx]; push rax; cmp rcx,rbx; jz +0
        #expect(BlockTranslator.flagsDeadBefore(Self.decode([0x48, 0x8b, 0x0a, 0x50, 0x48, 0x39, 0xd9, 0x74, 0x00]))
                == [true, true, true, false, false])
        // mov rcx,[rdx]; adc rcx,rbx (reads CF); test rcx,rcx
        #expect(BlockTranslator.flagsDeadBefore(Self.decode([0x48, 0x8b, 0x0a, 0x48, 0x11, 0xd9, 0x48, 0x85, 0xc9]))
                == [false, false, true, false])
        // mov rcx,[rdx]; inc rcx (keeps CF); sub rcx,rax
        #expect(BlockTranslator.flagsDeadBefore(Self.decode([0x48, 0x8b, 0x0a, 0x48, 0xff, 0xc1, 0x48, 0x29, 0xc1]))
                == [false, false, true, false])
        // mov rcx,[rdx]; mov [rdx],rax: the block ends with the flags still live
        #expect(BlockTranslator.flagsDeadBefore(Self.decode([0x48, 0x8b, 0x0a, 0x48, 0x89, 0x02])) == [false, false, false])
        // ... but nothing after either touches them: live only at the end
        #expect(BlockTranslator.flagsLiveOnlyAtEnd(Self.decode([0x48, 0x8b, 0x0a, 0x48, 0x89, 0x02])) == [true, true, true])
        // mov rcx,[rdx]; push rax; ret: the same; with a Jcc last, not
        #expect(BlockTranslator.flagsLiveOnlyAtEnd(Self.decode([0x48, 0x8b, 0x0a, 0x50, 0xc3])) == [true, true, true, true])
        #expect(BlockTranslator.flagsLiveOnlyAtEnd(Self.decode([0x48, 0x8b, 0x0a, 0x74, 0x00])) == [false, false, true])
    }
}
