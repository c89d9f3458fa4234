// Far CALL and JMP through a 64-bit call gate in IA-32e mode (Intel SDM Vol. 3A 5.8.3.1 and
// 5.8.5, the CALL and JMP pages): how 32-bit code in compatibility mode (and 64-bit code) calls
// into a 64-bit kernel. The gate is a 16-byte system descriptor whose upper half must have type
// 0; its target must be a present 64-bit code segment with DPL ≤ CPL. CALL to a more privileged
// non-conforming segment switches to RSPn from the TSS with a null SS (RPL = the new CPL) and
// pushes SS, RSP, CS and RIP as 8-byte values (no parameters are copied in IA-32e mode); otherwise
// CS and RIP are pushed, 8 bytes each. JMP never changes privilege. RET far (REX.W) comes back.
//
// Every descriptor and TSS field is guest memory read through descriptorAddress / readSystem /
// readTSS, which bounds-check the tables; bad values raise #GP / #NP / #TS / #SS, never a trap.

import VisorCore

extension X86Machine {
    /// Far CALL or JMP through the call gate `selector` (`d`: the gate's low 8 bytes) in IA-32e mode.
    func farTransferThroughCallGate(selector: UInt16, descriptor d: X86Descriptor, isCall: Bool,
                                    next: UInt64) throws(X86Interruption) {
        let gateError = UInt32(selector & 0xfffc)
        guard d.dpl >= cpu.cpl, d.dpl >= UInt8(selector & 3) else { throw .fault(.gp(gateError)) }
        guard d.present else { throw .fault(.np(gateError)) }
        let address = try descriptorAddress(selector, width: 16, error: .gp(gateError))
        let high = try readSystem(address &+ 8, size: 8)
        guard (high >> 40) & 0x1f == 0 else { throw .fault(.gp(gateError)) }
        let offset = (d.raw & 0xffff) | ((d.raw >> 32) & 0xffff_0000) | ((high & 0xffff_ffff) << 32)

        let csSelector = UInt16(truncatingIfNeeded: d.raw >> 16)
        guard csSelector & 0xfffc != 0 else { throw .fault(.gp(0)) }
        let csError = UInt32(csSelector & 0xfffc)
        let c = try readDescriptor(csSelector)
        guard c.isCode, c.dpl <= cpu.cpl else { throw .fault(.gp(csError)) }
        if !isCall && !c.conforming { guard c.dpl == cpu.cpl else { throw .fault(.gp(csError)) } }
        guard c.present else { throw .fault(.np(csError)) }
        guard c.longMode, !c.defaultSize32 else { throw .fault(.gp(csError)) }
        guard Self.isCanonical(offset) else { throw .fault(.gp(0)) }
        let newCPL = isCall && !c.conforming ? c.dpl : cpu.cpl
        let cs = c.segment(selector: (csSelector & 0xfffc) | UInt16(newCPL))

        guard isCall else {
            try markAccessed(csSelector, c)
            cpu.segments[X86CPU.cs] = cs
            cpu.rip = offset
            return
        }
        let oldCS = UInt64(cpu.segments[X86CPU.cs].selector)
        let oldSS = UInt64(cpu.segments[X86CPU.ss].selector)
        let oldRSP = cpu.gpr[X86CPU.rsp]
        let inner = newCPL < cpu.cpl
        var top = oldRSP
        let frame: [UInt64]
        if inner {
            top = try readTSS(offset: 4 + 8 * UInt64(newCPL), size: 8, ext: 0)
            guard Self.isCanonical(top) else { throw .fault(.ss(0)) }
            frame = [oldSS, oldRSP, oldCS, next]
        } else {
            if cpu.codeMode != .bits64 { top &= 0xffff_ffff }  // compatibility mode: ESP
            frame = [oldCS, next]
        }
        // Writes go to the new stack at the new privilege (a user stack for a same-level call).
        let sp = try writeFrame(frame, size: 8, top: top, ss: cpu.segments[X86CPU.ss], width: 8,
                                user: newCPL == 3, ext: 0)
        // Commit.
        try markAccessed(csSelector, c)
        if inner {
            var null = Self.nullSegment(UInt16(newCPL))
            null.dpl = newCPL
            cpu.segments[X86CPU.ss] = null
        }
        cpu.gpr[X86CPU.rsp] = sp
        cpu.cpl = newCPL
        cpu.segments[X86CPU.cs] = cs
        cpu.rip = offset
    }
}
