// The software CPU counts Robin and Irvine's sensitive instructions by kind and by the CPL they
// ran at (SensitiveInstructions.swift): each case runs one instruction with the real decoder on
// the long-mode fixture, at CPL0 and at CPL3, and checks that exactly its kind's slot at that
// level went up by one — faulting executions included — and that nothing else counts.

import Testing
import VisorCore
import VisorX86
import VisorX86Decode

@Suite struct SensitiveInstructionTests {
    /// One instruction, the kind it must count as, and whether it runs in compatibility mode
    /// (INTO and PUSH/POP DS do not exist in 64-bit mode).
    struct Case: CustomStringConvertible, Sendable {
        let bytes: [UInt8]
        let kind: SensitiveInstruction
        var compatibility = false
        var description: String { kind.name }
    }

    static let cases: [Case] = [
        Case(bytes: [0x0f, 0x01, 0x00], kind: .sgdt),          // sgdt [rax]
        Case(bytes: [0x0f, 0x01, 0x08], kind: .sidt),          // sidt [rax]
        Case(bytes: [0x0f, 0x00, 0xc0], kind: .sldt),          // sldt eax
        Case(bytes: [0x0f, 0x00, 0xc8], kind: .str),           // str eax
        Case(bytes: [0x0f, 0x01, 0xe0], kind: .smsw),          // smsw eax
        Case(bytes: [0x9c], kind: .pushf),
        Case(bytes: [0x9d], kind: .popf),
        Case(bytes: [0x0f, 0x02, 0xc1], kind: .lar),           // lar eax, ecx
        Case(bytes: [0x0f, 0x03, 0xc1], kind: .lsl),           // lsl eax, ecx
        Case(bytes: [0x0f, 0x00, 0xe1], kind: .verr),          // verr cx
        Case(bytes: [0x0f, 0x00, 0xe9], kind: .verw),          // verw cx
        Case(bytes: [0x0f, 0xa0], kind: .pushSegment),         // push fs
        Case(bytes: [0x0f, 0xa1], kind: .popSegment),          // pop fs
        Case(bytes: [0x1e], kind: .pushSegment, compatibility: true),  // push ds
        Case(bytes: [0x1f], kind: .popSegment, compatibility: true),   // pop ds
        Case(bytes: [0xff, 0x18], kind: .callFar),             // call far [rax] (m16:32)
        Case(bytes: [0xff, 0x28], kind: .jmpFar),              // jmp far [rax]
        Case(bytes: [0xcb], kind: .retFar),
        Case(bytes: [0xcd, 0x80], kind: .intImmediate),        // int 0x80
        Case(bytes: [0xcc], kind: .int3),
        Case(bytes: [0xce], kind: .into, compatibility: true),
        Case(bytes: [0x8e, 0xd8], kind: .movToSegment),        // mov ds, eax
        Case(bytes: [0x8c, 0xd8], kind: .movFromSegment),      // mov eax, ds
    ]

    static let handler: UInt64 = 0x10_0800
    static let target: UInt64 = 0x10_0100
    static let data: UInt64 = 0x9000

    /// The fixture at `cpl` (0 or 3), with `bytes` at RIP, every gate DPL 3 onto a handler, a far
    /// pointer and a far-return frame naming the current CS, and a selector on the stack.
    static func machine(running bytes: [UInt8], cpl: UInt8, compatibility: Bool) -> SysMachine {
        let s = SysMachine.longMode()
        for vector in 0..<256 { s.gate(vector, handler: handler, dpl: 3) }
        if cpl == 3 { s.enterUser() }
        if compatibility {
            let selector = cpl == 3 ? SysLayout.user32Code | 3 : SysLayout.legacyCode32
            s.cpu.segments[X86CPU.cs] = SegmentRegister(selector: selector, limit: 0xffff_ffff, type: 0xb, dpl: cpl,
                                                       defaultSize32: true, granularity4K: true)
            s.cpu.cpl = cpl
        }
        let cs = UInt32(s.cpu.segments[X86CPU.cs].selector)
        s.bus.bytes(SysLayout.code, bytes)
        s.cpu.gpr[X86CPU.rcx] = UInt64(SysLayout.kernelCode)
        // Far pointer (m16:32) for CALL/JMP, a 32-bit far-return frame for RETF; POP FS and
        // POP DS find the data selector of the current level there too.
        s.bus.w32(data, UInt32(target))
        s.bus.w16(data + 4, UInt16(cs))
        let stack = SysLayout.stack
        s.bus.w32(stack, UInt32(target))
        s.bus.w32(stack + 4, cs)
        if bytes == [0x9d] { s.bus.w64(stack, 0x2) }  // POPF: nothing but the fixed bit
        if bytes == [0x0f, 0xa1] || bytes == [0x1f] {
            s.bus.w64(stack, UInt64(cpl == 3 ? SysLayout.userData | 3 : SysLayout.kernelData))
        }
        s.cpu.rflags |= X86SystemBits.flagOF  // INTO traps
        s.cpu.gpr[X86CPU.rax] = bytes == [0x8e, 0xd8] ? UInt64(SysLayout.kernelData) : data
        return s
    }

    @Test("each sensitive instruction counts once, as its own kind, at the CPL it ran at",
          arguments: cases, [UInt8(0), 3])
    func countsByKindAndLevel(_ c: Case, cpl: UInt8) {
        let s = Self.machine(running: c.bytes, cpl: cpl, compatibility: c.compatibility)
        #expect(s.machine.sensitiveInstructions.isEmpty)
        #expect(s.machine.step() == nil)
        let counts = s.machine.sensitiveInstructions
        for kind in SensitiveInstruction.allCases {
            for level in 0..<4 {
                let expected: UInt64 = kind == c.kind && level == Int(cpl) ? 1 : 0
                #expect(counts.count(kind, cpl: level) == expected, "\(kind.name) at cpl\(level)")
            }
        }
    }

    @Test("a faulting execution counts: MOV DS of a ring-0 selector at CPL3 raises #GP and is counted at CPL3")
    func faultingExecutionCounts() {
        let s = Self.machine(running: [0x8e, 0xd8], cpl: 3, compatibility: false)
        #expect(s.machine.step() == nil)
        #expect(s.cpu.rip == Self.handler)  // #GP delivered
        #expect(s.cpu.cpl == 0)
        #expect(s.machine.sensitiveInstructions.count(.movToSegment, cpl: 3) == 1)
        #expect(s.machine.sensitiveInstructions.count(.movToSegment, cpl: 0) == 0)
    }

    @Test("instructions that are not sensitive count nothing", arguments: [
        [0x50],              // push rax
        [0x58],              // pop rax
        [0x6a, 0x01],        // push 1
        [0x89, 0xd8],        // mov eax, ebx
        [0xf1],              // int1 (not in Robin and Irvine's list)
        [0x0f, 0x01, 0x10],  // lgdt [rax]: privileged, it traps
    ] as [[UInt8]])
    func othersDoNotCount(_ bytes: [UInt8]) {
        let s = Self.machine(running: bytes, cpl: 0, compatibility: false)
        #expect(s.machine.step() == nil)
        #expect(s.machine.sensitiveInstructions.isEmpty)
    }

    @Test("a run of several counts each; counts merge across vCPUs and report the levels that occurred")
    func runAndReport() {
        // pushfq; popfq; mov eax, ds; int3 — at CPL3.
        let s = Self.machine(running: [0x9c, 0x9d, 0x8c, 0xd8, 0xcc], cpl: 3, compatibility: false)
        s.bus.w64(SysLayout.stack, 0x3202)  // what POPF pops (IF and IOPL: dropped at CPL3, IOPL 0)
        for _ in 0..<4 { #expect(s.machine.step() == nil) }
        var counts = s.machine.sensitiveInstructions
        #expect(counts.count(.pushf, cpl: 3) == 1 && counts.count(.popf, cpl: 3) == 1)
        #expect(counts.count(.movFromSegment, cpl: 3) == 1 && counts.count(.int3, cpl: 3) == 1)
        #expect(s.cpu.rflags & X86SystemBits.flagIF == 0)  // POPF at CPL3, IOPL 0: IF silently kept
        var other = SensitiveInstructionCounts()
        other.record(.pushf, cpl: 0)
        other.record(.pushf, cpl: 1)
        counts.merge(other)
        #expect(counts.total(.pushf) == 3)
        #expect(counts.reportLines.count == 4)
        #expect(counts.reportLines.first == "pushf           cpl0 1          cpl3 1  cpl1 1")
    }
}
