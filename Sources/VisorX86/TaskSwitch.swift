// Hardware task switching in 32-bit protected mode (Intel SDM Vol. 3A ch. 8, "Task
// Management", and the JMP / CALL / IRET / INT n pages): far JMP or CALL to a TSS descriptor or
// a task gate, interrupts and exceptions through a task gate in the IDT, and IRET with
// EFLAGS.NT = 1 back along the previous-task link.
//
// What a switch does, in the SDM's order: checks that cannot change anything (privilege,
// present, the new TSS's limit ≥ 67h and busy bit, both TSSes readable/writable); then the
// commit: the old task's dynamic fields (EIP, EFLAGS, general registers, segment selectors) are
// written to its TSS, busy bits and the link field are updated, TR, CR0.TS, CR3 (with paging),
// LDTR, the registers and EFLAGS are loaded from the new TSS; last, the segment registers'
// descriptors are checked and loaded, so an error there is raised in the new task's context
// (#TS / #NP / #SS with the offending selector), as on hardware.
//
// Everything the switch reads (descriptors, both TSSes) is guest memory read through
// readSystem / descriptorAddress, which bounds-check the tables and never trap in the host.
//
// Not supported (documented): 16-bit TSSes (type 1/3) as switch targets raise #GP(selector)
// (#TS for IRET); a new task with EFLAGS.VM = 1 raises #TS(selector) before the commit
// (virtual-8086 mode does not exist here); the TSS's debug-trap bit T is ignored. In IA-32e mode
// there are no task switches: far JMP/CALL to a TSS or task gate is #GP(selector), a task gate
// in the IDT is #GP(vector), IRET with NT = 1 is #GP(0) (the callers check).

import VisorCore

/// Why a task switch happens: it decides the busy-bit, NT and link rules (SDM Table 8-2).
enum TaskSwitchReason {
    case jump, call, iret, gate
}

/// Offsets in a 32-bit TSS (SDM Figure 8-2).
private enum TSS32 {
    static let link: UInt64 = 0x00, cr3: UInt64 = 0x1c, eip: UInt64 = 0x20, eflags: UInt64 = 0x24
    static let eax: UInt64 = 0x28, es: UInt64 = 0x48, ldt: UInt64 = 0x60
    /// The smallest limit of a 32-bit TSS that may be switched to (SDM 8.2.2).
    static let minimumLimit: UInt32 = 0x67
    /// The last byte of the dynamic fields the old task's state is saved into.
    static let lastDynamicByte: UInt64 = 0x5f
}

extension X86Machine {
    // MARK: Entry points

    /// Far JMP or CALL to a system descriptor in 32-bit protected mode: a 32-bit TSS or a task
    /// gate switches tasks; anything else (call gates, LDTs, 16-bit TSSes) is #GP(selector).
    func farTransferToTask(selector: UInt16, descriptor d: X86Descriptor, isCall: Bool,
                           next: UInt64) throws(X86Interruption) {
        let errorCode = UInt32(selector & 0xfffc)
        let rpl = UInt8(selector & 3)
        let reason: TaskSwitchReason = isCall ? .call : .jump
        switch d.type {
        case 0x1, 0x3, 0x9, 0xb:  // TSS descriptor: its DPL must allow CPL and RPL
            guard d.dpl >= cpu.cpl, d.dpl >= rpl else { throw .fault(.gp(errorCode)) }
            try switchTask(to: selector, descriptor: d, reason: reason, returnRIP: next, ext: 0)
        case 0x5:  // task gate: the gate's DPL is checked, not the TSS's
            guard d.dpl >= cpu.cpl, d.dpl >= rpl else { throw .fault(.gp(errorCode)) }
            guard d.present else { throw .fault(.np(errorCode)) }
            let tss = UInt16(truncatingIfNeeded: d.raw >> 16)
            let (tssDescriptor, _) = try taskGateTarget(tss, ext: 0)
            try switchTask(to: tss, descriptor: tssDescriptor, reason: reason, returnRIP: next, ext: 0)
        default:
            throw .fault(.gp(errorCode))  // call gates and the rest: not supported
        }
    }

    /// The TSS a task gate names: in the GDT (#GP(TSS selector) otherwise).
    private func taskGateTarget(_ tss: UInt16, ext: UInt32) throws(X86Interruption) -> (X86Descriptor, UInt32) {
        let errorCode = UInt32(tss & 0xfffc) | ext
        guard tss & 4 == 0, tss & 0xfffc != 0 else { throw .fault(.gp(errorCode)) }
        return (try readDescriptor(tss, error: .gp(errorCode)), errorCode)
    }

    /// An interrupt or exception through a task gate in a protected-mode IDT (`gate` is the raw
    /// 8-byte gate, already checked for DPL and presence): switches to the gate's task and
    /// pushes `errorCode` on the new task's stack.
    func deliverThroughTaskGate(_ gate: UInt64, errorCode: UInt32?, ext: UInt32,
                                returnRIP: UInt64) throws(X86Interruption) {
        let tss = UInt16(truncatingIfNeeded: gate >> 16)
        let (d, _) = try taskGateTarget(tss, ext: ext)
        try switchTask(to: tss, descriptor: d, reason: .gate, returnRIP: returnRIP, ext: ext)
        if let errorCode {
            try push(UInt64(errorCode), size: cpu.tr.type & 8 != 0 ? 4 : 2)
        }
    }

    /// IRET with EFLAGS.NT = 1 outside IA-32e mode: back to the task in the current TSS's link field,
    /// which must name a busy 32-bit TSS in the GDT (#TS(link) otherwise).
    func returnFromNestedTask(next: UInt64) throws(X86Interruption) {
        let link = UInt16(truncatingIfNeeded: try readTSS(offset: TSS32.link, size: 2, ext: 0))
        let errorCode = UInt32(link & 0xfffc)
        guard link & 4 == 0, link & 0xfffc != 0 else { throw .fault(.ts(errorCode)) }
        let d = try readDescriptor(link, error: .ts(errorCode))
        try switchTask(to: link, descriptor: d, reason: .iret, returnRIP: next, ext: 0)
    }

    // MARK: The switch

    /// Switches from the current task to the 32-bit TSS `selector` (descriptor `d`, from the GDT).
    func switchTask(to selector: UInt16, descriptor d: X86Descriptor, reason: TaskSwitchReason,
                    returnRIP: UInt64, ext: UInt32) throws(X86Interruption) {
        let errorCode = UInt32(selector & 0xfffc) | ext
        // Checks before the commit: nothing has changed if one fails.
        guard selector & 4 == 0, !d.isCodeOrData else {
            throw .fault(reason == .iret ? .ts(errorCode) : .gp(errorCode))
        }
        if reason == .iret {
            guard d.type == 0xb else { throw .fault(.ts(errorCode)) }  // a busy 32-bit TSS
        } else {
            guard d.type == 0x9 else { throw .fault(.gp(errorCode)) }  // an available 32-bit TSS
        }
        guard d.present else { throw .fault(.np(errorCode)) }
        guard d.limit >= TSS32.minimumLimit else { throw .fault(.ts(errorCode)) }
        let oldTR = cpu.tr
        let oldError = UInt32(oldTR.selector & 0xfffc) | ext
        guard oldTR.present, !oldTR.isCodeOrData, oldTR.type & 0x9 == 0x9,
              UInt64(oldTR.limit) >= TSS32.lastDynamicByte else { throw .fault(.ts(oldError)) }

        // The new task's state, all read before anything is written.
        let newBase = d.base
        var words = [UInt32](repeating: 0, count: Int(TSS32.minimumLimit + 1) / 4)
        for i in words.indices {
            words[i] = UInt32(truncatingIfNeeded: try readSystem(newBase &+ UInt64(4 * i), size: 4))
        }
        func field(_ offset: UInt64) -> UInt32 { words[Int(offset / 4)] }
        var newFlags = UInt64(field(TSS32.eflags))
        guard newFlags & X86SystemBits.flagVM == 0 else { throw .fault(.ts(errorCode)) }
        // Every page the commit writes must be there first (SDM 8.3, step 5).
        let newAddress = try descriptorAddress(selector, error: .gp(errorCode))
        let oldAddress = try descriptorAddress(oldTR.selector, error: .ts(oldError))
        for linear in [oldTR.base &+ TSS32.eip, oldTR.base &+ TSS32.lastDynamicByte, newBase, newAddress, oldAddress] {
            _ = try translate(linear & 0xffff_ffff, .write, user: false)
        }

        // Commit: the old task.
        if reason == .jump || reason == .iret {
            let type = try readSystem(oldAddress &+ 5, size: 1)
            try writeSystem(oldAddress &+ 5, size: 1, value: type & ~2)
        }
        var savedFlags = cpu.rflags & 0xffff_ffff
        if reason == .iret { savedFlags &= ~X86SystemBits.flagNT }
        let old = oldTR.base
        try writeSystem(old &+ TSS32.eip, size: 4, value: returnRIP & 0xffff_ffff)
        try writeSystem(old &+ TSS32.eflags, size: 4, value: savedFlags)
        for r in 0..<8 {
            try writeSystem(old &+ TSS32.eax &+ UInt64(4 * r), size: 4, value: cpu.gpr[r] & 0xffff_ffff)
        }
        for s in 0..<6 {
            try writeSystem(old &+ TSS32.es &+ UInt64(4 * s), size: 2, value: UInt64(cpu.segments[s].selector))
        }
        // The new task.
        if reason == .call || reason == .gate {
            try writeSystem(newBase &+ TSS32.link, size: 2, value: UInt64(oldTR.selector))
            newFlags |= X86SystemBits.flagNT
        }
        if reason != .iret {
            try writeSystem(newAddress &+ 5, size: 1, value: (d.raw >> 40) | 2)
        }
        var tr = d.segment(selector: selector)
        tr.type |= 2
        cpu.tr = tr
        cpu.cr0 |= X86SystemBits.cr0TS
        if cpu.cr0 & X86SystemBits.cr0PG != 0 {
            cpu.cr3 = UInt64(field(TSS32.cr3))
            tlb.flush()
        }
        for r in 0..<8 { cpu.gpr[r] = UInt64(field(TSS32.eax + UInt64(4 * r))) }
        cpu.rflags = newFlags | X86.rflagsReserved1
        cpu.rip = UInt64(field(TSS32.eip))
        let selectors = (0..<6).map { UInt16(truncatingIfNeeded: field(TSS32.es + UInt64(4 * $0))) }
        // Selectors first, unusable until their descriptors are checked: a fault below is taken
        // in the new task with these selectors visible (SDM 8.3, step 13).
        for s in 0..<6 where s != X86CPU.cs {
            cpu.segments[s] = Self.nullSegment(selectors[s])
        }
        cpu.segments[X86CPU.cs].selector = selectors[X86CPU.cs]
        let ldt = UInt16(truncatingIfNeeded: field(TSS32.ldt))
        cpu.ldtr = SegmentRegister(selector: ldt, base: 0, limit: 0, type: 2, isCodeOrData: false, present: false)
        cpu.cpl = UInt8(selectors[X86CPU.cs] & 3)
        try loadTaskLDT(ldt, ext: ext)
        try loadTaskCode(selectors[X86CPU.cs], ext: ext)
        try loadTaskStack(selectors[X86CPU.ss], ext: ext)
        for s in [X86CPU.ds, X86CPU.es, X86CPU.fs, X86CPU.gs] {
            try loadTaskData(s, selectors[s], ext: ext)
        }
        guard cpu.rip <= UInt64(cpu.segments[X86CPU.cs].limit) else { throw .fault(.gp(ext)) }
    }

    // MARK: Loading the new task's segments (errors are #TS(selector) unless said otherwise)

    private func loadTaskLDT(_ selector: UInt16, ext: UInt32) throws(X86Interruption) {
        guard selector & 0xfffc != 0 else { return }
        let errorCode = UInt32(selector & 0xfffc) | ext
        guard selector & 4 == 0 else { throw .fault(.ts(errorCode)) }
        let d = try readDescriptor(selector, error: .ts(errorCode))
        guard !d.isCodeOrData, d.type == 2, d.present else { throw .fault(.ts(errorCode)) }
        cpu.ldtr = d.segment(selector: selector)
    }

    private func loadTaskCode(_ selector: UInt16, ext: UInt32) throws(X86Interruption) {
        let errorCode = UInt32(selector & 0xfffc) | ext
        guard selector & 0xfffc != 0 else { throw .fault(.ts(errorCode)) }
        let d = try readDescriptor(selector, error: .ts(errorCode))
        let rpl = UInt8(selector & 3)
        guard d.isCode, d.conforming ? d.dpl <= rpl : d.dpl == rpl else { throw .fault(.ts(errorCode)) }
        guard d.present else { throw .fault(.np(errorCode)) }
        try markAccessed(selector, d)
        cpu.segments[X86CPU.cs] = d.segment(selector: selector)
    }

    private func loadTaskStack(_ selector: UInt16, ext: UInt32) throws(X86Interruption) {
        let errorCode = UInt32(selector & 0xfffc) | ext
        guard selector & 0xfffc != 0 else { throw .fault(.ts(errorCode)) }
        let d = try readDescriptor(selector, error: .ts(errorCode))
        guard UInt8(selector & 3) == cpu.cpl, d.dpl == cpu.cpl, d.isData, d.readableOrWritable else {
            throw .fault(.ts(errorCode))
        }
        guard d.present else { throw .fault(.ss(errorCode)) }
        try markAccessed(selector, d)
        cpu.segments[X86CPU.ss] = d.segment(selector: selector)
    }

    private func loadTaskData(_ index: Int, _ selector: UInt16, ext: UInt32) throws(X86Interruption) {
        guard selector & 0xfffc != 0 else { return }  // stays null (unusable)
        let errorCode = UInt32(selector & 0xfffc) | ext
        let d = try readDescriptor(selector, error: .ts(errorCode))
        guard d.isCodeOrData, d.isData || d.readableOrWritable else { throw .fault(.ts(errorCode)) }
        if !d.conforming {
            guard UInt8(selector & 3) <= d.dpl, cpu.cpl <= d.dpl else { throw .fault(.ts(errorCode)) }
        }
        guard d.present else { throw .fault(.np(errorCode)) }
        try markAccessed(selector, d)
        cpu.segments[index] = d.segment(selector: selector)
    }
}
