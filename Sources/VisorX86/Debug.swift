// Debug registers and single-stepping (Intel SDM Vol. 3B ch. 17, "Debug, branch profile, TSC
// and resource monitoring features"; Vol. 3A 6.15 "Interrupt 1—Debug Exception").
//
// The step loop takes this path only while RFLAGS.TF or RFLAGS.RF is set, a breakpoint is
// enabled in DR7, or a #DB trap is deferred: otherwise the cost is the one test in `step()`.
// Here, in SDM order:
// - an enabled instruction breakpoint (R/W = 00) whose address is CS.base + RIP raises #DB as
//   a fault before the instruction is fetched, unless RF = 1; the pushed RFLAGS has RF as it was
//   (0): the handler sets RF in the image to resume without a second #DB;
// - RF is cleared at the start of every instruction (after that check), so it suppresses the
//   breakpoint for one instruction; a fault pushes RF = 1, and a REP string instruction that
//   stops between iterations leaves RF = 1 so its continuation does not break again;
// - data breakpoints (R/W = 01 writes, 11 reads or writes; LEN 1, 2, 8 or 4 bytes, the address
//   aligned down to the length) and I/O breakpoints (R/W = 10 with CR4.DE = 1) are traps: the
//   instruction completes, then #DB with RIP after it and Bn in DR6 (a REP string instruction
//   stops after the iteration that matched, RIP on it);
// - TF set at the start of an instruction is a single-step trap after it (DR6.BS), so POPF or
//   IRET setting TF traps after the next instruction and one clearing it still traps once. INT n,
//   INT3, INT1 and a taken INTO do not trap: their delivery clears TF for the handler, and IRET
//   restores it. A fault cancels the traps of the faulting instruction.
// - after MOV SS / POP SS the traps wait until after the next instruction, as interrupts do.
// DR6 bits are sticky: the CPU only sets them; software clears them. Delivering #DB clears
// DR7.GD, so the handler may use the debug registers. MOV DR with DR7.GD set is a #DB fault
// with DR6.BD (Interpreter+System.swift). Not modelled: task-switch traps (DR6.BT; there are no
// task switches), the Bn of breakpoints that are not enabled, single-stepping each iteration of a
// REP string instruction (the trap comes after the instruction, or after the iterations one step
// runs), breakpoints on the CPU's implicit accesses to system structures (GDT, IDT, TSS).

import VisorCore
import VisorX86Decode

/// DR6 and DR7 bits.
public enum X86DebugBits {
    /// DR6: B0-B3 (breakpoint n's condition was met), BD (MOV DR while DR7.GD), BS (single step).
    public static let dr6BreakpointHits: UInt64 = 0xf, dr6BD: UInt64 = 1 << 13, dr6BS: UInt64 = 1 << 14
    public static let dr6BT: UInt64 = 1 << 15
    /// The DR6 bits software may change; the others read as in `dr6Fixed`: bits 4-11 and 16-31
    /// set (no bus-lock detection, no RTM), bit 12 clear. The value at reset.
    public static let dr6Writable: UInt64 = 0xe00f
    public static let dr6Fixed: UInt64 = 0xffff_0ff0
    /// DR7: L0/G0 ... L3/G3 (bits 0-7), LE/GE (8, 9), GD (13), R/W and LEN of each breakpoint
    /// (16-31). Bit 10 reads as 1 (the value at reset); bits 11, 12, 14 and 15 read as 0.
    public static let dr7Writable: UInt64 = 0xffff_23ff
    public static let dr7Fixed: UInt64 = 0x400
    public static let dr7GD: UInt64 = 1 << 13
    /// The RFLAGS bits that make the step loop take its debug path.
    static let stepFlags: UInt64 = X86SystemBits.flagTF | X86SystemBits.flagRF
}

extension X86Machine {
    /// `step()` with the debug checks around the instruction (see the file comment). Called
    /// with the interrupt and halt checks done.
    @inline(never)
    func stepDebugging(inhibited: Bool) -> StepOutcome? {
        let flags = cpu.rflags
        // Only the instruction's own accesses are traps, not the frames of the events delivered here.
        debugTrapHits = 0
        defer { debugTrapHits = 0 }
        if flags & X86SystemBits.flagRF == 0 && cpu.instructionBreakpoints != 0 {
            let hits = instructionBreakpointHits()
            if hits != 0 {
                cpu.interruptShadow = false  // the handler starts afresh
                return deliverDebugException(hits) ? nil : .shutdown
            }
        }
        cpu.interruptShadow = false
        cpu.rflags &= ~X86SystemBits.flagRF
        let deferred = cpu.deferredDebugTraps
        if deferred != 0 { cpu.deferredDebugTraps = 0 }
        beginInstruction()
        let start = cpu.rip
        let insn: DecodedInstruction
        do {
            insn = try fetchInstruction()
            try execute(insn)
            commitAccesses()
            instructionsRetired &+= 1
        } catch {
            switch error {
            case .fault(let fault):
                commitAccesses()
                if !raise(fault) { return .shutdown }
                return afterInstruction()
            case .stop(.needsHypervisor(let exit)):
                // The instruction runs again from the start: as if it had not begun.
                cpu.interruptShadow = inhibited
                cpu.rflags |= flags & X86SystemBits.flagRF
                cpu.deferredDebugTraps = deferred
                return .needsHypervisor(exit)
            case .stop(.retryLocked):
                cpu.interruptShadow = inhibited
                cpu.rflags |= flags & X86SystemBits.flagRF
                cpu.deferredDebugTraps = deferred
                return nil
            }
        }
        var traps = deferred | debugTrapHits
        if flags & X86SystemBits.flagTF != 0 && !softwareInterruptTaken(insn, from: start) {
            traps |= X86DebugBits.dr6BS
        }
        if traps != 0 {
            if cpu.interruptShadow && insn.operation != .sti {
                cpu.deferredDebugTraps = traps  // MOV SS / POP SS: after the next instruction
            } else if !deliverDebugException(traps) {
                return .shutdown
            }
        }
        return afterInstruction()
    }

    /// True when `insn` (at `start`) delivered a software interrupt: no single-step trap follows.
    private func softwareInterruptTaken(_ insn: DecodedInstruction, from start: UInt64) -> Bool {
        switch insn.operation {
        case .int, .int3, .int1: return true
        case .into: return cpu.rip != (start &+ UInt64(insn.length)) & instructionPointerMask
        default: return false
        }
    }

    /// B0-B3 for the enabled instruction breakpoints at CS:RIP.
    func instructionBreakpointHits() -> UInt64 {
        var linear = cpu.rip
        if cpu.codeMode != .bits64 { linear = (cpu.segments[X86CPU.cs].base &+ linear) & 0xffff_ffff }
        var hits: UInt64 = 0
        for n in 0..<4 where cpu.instructionBreakpoints & (1 << n) != 0 && cpu.dr[n] == linear {
            hits |= 1 << UInt64(n)
        }
        return hits
    }

    /// The bytes breakpoint `n` covers: DR7's LEN field (00: 1, 01: 2, 10: 8, 11: 4).
    private func breakpointLength(_ n: Int) -> UInt64 {
        switch (cpu.dr[7] >> (18 + 4 * UInt64(n))) & 3 {
        case 0: return 1
        case 1: return 2
        case 2: return 8
        default: return 4
        }
    }

    /// True when `[address, address + size)` overlaps breakpoint `n`'s range (its address
    /// aligned down to its length).
    private func breakpointCovers(_ n: Int, _ address: UInt64, size: Int) -> Bool {
        let length = breakpointLength(n)
        let start = cpu.dr[n] & ~(length - 1)
        return address &- start < length || start &- address < UInt64(size)
    }

    /// Notes the data breakpoints a `size`-byte access at `linear` meets: one test when none is
    /// enabled. Every data access by an instruction goes through here (`readLinear`,
    /// `writeLinear`, the locked accesses).
    @inline(__always)
    func watchData(_ linear: UInt64, size: Int, write: Bool) {
        if cpu.dataBreakpoints != 0 { matchDataBreakpoints(linear, size: size, write: write) }
    }

    @inline(never)
    private func matchDataBreakpoints(_ linear: UInt64, size: Int, write: Bool) {
        for n in 0..<4 where cpu.dataBreakpoints & (1 << n) != 0 {
            let readsToo = (cpu.dr[7] >> (16 + 4 * UInt64(n))) & 3 == 3
            if (write || readsToo) && breakpointCovers(n, linear, size: size) { debugTrapHits |= 1 << UInt64(n) }
        }
    }

    /// Notes the I/O breakpoints a `size`-byte access to `port` meets (they exist only while
    /// CR4.DE = 1).
    func watchPort(_ port: UInt16, size: Int) {
        guard cpu.ioBreakpoints != 0, cpu.cr4 & X86SystemBits.cr4DE != 0 else { return }
        for n in 0..<4 where cpu.ioBreakpoints & (1 << n) != 0 && breakpointCovers(n, UInt64(port), size: size) {
            debugTrapHits |= 1 << UInt64(n)
        }
    }

    /// Sets `conditions` in DR6 (its other bits stay), clears DR7.GD so the handler may use the
    /// debug registers, and delivers #DB with the current RIP and RFLAGS. False on shutdown.
    func deliverDebugException(_ conditions: UInt64) -> Bool {
        cpu.dr[6] |= conditions
        cpu.dr[7] &= ~X86DebugBits.dr7GD
        do {
            try deliver(vector: X86Fault.debug, errorCode: nil, source: .exception, returnRIP: cpu.rip)
            cpu.halted = false
            return true
        } catch {
            // #DB is benign: a fault while delivering it is delivered instead.
            guard case .fault(let second) = error else { isShutdown = true; return false }
            return raise(second)
        }
    }
}
