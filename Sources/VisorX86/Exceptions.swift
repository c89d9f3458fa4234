// Exception and interrupt delivery (Intel SDM Vol. 3A ch. 6): through the IVT in real mode,
// 8-byte gates in protected mode, 16-byte gates in IA-32e mode; privilege changes with the
// stack from the TSS, IST stacks, error codes, and the double-fault / triple-fault rules.
//
// Task gates in a protected-mode IDT switch tasks (TaskSwitch.swift); in IA-32e mode they are
// #GP(vector), as the SDM says. Simplifications (documented): virtual-8086 mode is not
// supported; SMI does not exist. An NMI (`injectNMI`) is delivered through vector 2 like an
// external interrupt, whatever IF says, and blocks further NMIs until the next IRET; one arriving
// meanwhile is held pending. A fault-class exception pushes RFLAGS with RF = 1, so the
// instruction it returns to does not hit an instruction breakpoint again; #DB traps and
// instruction breakpoints are in `Debug.swift`. The handler runs with TF, RF (and IF through an
// interrupt gate) clear. Delivery writes the whole frame before changing any register, so a fault during
// delivery leaves the interrupted state intact for the next event.

import VisorCore

/// Where an event comes from: it decides the DPL check, the EXT bit and what RIP is pushed.
public enum X86EventSource: Sendable {
    /// A fault or trap raised by the CPU (the EXT bit is set in error codes of nested faults).
    case exception
    /// INT n, INT3, INTO: gate DPL must be ≥ CPL, or #GP(vector * 8 + 2).
    case software
    /// An external interrupt from a device (`injectInterrupt`).
    case external
    /// INT1 (ICEBP): like an exception, but pushes the next instruction's address.
    case icebp
}

extension X86Machine {
    /// SDM Table 6-4/6-5 classes.
    private enum FaultClass { case benign, contributory, pageFault, doubleFault }
    private static func faultClass(_ vector: UInt8) -> FaultClass {
        switch vector {
        case 0, 10, 11, 12, 13: return .contributory
        case 14: return .pageFault
        case 8: return .doubleFault
        default: return .benign
        }
    }

    // MARK: Raising and injecting

    /// Vectors whose exceptions are faults (SDM Table 6-1): their frames push RF = 1. #DB raised
    /// here is the general-detect fault; instruction breakpoints go through `deliverDebugException`.
    private static func isFaultClass(_ vector: UInt8) -> Bool {
        switch vector {
        case 0, 1, 5, 6, 7, 10, 11, 12, 13, 14, 16, 17, 19, 20, 21: return true
        default: return false
        }
    }

    /// Delivers exception `fault` raised by the instruction at RIP (RIP is pushed), escalating to
    /// #DF when delivery itself faults as Table 6-5 says, and to shutdown (triple fault) when
    /// delivering #DF faults. Returns false on shutdown (`isShutdown` is then set).
    @discardableResult
    public func raise(_ fault: X86Fault) -> Bool {
        var current = fault
        for _ in 0..<8 {
            if current.vector == X86Fault.pageFault { cpu.cr2 = current.faultingAddress ?? 0 }
            if Self.isFaultClass(current.vector) { cpu.rflags |= X86SystemBits.flagRF }
            if current.vector == X86Fault.debug { cpu.dr[7] &= ~X86DebugBits.dr7GD }
            do {
                try deliver(vector: current.vector, errorCode: current.errorCode, source: .exception,
                            returnRIP: cpu.rip)
                cpu.halted = false
                return true
            } catch {
                guard case .fault(let second) = error, current.vector != X86Fault.doubleFault else { break }
                let first = Self.faultClass(current.vector), next = Self.faultClass(second.vector)
                if (first == .contributory && next == .contributory)
                    || (first == .pageFault && (next == .contributory || next == .pageFault)) {
                    current = X86Fault(vector: X86Fault.doubleFault, errorCode: 0)
                } else {
                    current = second
                }
            }
        }
        isShutdown = true
        cpu.halted = false
        return false
    }

    /// Queues external interrupt `vector` (a device model's interrupt controller calls this). It is
    /// delivered before the next instruction at which IF = 1 and no interrupt shadow is active,
    /// and wakes a halted CPU. Returns false (and changes nothing) if another is still pending.
    @discardableResult
    public func injectInterrupt(vector: UInt8) -> Bool {
        guard pendingInterrupt == nil else { return false }
        pendingInterrupt = vector
        return true
    }

    /// Queues a non-maskable interrupt. It is delivered (vector 2) before the next instruction
    /// at which NMIs are not blocked and no interrupt shadow is active, whatever IF says, and
    /// wakes a halted CPU. While one is pending another collapses into it.
    public func injectNMI() {
        nmiPending = true
    }

    /// Delivers the pending NMI and blocks NMIs until the next IRET. Returns false on shutdown.
    func deliverPendingNMI() -> Bool {
        nmiPending = false
        nmiBlocked = true
        do {
            try deliver(vector: X86Fault.nmi, errorCode: nil, source: .external, returnRIP: cpu.rip)
            cpu.halted = false
            return true
        } catch {
            guard case .fault(let f) = error else { isShutdown = true; return false }
            return raise(f)
        }
    }

    /// Withdraws a pending external interrupt (the controller re-prioritised).
    public func cancelPendingInterrupt() -> UInt8? {
        defer { pendingInterrupt = nil }
        return pendingInterrupt
    }

    /// True when an external interrupt can be taken now: IF = 1 and no STI / MOV SS shadow.
    public var interruptWindowOpen: Bool {
        cpu.rflags & X86SystemBits.flagIF != 0 && !cpu.interruptShadow
    }

    /// Delivers the pending external interrupt if the window is open. Returns false on shutdown.
    func deliverPendingInterrupt() -> Bool {
        guard let vector = pendingInterrupt, interruptWindowOpen else { return true }
        pendingInterrupt = nil
        do {
            try deliver(vector: vector, errorCode: nil, source: .external, returnRIP: cpu.rip)
            cpu.halted = false
            return true
        } catch {
            guard case .fault(let f) = error else { isShutdown = true; return false }
            return raise(f)
        }
    }

    // MARK: Delivery

    /// Delivers `vector` through the IDT (or the IVT in real mode), pushing `returnRIP`.
    public func deliver(vector: UInt8, errorCode: UInt32?, source: X86EventSource,
                        returnRIP: UInt64) throws(X86Interruption) {
        // Taking an event serializes: the handler's code must be what other vCPUs last wrote.
        serialize()
        if cpu.cr0 & X86.cr0ProtectionEnable == 0 {
            try deliverReal(vector: vector, returnRIP: returnRIP)
        } else if cpu.longModeActive {
            try deliverLong(vector: vector, errorCode: errorCode, source: source, returnRIP: returnRIP)
        } else {
            try deliverProtected(vector: vector, errorCode: errorCode, source: source, returnRIP: returnRIP)
        }
    }

    private func deliverReal(vector: UInt8, returnRIP: UInt64) throws(X86Interruption) {
        let entry = UInt64(vector) * 4
        guard entry + 3 <= UInt64(cpu.idtr.limit) else { throw .fault(.gp(UInt32(vector) * 8 + 2)) }
        let ip = try readSystem(cpu.idtr.base &+ entry, size: 2)
        let cs = UInt16(try readSystem(cpu.idtr.base &+ entry &+ 2, size: 2))
        let saved = cpu.gpr[X86CPU.rsp]
        do {
            try push(cpu.rflags & 0xffff, size: 2)
            try push(UInt64(cpu.segments[X86CPU.cs].selector), size: 2)
            try push(returnRIP & 0xffff, size: 2)
        } catch {
            cpu.gpr[X86CPU.rsp] = saved
            throw error
        }
        cpu.rflags &= ~(X86SystemBits.flagIF | X86SystemBits.flagTF | X86SystemBits.flagAC | X86SystemBits.flagRF)
        cpu.segments[X86CPU.cs] = realModeCodeSegment(cs)
        cpu.rip = ip
    }

    /// Reads a field of the current TSS; #TS(TR) if it lies beyond the TSS limit.
    func readTSS(offset: UInt64, size: Int, ext: UInt32) throws(X86Interruption) -> UInt64 {
        guard cpu.tr.present, offset + UInt64(size) - 1 <= UInt64(cpu.tr.limit) else {
            throw .fault(.ts(UInt32(cpu.tr.selector & 0xfffc) | ext))
        }
        return try readSystem(cpu.tr.base &+ offset, size: size)
    }

    /// The interrupt handler's code segment named by a gate: a present code segment with DPL ≤ CPL.
    private func gateCodeSegment(_ selector: UInt16, ext: UInt32) throws(X86Interruption) -> X86Descriptor {
        guard selector & 0xfffc != 0 else { throw .fault(.gp(ext)) }
        let errorCode = UInt32(selector & 0xfffc) | ext
        let d = try readDescriptor(selector, error: .gp(errorCode))
        guard d.isCode, d.dpl <= cpu.cpl else { throw .fault(.gp(errorCode)) }
        guard d.present else { throw .fault(.np(errorCode)) }
        return d
    }

    /// Writes `values` as pushes (first value at the highest address) below `top` in the stack
    /// segment `ss` with `width`-byte stack pointer; returns the new stack pointer. Registers
    /// are not touched.
    func writeFrame(_ values: [UInt64], size: Int, top: UInt64, ss: SegmentRegister, width: UInt8,
                            user: Bool, ext: UInt32) throws(X86Interruption) -> UInt64 {
        var sp = top
        for v in values {
            sp = (sp &- UInt64(size)) & Self.mask(width)
            let linear: UInt64
            if cpu.longModeActive && width == 8 {
                linear = sp
                guard Self.isCanonical(linear), Self.isCanonical(linear &+ UInt64(size - 1)) else {
                    throw .fault(.ss(ext))
                }
            } else {
                let last = sp &+ UInt64(size - 1)
                let inLimit: Bool
                if ss.type & 0xc == 0x4 {
                    inLimit = sp > UInt64(ss.limit) && last <= (ss.defaultSize32 ? 0xffff_ffff : 0xffff)
                } else {
                    inLimit = last <= UInt64(ss.limit)
                }
                guard inLimit else { throw .fault(.ss(ext | UInt32(ss.selector & 0xfffc))) }
                linear = (ss.base &+ sp) & 0xffff_ffff
            }
            try writeLinear(linear, size: size, value: v, user: user)
        }
        return sp
    }

    private func deliverProtected(vector: UInt8, errorCode: UInt32?, source: X86EventSource,
                                  returnRIP: UInt64) throws(X86Interruption) {
        let ext: UInt32 = source == .software ? 0 : 1
        let gateError = UInt32(vector) * 8 + 2 + ext
        let entry = UInt64(vector) * 8
        guard entry + 7 <= UInt64(cpu.idtr.limit) else { throw .fault(.gp(gateError)) }
        let gate = try readSystem(cpu.idtr.base &+ entry, size: 8)
        let type = UInt8((gate >> 40) & 0x1f)
        guard [0x05, 0x06, 0x07, 0x0e, 0x0f].contains(type) else { throw .fault(.gp(gateError)) }
        let gateDPL = UInt8((gate >> 45) & 3)
        if source == .software && gateDPL < cpu.cpl { throw .fault(.gp(UInt32(vector) * 8 + 2)) }
        guard gate & (1 << 47) != 0 else { throw .fault(.np(gateError)) }
        if type == 0x05 {
            try deliverThroughTaskGate(gate, errorCode: errorCode, ext: ext, returnRIP: returnRIP)
            return
        }
        let is32 = type & 0x8 != 0
        let isTrap = type & 1 != 0
        let selector = UInt16((gate >> 16) & 0xffff)
        var offset = (gate & 0xffff) | ((gate >> 32) & 0xffff_0000)
        if !is32 { offset &= 0xffff }
        let d = try gateCodeSegment(selector, ext: ext)
        let size = is32 ? 4 : 2
        let oldCS = UInt64(cpu.segments[X86CPU.cs].selector)
        let flags = cpu.rflags
        var frame: [UInt64]
        let newCPL = d.conforming ? cpu.cpl : d.dpl
        var newSS = cpu.segments[X86CPU.ss]
        let top: UInt64
        let width: UInt8
        if newCPL < cpu.cpl {
            // Inner privilege: the new stack comes from the TSS.
            let tssType = cpu.tr.type & 0x9
            let (sp, ssSelector): (UInt64, UInt16)
            if tssType == 0x9 {
                sp = try readTSS(offset: 4 + 8 * UInt64(newCPL), size: 4, ext: ext)
                ssSelector = UInt16(try readTSS(offset: 8 + 8 * UInt64(newCPL), size: 2, ext: ext))
            } else {
                sp = try readTSS(offset: 2 + 4 * UInt64(newCPL), size: 2, ext: ext)
                ssSelector = UInt16(try readTSS(offset: 4 + 4 * UInt64(newCPL), size: 2, ext: ext))
            }
            let ssError = UInt32(ssSelector & 0xfffc) | ext
            guard ssSelector & 0xfffc != 0 else { throw .fault(.ts(ext)) }
            let s = try readDescriptor(ssSelector, error: .ts(ssError))
            guard UInt8(ssSelector & 3) == newCPL, s.dpl == newCPL, s.isData, s.readableOrWritable else {
                throw .fault(.ts(ssError))
            }
            guard s.present else { throw .fault(.ss(ssError)) }
            newSS = s.segment(selector: ssSelector)
            width = newSS.defaultSize32 ? 4 : 2
            top = sp & Self.mask(width)
            frame = [UInt64(cpu.segments[X86CPU.ss].selector), cpu.gpr[X86CPU.rsp] & Self.mask(UInt8(size)),
                     flags, oldCS, returnRIP]
        } else {
            width = stackAddressSize
            top = cpu.gpr[X86CPU.rsp] & Self.mask(width)
            frame = [flags, oldCS, returnRIP]
        }
        if let errorCode { frame.append(UInt64(errorCode)) }
        let sp = try writeFrame(frame.map { $0 & Self.mask(UInt8(size)) }, size: size, top: top, ss: newSS,
                                width: width, user: newCPL == 3, ext: ext)
        // Commit.
        try markAccessed(selector, d)
        if newCPL < cpu.cpl {
            cpu.segments[X86CPU.ss] = newSS
            cpu.gpr[X86CPU.rsp] = sp
        } else {
            writeRegister(4, size: width, sp)
        }
        cpu.cpl = newCPL
        cpu.segments[X86CPU.cs] = d.segment(selector: (selector & 0xfffc) | UInt16(newCPL))
        cpu.rip = offset
        var cleared = X86SystemBits.flagTF | X86SystemBits.flagNT | X86SystemBits.flagRF | X86SystemBits.flagVM
        if !isTrap { cleared |= X86SystemBits.flagIF }
        cpu.rflags &= ~cleared
    }

    private func deliverLong(vector: UInt8, errorCode: UInt32?, source: X86EventSource,
                             returnRIP: UInt64) throws(X86Interruption) {
        let ext: UInt32 = source == .software ? 0 : 1
        let gateError = UInt32(vector) * 8 + 2 + ext
        let entry = UInt64(vector) * 16
        guard entry + 15 <= UInt64(cpu.idtr.limit) else { throw .fault(.gp(gateError)) }
        let low = try readSystem(cpu.idtr.base &+ entry, size: 8)
        let high = try readSystem(cpu.idtr.base &+ entry &+ 8, size: 8)
        let type = UInt8((low >> 40) & 0x1f)
        guard type == 0x0e || type == 0x0f else { throw .fault(.gp(gateError)) }
        let gateDPL = UInt8((low >> 45) & 3)
        if source == .software && gateDPL < cpu.cpl { throw .fault(.gp(UInt32(vector) * 8 + 2)) }
        guard low & (1 << 47) != 0 else { throw .fault(.np(gateError)) }
        let isTrap = type == 0x0f
        let selector = UInt16((low >> 16) & 0xffff)
        let offset = (low & 0xffff) | ((low >> 32) & 0xffff_0000) | ((high & 0xffff_ffff) << 32)
        let ist = (low >> 32) & 7
        let d = try gateCodeSegment(selector, ext: ext)
        guard d.longMode, !d.defaultSize32 else { throw .fault(.gp(UInt32(selector & 0xfffc) | ext)) }
        guard Self.isCanonical(offset) else { throw .fault(.gp(ext)) }
        let newCPL = d.conforming ? cpu.cpl : d.dpl
        var rsp = cpu.gpr[X86CPU.rsp]
        if ist != 0 {
            rsp = try readTSS(offset: 0x24 + 8 * (ist - 1), size: 8, ext: ext)
        } else if newCPL < cpu.cpl {
            rsp = try readTSS(offset: 4 + 8 * UInt64(newCPL), size: 8, ext: ext)
        }
        if cpu.codeMode != .bits64 && ist == 0 && newCPL == cpu.cpl { rsp &= 0xffff_ffff }
        rsp &= ~0xf
        var frame = [UInt64(cpu.segments[X86CPU.ss].selector), cpu.gpr[X86CPU.rsp], cpu.rflags,
                     UInt64(cpu.segments[X86CPU.cs].selector), returnRIP]
        if let errorCode { frame.append(UInt64(errorCode)) }
        let sp = try writeFrame(frame, size: 8, top: rsp, ss: cpu.segments[X86CPU.ss], width: 8,
                                user: newCPL == 3, ext: ext)
        // Commit.
        try markAccessed(selector, d)
        if newCPL < cpu.cpl {
            var null = Self.nullSegment(UInt16(newCPL))
            null.dpl = newCPL
            cpu.segments[X86CPU.ss] = null
        }
        cpu.gpr[X86CPU.rsp] = sp
        cpu.cpl = newCPL
        cpu.segments[X86CPU.cs] = d.segment(selector: (selector & 0xfffc) | UInt16(newCPL))
        cpu.rip = offset
        var cleared = X86SystemBits.flagTF | X86SystemBits.flagNT | X86SystemBits.flagRF | X86SystemBits.flagVM
        if !isTrap { cleared |= X86SystemBits.flagIF }
        cpu.rflags &= ~cleared
    }
}
