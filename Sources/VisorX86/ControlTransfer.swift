// Far control transfers and software interrupts: INT n / INT3 / INTO / INT1, IRET (real,
// protected and IA-32e mode, same and outer privilege), far JMP / CALL / RET, SYSCALL / SYSRET
// and SYSENTER / SYSEXIT (Intel SDM Vol. 2 instruction pages). Where Intel and AMD differ
// (SYSCALL outside 64-bit mode, SYSENTER/SYSEXIT in IA-32e mode) the CPUID vendor decides.
//
// Far CALL/JMP to a TSS or task gate and IRET with NT = 1 switch tasks in 32-bit protected mode
// (TaskSwitch.swift); in IA-32e mode they are #GP, as the SDM says.
//
// Far CALL/JMP through a 64-bit call gate in IA-32e mode (from 64-bit or compatibility code,
// CALL also to an inner privilege level) are in CallGate.swift.
//
// Not supported (documented): far CALL/JMP through 16- and 32-bit call gates outside IA-32e
// mode and IRET to virtual-8086 mode: both raise #GP. Direct far CALL/JMP change CS at the same
// privilege only (what kernels do to reload CS); RET far and IRET also return to outer
// privilege levels.

import VisorCore
import VisorX86Decode

extension X86Machine {
    func executeControlTransfer(_ insn: DecodedInstruction) throws(X86Interruption) {
        let next = (cpu.rip &+ UInt64(insn.length)) & instructionPointerMask
        switch insn.operation {
        case .int:
            try deliver(vector: UInt8(truncatingIfNeeded: insn.immediate), errorCode: nil, source: .software,
                        returnRIP: next)
        case .int3:
            try deliver(vector: X86Fault.breakpoint, errorCode: nil, source: .software, returnRIP: next)
        case .into:
            guard cpu.codeMode != .bits64 else { throw .fault(.undefined) }
            if cpu.rflags & X86SystemBits.flagOF != 0 {
                try deliver(vector: X86Fault.overflow, errorCode: nil, source: .software, returnRIP: next)
            } else {
                cpu.rip = next
            }
        case .int1:
            try deliver(vector: X86Fault.debug, errorCode: nil, source: .icebp, returnRIP: next)
        case .iret:
            serialize()  // IRET is serializing: see code other vCPUs wrote (SMP.swift)
            nmiBlocked = false  // even if the IRET faults, as the SDM's VM-exit rules imply
            try executeInterruptReturn(insn, next: next)
        case .jmpFar, .callFar:
            try executeFarJumpOrCall(insn, next: next)
        case .retFar:
            try executeFarReturn(insn)
        case .syscall:
            try executeSyscall(next: next)
        case .sysret:
            try executeSysret(insn)
        case .sysenter:
            try executeSysenter()
        case .sysexit:
            try executeSysexit(insn)
        default:
            throw .fault(.undefined)
        }
    }

    // MARK: Stack reads without popping

    /// The `index`-th `size`-byte slot above the stack pointer (not popped).
    private func stackSlot(_ index: Int, size: UInt8, extra: UInt64 = 0) throws(X86Interruption) -> UInt64 {
        let width = stackAddressSize
        let offset = (readRegister(4, size: width) &+ UInt64(index) &* UInt64(size) &+ extra) & Self.mask(width)
        return try readMemory(segment: UInt8(X86CPU.ss), offset: offset, size: Int(size))
    }

    /// Checks a far target offset: canonical for 64-bit code, within the limit otherwise.
    private func checkTarget(_ offset: UInt64, in cs: SegmentRegister) throws(X86Interruption) {
        if cpu.longModeActive && cs.longMode {
            guard Self.isCanonical(offset) else { throw .fault(.gp(0)) }
        } else if protectedMode {
            guard offset <= UInt64(cs.limit) else { throw .fault(.gp(0)) }
        }
    }

    // MARK: IRET

    private func executeInterruptReturn(_ insn: DecodedInstruction, next: UInt64) throws(X86Interruption) {
        let size = insn.operandSize
        let mask = Self.mask(size)
        if !protectedMode {
            let ip = try stackSlot(0, size: size)
            let cs = UInt16(truncatingIfNeeded: try stackSlot(1, size: size))
            let flags = try stackSlot(2, size: size)
            let width = stackAddressSize
            writeRegister(4, size: width, (readRegister(4, size: width) &+ 3 * UInt64(size)) & Self.mask(width))
            var writable = X86SystemBits.flagsWritable & ~(X86SystemBits.flagVM | X86SystemBits.flagVIF | X86SystemBits.flagVIP)
            writable &= mask
            cpu.rflags = (cpu.rflags & ~writable) | (flags & writable) | X86.rflagsReserved1
            cpu.segments[X86CPU.cs] = realModeCodeSegment(cs)
            cpu.rip = ip & 0xffff_ffff
            return
        }
        if virtual8086 { throw .fault(.gp(0)) }
        if cpu.rflags & X86SystemBits.flagNT != 0 {
            // A nested task's return; there are no tasks in IA-32e mode.
            guard !cpu.longModeActive else { throw .fault(.gp(0)) }
            try returnFromNestedTask(next: next)
            return
        }
        let rip = try stackSlot(0, size: size)
        let csSelector = UInt16(truncatingIfNeeded: try stackSlot(1, size: size))
        let flags = try stackSlot(2, size: size)
        if flags & X86SystemBits.flagVM != 0 && cpu.cpl == 0 && !cpu.longModeActive {
            throw .fault(.gp(0))  // return to virtual-8086 mode: not supported
        }
        let newCPL = UInt8(csSelector & 3)
        let cs = try returnCodeSegment(csSelector)
        let to64 = cpu.longModeActive && cs.longMode
        let popsStack = cpu.codeMode == .bits64 || newCPL > cpu.cpl
        var ss = cpu.segments[X86CPU.ss]
        var newRSP: UInt64 = 0
        if popsStack {
            newRSP = try stackSlot(3, size: size)
            let ssSelector = UInt16(truncatingIfNeeded: try stackSlot(4, size: size))
            ss = try returnStackSegment(ssSelector, cpl: newCPL, to64Bit: to64)
        }
        let target = to64 ? rip : rip & (cs.defaultSize32 ? 0xffff_ffff : 0xffff) & mask
        try checkTarget(target, in: cs)

        // Commit: flags by the old CPL's rules.
        var writable = X86SystemBits.flagsWritable & ~(X86SystemBits.flagVM | X86SystemBits.flagIOPL | X86SystemBits.flagIF
            | X86SystemBits.flagVIF | X86SystemBits.flagVIP)
        if cpu.cpl <= iopl { writable |= X86SystemBits.flagIF }
        if cpu.cpl == 0 { writable |= X86SystemBits.flagIOPL | X86SystemBits.flagVIF | X86SystemBits.flagVIP }
        writable &= mask
        let oldCPL = cpu.cpl
        let width = stackAddressSize
        cpu.rflags = (cpu.rflags & ~writable) | (flags & writable) | X86.rflagsReserved1
        cpu.segments[X86CPU.cs] = cs
        cpu.cpl = newCPL
        cpu.rip = target
        if popsStack {
            cpu.segments[X86CPU.ss] = ss
            if cpu.codeMode == .bits64 || size == 8 {
                cpu.gpr[X86CPU.rsp] = newRSP & mask
            } else {
                writeRegister(4, size: ss.defaultSize32 ? 4 : 2, newRSP)
            }
        } else {
            writeRegister(4, size: width, (readRegister(4, size: width) &+ 3 * UInt64(size)) & Self.mask(width))
        }
        if newCPL > oldCPL { nullSegmentsAboveCPL() }
    }

    // MARK: Far JMP, CALL, RET

    private func executeFarJumpOrCall(_ insn: DecodedInstruction, next: UInt64) throws(X86Interruption) {
        let size = insn.operandSize
        let offset: UInt64
        let selector: UInt16
        if insn.source.kind == .memory || insn.destination.kind == .memory {
            let ea = effectiveAddress(insn)
            offset = try readMemory(segment: insn.memory.segment, offset: ea, size: Int(size))
            selector = UInt16(truncatingIfNeeded: try readMemory(
                segment: insn.memory.segment, offset: (ea &+ UInt64(size)) & Self.mask(insn.addressSize), size: 2))
        } else {
            guard cpu.codeMode != .bits64 else { throw .fault(.undefined) }
            offset = insn.immediate & Self.mask(size)
            selector = UInt16(truncatingIfNeeded: insn.immediate2)
        }
        let isCall = insn.operation == .callFar
        let cs: SegmentRegister
        if !protectedMode || virtual8086 {
            cs = realModeCodeSegment(selector)
        } else {
            if selector & 0xfffc != 0 {
                let d = try readDescriptor(selector)
                if !d.isCodeOrData && cpu.longModeActive && d.type == 0xc {
                    try farTransferThroughCallGate(selector: selector, descriptor: d, isCall: isCall, next: next)
                    return
                }
                if !d.isCodeOrData && !cpu.longModeActive {
                    try farTransferToTask(selector: selector, descriptor: d, isCall: isCall, next: next)
                    return
                }
            }
            cs = try farTransferCodeSegment(selector)
        }
        let target = cpu.longModeActive && cs.longMode ? offset : offset & Self.mask(size)
        try checkTarget(target, in: cs)
        if isCall {
            let saved = cpu.gpr[X86CPU.rsp]
            do {
                try push(UInt64(cpu.segments[X86CPU.cs].selector), size: size)
                try push(next, size: size)
            } catch {
                cpu.gpr[X86CPU.rsp] = saved
                throw error
            }
        }
        cpu.segments[X86CPU.cs] = cs
        cpu.rip = target
    }

    private func executeFarReturn(_ insn: DecodedInstruction) throws(X86Interruption) {
        let size = insn.operandSize
        let release = insn.immediate & 0xffff
        let rip = try stackSlot(0, size: size)
        let csSelector = UInt16(truncatingIfNeeded: try stackSlot(1, size: size))
        let width = stackAddressSize
        let popped = 2 * UInt64(size) &+ release
        if !protectedMode || virtual8086 {
            cpu.segments[X86CPU.cs] = realModeCodeSegment(csSelector)
            cpu.rip = rip & Self.mask(size)
            writeRegister(4, size: width, (readRegister(4, size: width) &+ popped) & Self.mask(width))
            return
        }
        let newCPL = UInt8(csSelector & 3)
        let cs = try returnCodeSegment(csSelector)
        let to64 = cpu.longModeActive && cs.longMode
        let target = to64 ? rip : rip & Self.mask(size)
        try checkTarget(target, in: cs)
        if newCPL == cpu.cpl {
            cpu.segments[X86CPU.cs] = cs
            cpu.rip = target
            writeRegister(4, size: width, (readRegister(4, size: width) &+ popped) & Self.mask(width))
            return
        }
        // Return to an outer privilege level: SS:RSP follow, after the released bytes.
        let newRSP = try stackSlot(2, size: size, extra: release)
        let ssSelector = UInt16(truncatingIfNeeded: try stackSlot(3, size: size, extra: release))
        let ss = try returnStackSegment(ssSelector, cpl: newCPL, to64Bit: to64)
        cpu.segments[X86CPU.cs] = cs
        cpu.segments[X86CPU.ss] = ss
        cpu.cpl = newCPL
        cpu.rip = target
        let newWidth = stackAddressSize
        writeRegister(4, size: newWidth, (newRSP &+ release) & Self.mask(newWidth))
        nullSegmentsAboveCPL()
    }

    // MARK: SYSCALL, SYSRET

    private func flatCode(_ selector: UInt16, dpl: UInt8, longMode: Bool) -> SegmentRegister {
        SegmentRegister(selector: selector, base: 0, limit: 0xffff_ffff, type: 0xb, dpl: dpl, longMode: longMode,
                        defaultSize32: !longMode, granularity4K: true)
    }

    private func flatStack(_ selector: UInt16, dpl: UInt8) -> SegmentRegister {
        SegmentRegister(selector: selector, base: 0, limit: 0xffff_ffff, type: 0x3, dpl: dpl, defaultSize32: true,
                        granularity4K: true)
    }

    /// True when CPUID leaf 0 names AMD: SYSCALL from compatibility mode, SYSENTER and SYSEXIT in
    /// IA-32e mode follow the vendor's rules (AMD APM Vol. 3; Intel SDM Vol. 2), and the vendor is
    /// what the guest reads from CPUID (GenuineIntel for the software CPU's own table).
    private var cpuidVendorIsAMD: Bool {
        let leaf = bus.cpuid(function: 0, index: 0)
        return leaf.ebx == 0x6874_7541 && leaf.edx == 0x6974_6e65 && leaf.ecx == 0x444d_4163  // "AuthenticAMD"
    }

    private func executeSyscall(next: UInt64) throws(X86Interruption) {
        guard protectedMode, !virtual8086, cpu.efer & X86SystemBits.eferSCE != 0 else { throw .fault(.undefined) }
        if cpu.codeMode != .bits64 {
            // Intel: #UD outside 64-bit mode. AMD: from compatibility mode to IA32_CSTAR; from
            // legacy protected mode to STAR[31:0] in flat 32-bit code.
            guard cpuidVendorIsAMD else { throw .fault(.undefined) }
            let selector = UInt16(truncatingIfNeeded: cpu.star >> 32) & 0xfffc
            if !cpu.longModeActive {
                cpu.gpr[X86CPU.rcx] = next & 0xffff_ffff
                cpu.rflags &= ~(X86SystemBits.flagVM | X86SystemBits.flagIF | X86SystemBits.flagRF)
                cpu.segments[X86CPU.cs] = flatCode(selector, dpl: 0, longMode: false)
                cpu.segments[X86CPU.ss] = flatStack(selector &+ 8, dpl: 0)
                cpu.cpl = 0
                cpu.rip = cpu.star & 0xffff_ffff
                return
            }
            enterSyscall(selector: selector, next: next & 0xffff_ffff, target: cpu.cstar)
            return
        }
        enterSyscall(selector: UInt16(truncatingIfNeeded: cpu.star >> 32) & 0xfffc, next: next, target: cpu.lstar)
    }

    /// SYSCALL into 64-bit mode at CPL0: RCX = the return address, R11 = RFLAGS, RFLAGS masked by SFMASK.
    func enterSyscall(selector: UInt16, next: UInt64, target: UInt64) {
        cpu.gpr[X86CPU.rcx] = next
        cpu.gpr[11] = cpu.rflags & ~X86SystemBits.flagRF
        cpu.rflags = (cpu.rflags & ~(cpu.sfmask | X86SystemBits.flagRF)) | X86.rflagsReserved1
        cpu.segments[X86CPU.cs] = flatCode(selector, dpl: 0, longMode: true)
        cpu.segments[X86CPU.ss] = flatStack(selector &+ 8, dpl: 0)
        cpu.cpl = 0
        cpu.rip = target
    }

    private func executeSysret(_ insn: DecodedInstruction) throws(X86Interruption) {
        guard cpu.codeMode == .bits64, cpu.efer & X86SystemBits.eferSCE != 0 else { throw .fault(.undefined) }
        try requireCPL0()
        let rcx = cpu.gpr[X86CPU.rcx]
        if insn.operandSize == 8 {
            guard Self.isCanonical(rcx) else { throw .fault(.gp(0)) }
            returnFromSyscall(to: rcx, rflags: cpu.gpr[11], into64: true)
        } else {
            returnFromSyscall(to: rcx & 0xffff_ffff, rflags: cpu.gpr[11], into64: false)
        }
    }

    /// SYSRET's effect once its checks passed: CS and SS from STAR[63:48] at CPL3, RFLAGS from
    /// `rflags` (R11), RIP = `rip`.
    func returnFromSyscall(to rip: UInt64, rflags: UInt64, into64: Bool) {
        let base = UInt16(truncatingIfNeeded: cpu.star >> 48)
        if into64 {
            cpu.segments[X86CPU.cs] = flatCode((base &+ 16) | 3, dpl: 3, longMode: true)
        } else {
            cpu.segments[X86CPU.cs] = flatCode(base | 3, dpl: 3, longMode: false)
        }
        cpu.rip = rip
        cpu.rflags = (rflags & 0x3c_7fd7) | X86.rflagsReserved1
        // SS.selector = STAR[63:48] + 8 with RPL 3; the cache is a flat DPL-3 data segment.
        cpu.segments[X86CPU.ss] = flatStack((base &+ 8) | 3, dpl: 3)
        cpu.cpl = 3
    }

    // MARK: SYSENTER, SYSEXIT

    private func executeSysenter() throws(X86Interruption) {
        if cpu.longModeActive && cpuidVendorIsAMD { throw .fault(.undefined) }  // AMD: legacy mode only
        guard protectedMode else { throw .fault(.gp(0)) }
        let selector = UInt16(truncatingIfNeeded: cpu.sysenterCS) & 0xfffc
        guard selector != 0 else { throw .fault(.gp(0)) }
        let long = cpu.longModeActive
        cpu.rflags &= ~(X86SystemBits.flagVM | X86SystemBits.flagIF | X86SystemBits.flagRF)
        cpu.segments[X86CPU.cs] = flatCode(selector, dpl: 0, longMode: long)
        cpu.segments[X86CPU.ss] = flatStack(selector &+ 8, dpl: 0)
        cpu.cpl = 0
        cpu.rip = long ? cpu.sysenterEIP : cpu.sysenterEIP & 0xffff_ffff
        cpu.gpr[X86CPU.rsp] = long ? cpu.sysenterESP : cpu.sysenterESP & 0xffff_ffff
    }

    private func executeSysexit(_ insn: DecodedInstruction) throws(X86Interruption) {
        if cpu.longModeActive && cpuidVendorIsAMD { throw .fault(.undefined) }  // AMD: legacy mode only
        guard protectedMode else { throw .fault(.gp(0)) }
        try requireCPL0()
        let selector = UInt16(truncatingIfNeeded: cpu.sysenterCS) & 0xfffc
        guard selector != 0 else { throw .fault(.gp(0)) }
        if insn.operandSize == 8 {
            guard Self.isCanonical(cpu.gpr[X86CPU.rdx]), Self.isCanonical(cpu.gpr[X86CPU.rcx]) else {
                throw .fault(.gp(0))
            }
            cpu.segments[X86CPU.cs] = flatCode((selector &+ 32) | 3, dpl: 3, longMode: true)
            cpu.segments[X86CPU.ss] = flatStack((selector &+ 40) | 3, dpl: 3)
            cpu.rip = cpu.gpr[X86CPU.rdx]
            cpu.gpr[X86CPU.rsp] = cpu.gpr[X86CPU.rcx]
        } else {
            cpu.segments[X86CPU.cs] = flatCode((selector &+ 16) | 3, dpl: 3, longMode: false)
            cpu.segments[X86CPU.ss] = flatStack((selector &+ 24) | 3, dpl: 3)
            cpu.rip = cpu.gpr[X86CPU.rdx] & 0xffff_ffff
            cpu.gpr[X86CPU.rsp] = cpu.gpr[X86CPU.rcx] & 0xffff_ffff
        }
        cpu.cpl = 3
    }
}
