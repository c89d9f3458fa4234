// Hardware task switches in 32-bit protected mode (SDM Vol. 3A ch. 8): far JMP/CALL to a TSS
// and through a task gate, IRET with NT, task gates in the IDT, busy bits, the link field,
// CR0.TS, LDTR/CR3 from the new TSS, #TS for bad TSSes; and #GP for all of them in IA-32e mode.

import Testing
import VisorCore
@testable import VisorX86
import VisorX86Decode

/// A 32-bit protected-mode machine running task A (TSS at 0x3000, busy, in TR) with task B
/// (TSS at 0x3100, available) and a task gate for B in the GDT.
private struct TaskMachine {
    static let gdt: UInt64 = 0x1000, idt: UInt64 = 0x2000, tssA: UInt64 = 0x3000, tssB: UInt64 = 0x3100
    static let code: UInt16 = 0x08, data: UInt16 = 0x10, userCode: UInt16 = 0x18, userData: UInt16 = 0x20
    static let selA: UInt16 = 0x28, selB: UInt16 = 0x30, gateB: UInt16 = 0x38, ldt: UInt16 = 0x40
    static let codeAt: UInt64 = 0x10_0000, taskBEntry: UInt64 = 0x10_1000

    let bus = SysBus()
    let machine: X86Machine
    var cpu: X86CPU { machine.cpu }

    init() {
        machine = X86Machine(bus: bus)
        let p = bus, c = machine.cpu
        p.w64(Self.gdt + 0x08, sysDescriptor(type: 0xb, d: true))
        p.w64(Self.gdt + 0x10, sysDescriptor(type: 0x3, d: true))
        p.w64(Self.gdt + 0x18, sysDescriptor(type: 0xb, dpl: 3, d: true))
        p.w64(Self.gdt + 0x20, sysDescriptor(type: 0x3, dpl: 3, d: true))
        p.w64(Self.gdt + 0x28, sysDescriptor(base: UInt32(Self.tssA), limit: 0x67, type: 0xb, s: false, g: false))
        p.w64(Self.gdt + 0x30, sysDescriptor(base: UInt32(Self.tssB), limit: 0x67, type: 0x9, s: false, g: false))
        p.w64(Self.gdt + 0x38, UInt64(Self.selB) << 16 | UInt64(0x85) << 40)  // task gate, DPL 0, present
        p.w64(Self.gdt + 0x40, sysDescriptor(base: 0x3400, limit: 0x17, type: 0x2, s: false, g: false))
        // Task B: flat ring 0, its own stack and registers.
        p.w32(Self.tssB + 0x20, UInt32(Self.taskBEntry))
        p.w32(Self.tssB + 0x24, 0x2)
        for r in 0..<8 { p.w32(Self.tssB + 0x28 + UInt64(4 * r), UInt32(0xb0 + r)) }
        p.w32(Self.tssB + 0x38, 0x9000)  // ESP
        for (i, s) in [Self.data, Self.code, Self.data, Self.data, Self.data, Self.data].enumerated() {
            p.w16(Self.tssB + 0x48 + UInt64(4 * i), s)
        }
        c.cr0 = X86SystemBits.cr0PE | X86SystemBits.cr0ET
        c.gdtr = DescriptorTableRegister(base: Self.gdt, limit: 0x47)
        c.idtr = DescriptorTableRegister(base: Self.idt, limit: 0x7ff)
        c.tr = .taskState(selector: Self.selA, base: Self.tssA, limit: 0x67)
        c.segments[X86CPU.cs] = SegmentRegister(selector: Self.code, base: 0, limit: 0xffff_ffff, type: 0xb,
                                                defaultSize32: true, granularity4K: true)
        for s in [X86CPU.ss, X86CPU.ds, X86CPU.es, X86CPU.fs, X86CPU.gs] {
            c.segments[s] = .flatData(selector: Self.data)
        }
        for r in 0..<8 { c.gpr[r] = UInt64(0xa0 + r) }
        c.gpr[X86CPU.rsp] = 0x8000
        c.rip = Self.codeAt
        c.rflags = 0x202
    }

    /// Decodes `bytes` as 32-bit code at RIP and executes them (faults are thrown, not delivered).
    func execute(_ bytes: [UInt8]) throws {
        guard case .instruction(let insn) = Decoder.decode(bytes, mode: cpu.codeMode) else {
            Issue.record("test bytes do not decode"); return
        }
        try machine.execute(insn)
    }

    func fault(_ bytes: [UInt8]) -> X86Fault? { sysFault { try execute(bytes) } }

    /// `jmp far selector:0` / `call far selector:0` (EA / 9A ptr16:32).
    static func jmpFar(_ selector: UInt16) -> [UInt8] { [0xea, 0, 0, 0, 0, UInt8(selector & 0xff), UInt8(selector >> 8)] }
    static func callFar(_ selector: UInt16) -> [UInt8] { [0x9a, 0, 0, 0, 0, UInt8(selector & 0xff), UInt8(selector >> 8)] }
    static let iret: [UInt8] = [0xcf]

    func busy(_ selector: UInt16) -> Bool { bus.r64(Self.gdt + UInt64(selector)) >> 41 & 1 == 1 }
    /// A 32-bit task gate to `tss` in IDT slot `vector`.
    func taskGate(_ vector: Int, tss: UInt16, dpl: UInt8 = 0) {
        bus.w64(Self.idt + UInt64(vector) * 8, UInt64(tss) << 16 | UInt64(0x85 | dpl << 5) << 40)
    }
}

@Suite struct TaskSwitchTests {
    @Test func farJumpToATSSSavesTheOldTaskLoadsTheNewAndMovesTheBusyBit() throws {
        let t = TaskMachine()
        try t.execute(TaskMachine.jmpFar(TaskMachine.selB))
        #expect(t.cpu.tr.selector == TaskMachine.selB && t.cpu.tr.base == TaskMachine.tssB)
        #expect(t.cpu.rip == TaskMachine.taskBEntry)
        #expect(t.cpu.gpr[X86CPU.rax] == 0xb0 && t.cpu.gpr[X86CPU.rsp] == 0x9000 && t.cpu.gpr[X86CPU.rdi] == 0xb7)
        #expect(t.cpu.segments[X86CPU.cs].selector == TaskMachine.code && t.cpu.cpl == 0)
        #expect(t.bus.r32(TaskMachine.tssA + 0x20) == UInt32(TaskMachine.codeAt + 7), "old EIP: the next instruction")
        #expect(t.bus.r32(TaskMachine.tssA + 0x24) == 0x202, "old EFLAGS")
        #expect(t.bus.r32(TaskMachine.tssA + 0x28) == 0xa0 && t.bus.r32(TaskMachine.tssA + 0x38) == 0x8000)
        #expect(t.bus.r16(TaskMachine.tssA + 0x4c) == TaskMachine.code, "old CS selector")
        #expect(!t.busy(TaskMachine.selA) && t.busy(TaskMachine.selB), "JMP: the old task is no longer busy")
        #expect(t.cpu.rflags & X86SystemBits.flagNT == 0, "JMP does not nest")
        #expect(t.bus.r16(TaskMachine.tssB) == 0, "JMP leaves the link field alone")
        #expect(t.cpu.cr0 & X86SystemBits.cr0TS != 0, "every task switch sets CR0.TS")
    }

    @Test func callThroughATaskGateNestsAndIRETReturnsAlongTheLink() throws {
        let t = TaskMachine()
        try t.execute(TaskMachine.callFar(TaskMachine.gateB))
        #expect(t.cpu.tr.selector == TaskMachine.selB && t.cpu.rip == TaskMachine.taskBEntry)
        #expect(t.bus.r16(TaskMachine.tssB) == TaskMachine.selA, "link: the caller's TSS")
        #expect(t.cpu.rflags & X86SystemBits.flagNT != 0, "CALL sets NT in the new task")
        #expect(t.busy(TaskMachine.selA) && t.busy(TaskMachine.selB), "both busy while nested")
        #expect(t.fault(TaskMachine.callFar(TaskMachine.selA)) == .gp(UInt32(TaskMachine.selA)),
                "a busy task cannot be called again (no recursion)")
        t.cpu.gpr[X86CPU.rax] = 0x5a
        try t.execute(TaskMachine.iret)
        #expect(t.cpu.tr.selector == TaskMachine.selA)
        #expect(t.cpu.rip == TaskMachine.codeAt + 7 && t.cpu.gpr[X86CPU.rax] == 0xa0)
        #expect(!t.busy(TaskMachine.selB) && t.busy(TaskMachine.selA), "IRET frees the nested task")
        #expect(t.bus.r32(TaskMachine.tssB + 0x24) & UInt32(X86SystemBits.flagNT) == 0, "saved with NT clear")
        #expect(t.bus.r32(TaskMachine.tssB + 0x28) == 0x5a, "the nested task's state was saved")
        #expect(t.bus.r32(TaskMachine.tssB + 0x20) == UInt32(TaskMachine.taskBEntry + 1), "after its IRET")
    }

    @Test func jumpingToABusyTaskIsGPAndChangesNothing() {
        let t = TaskMachine()
        #expect(t.fault(TaskMachine.jmpFar(TaskMachine.selA)) == .gp(UInt32(TaskMachine.selA)))
        #expect(t.cpu.tr.selector == TaskMachine.selA && t.cpu.rip == TaskMachine.codeAt)
        #expect(t.busy(TaskMachine.selA) && t.bus.r32(TaskMachine.tssA + 0x20) == 0)
    }

    @Test func privilegeAndPresenceOfTheTSSAndTheGate() {
        let t = TaskMachine()
        t.cpu.segments[X86CPU.cs] = SegmentRegister(selector: TaskMachine.userCode | 3, limit: 0xffff_ffff, type: 0xb,
                                                    dpl: 3, defaultSize32: true, granularity4K: true)
        t.cpu.cpl = 3
        #expect(t.fault(TaskMachine.jmpFar(TaskMachine.selB | 3)) == .gp(UInt32(TaskMachine.selB)), "TSS DPL 0 < CPL 3")
        #expect(t.fault(TaskMachine.jmpFar(TaskMachine.gateB | 3)) == .gp(UInt32(TaskMachine.gateB)), "gate DPL 0 < CPL 3")
        t.cpu.cpl = 0
        t.cpu.segments[X86CPU.cs].selector = TaskMachine.code
        t.bus.w64(TaskMachine.gdt + 0x38, UInt64(TaskMachine.selB) << 16 | UInt64(0x05) << 40)
        #expect(t.fault(TaskMachine.jmpFar(TaskMachine.gateB)) == .np(UInt32(TaskMachine.gateB)), "gate not present")
        t.bus.w64(TaskMachine.gdt + 0x30, sysDescriptor(base: UInt32(TaskMachine.tssB), limit: 0x67, type: 0x9, s: false,
                                                        present: false, g: false))
        #expect(t.fault(TaskMachine.jmpFar(TaskMachine.selB)) == .np(UInt32(TaskMachine.selB)), "TSS not present")
    }

    @Test func aTSSLimitBelow67hIsTS() {
        let t = TaskMachine()
        t.bus.w64(TaskMachine.gdt + 0x30, sysDescriptor(base: UInt32(TaskMachine.tssB), limit: 0x66, type: 0x9, s: false, g: false))
        #expect(t.fault(TaskMachine.jmpFar(TaskMachine.selB)) == .ts(UInt32(TaskMachine.selB)))
        #expect(t.cpu.tr.selector == TaskMachine.selA && t.busy(TaskMachine.selA), "nothing committed")
    }

    @Test func aBadCodeSegmentInTheNewTSSIsTSInTheNewTask() {
        let t = TaskMachine()
        t.bus.w16(TaskMachine.tssB + 0x4c, TaskMachine.data)  // CS = a data segment
        #expect(t.fault(TaskMachine.jmpFar(TaskMachine.selB)) == .ts(UInt32(TaskMachine.data)))
        #expect(t.cpu.tr.selector == TaskMachine.selB, "raised after the commit, in the new task")
        #expect(t.cpu.rip == TaskMachine.taskBEntry)
    }

    @Test func theNewTSSLoadsLDTRAndWithPagingCR3() throws {
        let t = TaskMachine()
        // 4 MiB identity pages under two page directories; task B names the second.
        t.bus.w32(0x10000, 0x87)
        t.bus.w32(0x11000, 0x87)
        t.cpu.cr4 = X86SystemBits.cr4PSE
        t.cpu.cr3 = 0x10000
        t.cpu.cr0 |= X86SystemBits.cr0PG
        t.bus.w32(TaskMachine.tssB + 0x1c, 0x11000)
        t.bus.w16(TaskMachine.tssB + 0x60, TaskMachine.ldt)
        try t.execute(TaskMachine.jmpFar(TaskMachine.selB))
        #expect(t.cpu.cr3 == 0x11000)
        #expect(t.cpu.ldtr.selector == TaskMachine.ldt && t.cpu.ldtr.base == 0x3400 && t.cpu.ldtr.limit == 0x17)
        // A bad LDT selector is #TS(LDT selector).
        let u = TaskMachine()
        u.bus.w16(TaskMachine.tssB + 0x60, TaskMachine.data)
        #expect(u.fault(TaskMachine.jmpFar(TaskMachine.selB)) == .ts(UInt32(TaskMachine.data)))
    }

    @Test func anExceptionThroughATaskGateSwitchesAndPushesTheErrorCodeOnTheNewStack() {
        let t = TaskMachine()
        t.taskGate(8, tss: TaskMachine.selB)
        #expect(t.machine.raise(X86Fault(vector: X86Fault.doubleFault, errorCode: 0)))
        #expect(t.cpu.tr.selector == TaskMachine.selB && t.cpu.rip == TaskMachine.taskBEntry)
        #expect(t.cpu.gpr[X86CPU.rsp] == 0x9000 - 4 && t.bus.r32(0x9000 - 4) == 0, "#DF's error code, 4 bytes")
        #expect(t.bus.r32(TaskMachine.tssA + 0x20) == UInt32(TaskMachine.codeAt), "the faulting EIP is saved")
        #expect(t.bus.r16(TaskMachine.tssB) == TaskMachine.selA && t.cpu.rflags & X86SystemBits.flagNT != 0)
        #expect(t.busy(TaskMachine.selA) && t.busy(TaskMachine.selB))
    }

    @Test func softwareINTThroughATaskGateChecksTheGateDPLAndIRETReturns() throws {
        let t = TaskMachine()
        t.taskGate(0x40, tss: TaskMachine.selB, dpl: 0)
        t.taskGate(0x41, tss: TaskMachine.selB, dpl: 3)
        t.cpu.segments[X86CPU.cs] = SegmentRegister(selector: TaskMachine.userCode | 3, limit: 0xffff_ffff, type: 0xb,
                                                    dpl: 3, defaultSize32: true, granularity4K: true)
        t.cpu.segments[X86CPU.ss] = SegmentRegister(selector: TaskMachine.userData | 3, limit: 0xffff_ffff, type: 0x3,
                                                    dpl: 3, defaultSize32: true, granularity4K: true)
        for s in [X86CPU.ds, X86CPU.es, X86CPU.fs, X86CPU.gs] { t.cpu.segments[s] = t.cpu.segments[X86CPU.ss] }
        t.cpu.cpl = 3
        #expect(t.fault([0xcd, 0x40]) == .gp(0x40 * 8 + 2), "gate DPL 0 from CPL 3")
        try t.execute([0xcd, 0x41])
        #expect(t.cpu.tr.selector == TaskMachine.selB && t.cpu.cpl == 0 && t.cpu.rip == TaskMachine.taskBEntry)
        #expect(t.cpu.gpr[X86CPU.rsp] == 0x9000, "no error code, nothing pushed")
        t.bus.w32(TaskMachine.tssB + 0x20, 0)
        try t.execute(TaskMachine.iret)
        #expect(t.cpu.tr.selector == TaskMachine.selA && t.cpu.cpl == 3)
        #expect(t.cpu.rip == TaskMachine.codeAt + 2 && t.cpu.segments[X86CPU.ss].selector == TaskMachine.userData | 3)
    }

    @Test func iretWithNTAndABadLinkIsTS() {
        let t = TaskMachine()
        t.cpu.rflags |= X86SystemBits.flagNT
        t.bus.w16(TaskMachine.tssA, TaskMachine.selB)  // available, not busy: not a task to return to
        #expect(t.fault(TaskMachine.iret) == .ts(UInt32(TaskMachine.selB)))
        t.bus.w16(TaskMachine.tssA, TaskMachine.code)
        #expect(t.fault(TaskMachine.iret) == .ts(UInt32(TaskMachine.code)))
        t.bus.w16(TaskMachine.tssA, 0xfff8)  // beyond the GDT
        #expect(t.fault(TaskMachine.iret) == .ts(0xfff8))
        #expect(t.cpu.tr.selector == TaskMachine.selA && t.cpu.rip == TaskMachine.codeAt)
    }

    @Test func aHostileTSSOutsideRAMFaultsInTheGuestNotTheHost() {
        let t = TaskMachine()
        t.bus.w64(TaskMachine.gdt + 0x30, sysDescriptor(base: 0xffff_ff00, limit: 0xffff, type: 0x9, s: false, g: false))
        // Reads beyond RAM see all ones: CS = 0xffff lies outside the GDT.
        #expect(t.fault(TaskMachine.jmpFar(TaskMachine.selB)) != nil)
    }

    @Test func inLongModeTSSesAndTaskGatesAreGP() throws {
        let s = SysMachine.longMode()
        s.bus.w64(SysLayout.gdt + 0x30, sysDescriptor(base: UInt32(SysLayout.tss), limit: 0x67, type: 0x9, s: false, g: false))
        s.cpu.tr.selector = 0x38
        s.bus.w64(SysLayout.gdt + 0x38, UInt64(SysLayout.tssSelector) << 16 | UInt64(0x85) << 40)
        // jmp far [rip+0] → m16:32 = 0x30:0 (FF /5 with a 32-bit operand).
        s.bus.bytes(SysLayout.code, [0xff, 0x2d, 0, 0, 0, 0, 0, 0, 0, 0, 0x30, 0])
        let m = s.machine
        func exec(_ bytes: [UInt8]) -> X86Fault? {
            sysFault {
                guard case .instruction(let insn) = Decoder.decode(bytes, mode: s.cpu.codeMode) else { return }
                try m.execute(insn)
            }
        }
        s.cpu.rip = SysLayout.code
        #expect(exec([0xff, 0x2d, 0, 0, 0, 0]) == .gp(0x30), "far JMP to a TSS")
        s.bus.w16(SysLayout.code + 10, 0x38)
        #expect(exec([0xff, 0x1d, 0, 0, 0, 0]) == .gp(0x38), "far CALL to a task gate")
        s.cpu.rflags |= X86SystemBits.flagNT
        #expect(exec([0x48, 0xcf]) == .gp(0), "IRETQ with NT")
        s.cpu.rflags &= ~X86SystemBits.flagNT
        s.bus.w64(SysLayout.idt + 0x40 * 16, UInt64(SysLayout.tssSelector) << 16 | UInt64(0x85) << 40)
        s.bus.w64(SysLayout.idt + 0x40 * 16 + 8, 0)
        #expect(exec([0xcd, 0x40]) == .gp(0x40 * 8 + 2), "task gate in a 64-bit IDT")
    }
}
