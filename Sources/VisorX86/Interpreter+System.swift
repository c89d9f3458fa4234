// System instructions: control, debug and model-specific registers, descriptor tables, segment
// loads, I/O, CPUID, TSC, HLT, CLI/STI, interrupts (IRET and far transfers are in
// `ControlTransfer.swift`). Intel SDM Vol. 2 instruction pages and Vol. 3A ch. 2, 5, 6.
//
// Privileged instructions at CPL > 0 raise #GP(0). MOV DR: DR4/DR5 alias DR6/DR7 unless CR4.DE
// (#UD), DR6/DR7 keep their fixed bits and refuse bits 63:32 (#GP), DR7.GD makes any access a
// #DB fault (breakpoints themselves are in Debug.swift). Simplified (documented): VERR/VERW/
// LAR/LSL follow the SDM's type and privilege rules but not call-gate subtleties of 16-bit code;
// MONITOR/MWAIT and RDRAND are #UD (CPUID offers neither); RDPMC is #GP(0), as for an invalid
// counter, since CPUID leaf 0xA offers no counters; INVD/WBINVD are no-ops; the TSS I/O
// permission bitmap is honoured.
// The serializing instructions (CPUID, WRMSR, LGDT/LIDT/LLDT/LTR, MOV to CRn/DRn, INVLPG,
// INVD/WBINVD; IRET in ControlTransfer.swift) call `serialize()`, which is where a vCPU picks up
// code other vCPUs wrote (SMP.swift).

import VisorCore
import VisorX86Decode

extension X86Machine {
    /// Executes `insn` if it is a system instruction; false if it is not one.
    func executeSystem(_ insn: DecodedInstruction) throws(X86Interruption) -> Bool {
        switch insn.operation {
        case .hlt:
            try requireCPL0()
            retire(insn)
            cpu.halted = true
        case .cli:
            try requireIOPL()
            cpu.rflags &= ~X86SystemBits.flagIF
            retire(insn)
        case .sti:
            try requireIOPL()
            if cpu.rflags & X86SystemBits.flagIF == 0 { cpu.interruptShadow = true }
            cpu.rflags |= X86SystemBits.flagIF
            retire(insn)
        case .in, .out:
            try executePortIO(insn)
        case .ins, .outs:
            try executeStringIO(insn)
        case .cpuid:
            serialize()
            let e = bus.cpuid(function: UInt32(truncatingIfNeeded: cpu.gpr[0]),
                                   index: UInt32(truncatingIfNeeded: cpu.gpr[1]))
            cpu.gpr[0] = UInt64(e.eax); cpu.gpr[3] = UInt64(e.ebx)
            cpu.gpr[1] = UInt64(e.ecx); cpu.gpr[2] = UInt64(e.edx)
            retire(insn)
        case .rdtsc, .rdtscp:
            guard timeStampReadable else { throw .fault(.gp(0)) }
            let tsc = timeStampCounter
            cpu.gpr[0] = tsc & 0xffff_ffff
            cpu.gpr[2] = tsc >> 32
            if insn.operation == .rdtscp { cpu.gpr[1] = cpu.tscAux & 0xffff_ffff }
            retire(insn)
        case .rdmsr:
            try requireCPL0()
            let value = try readModelSpecificRegister(UInt32(truncatingIfNeeded: cpu.gpr[1]))
            cpu.gpr[0] = value & 0xffff_ffff
            cpu.gpr[2] = value >> 32
            retire(insn)
        case .wrmsr:
            try requireCPL0()
            serialize()
            let value = (cpu.gpr[2] << 32) | (cpu.gpr[0] & 0xffff_ffff)
            try writeModelSpecificRegister(UInt32(truncatingIfNeeded: cpu.gpr[1]), value)
            retire(insn)
        case .lgdt, .lidt:
            try requireCPL0()
            serialize()
            let (limit, base) = try readPseudoDescriptor(insn)
            if insn.operation == .lgdt {
                cpu.gdtr = DescriptorTableRegister(base: base, limit: limit)
            } else {
                cpu.idtr = DescriptorTableRegister(base: base, limit: limit)
            }
            retire(insn)
        case .sgdt, .sidt:
            countSensitive(insn.operation == .sgdt ? .sgdt : .sidt)
            let table = insn.operation == .sgdt ? cpu.gdtr : cpu.idtr
            let (segment, offset) = try memoryOperand(insn)
            try writeMemory(segment: segment, offset: offset, size: 2, value: UInt64(table.limit))
            let base = cpu.codeMode == .bits64 ? table.base : table.base & 0xffff_ffff
            try writeMemory(segment: segment, offset: (offset &+ 2) & Self.mask(insn.addressSize),
                            size: cpu.codeMode == .bits64 ? 8 : 4, value: base)
            retire(insn)
        case .sldt, .str:
            countSensitive(insn.operation == .sldt ? .sldt : .str)
            guard protectedMode, !virtual8086 else { throw .fault(.undefined) }
            let selector = insn.operation == .sldt ? cpu.ldtr.selector : cpu.tr.selector
            try writeSelectorOperand(insn, UInt64(selector))
            retire(insn)
        case .lldt:
            guard protectedMode, !virtual8086 else { throw .fault(.undefined) }
            try requireCPL0()
            serialize()
            try loadLocalDescriptorTable(UInt16(truncatingIfNeeded: try selectorOperand(insn)))
            retire(insn)
        case .ltr:
            guard protectedMode, !virtual8086 else { throw .fault(.undefined) }
            try requireCPL0()
            serialize()
            try loadTaskRegister(UInt16(truncatingIfNeeded: try selectorOperand(insn)))
            retire(insn)
        case .smsw:
            countSensitive(.smsw)
            let size: UInt8 = insn.destination.kind == .memory ? 2 : insn.destination.size
            try write(insn.destination, insn, cpu.cr0 & Self.mask(size))
            retire(insn)
        case .lmsw:
            try requireCPL0()
            let v = try selectorOperand(insn) & 0xf
            // LMSW can set PE but not clear it.
            let newCR0 = (cpu.cr0 & ~0xe) | v | (cpu.cr0 & X86SystemBits.cr0PE)
            try writeControlRegister(0, newCR0)
            retire(insn)
        case .clts:
            try requireCPL0()
            cpu.cr0 &= ~X86SystemBits.cr0TS
            retire(insn)
        case .movControl:
            try executeMoveControl(insn)
        case .movDebug:
            try executeMoveDebug(insn)
        case .movSegment:
            countSensitive(insn.destination.kind == .segment ? .movToSegment : .movFromSegment)
            try executeMoveSegment(insn)
        case .pop where insn.destination.kind == .segment:
            countSensitive(.popSegment)
            try executePopSegment(insn)
        case .loadFarPointer:
            try executeLoadFarPointer(insn)
        case .invlpg:
            try requireCPL0()
            serialize()
            let (segment, offset) = try memoryOperand(insn)
            let s = Int(segment % 6)
            let base = cpu.codeMode == .bits64 ? (s >= X86CPU.fs ? cpu.segments[s].base : 0) : cpu.segments[s].base
            var linear = base &+ offset
            if cpu.codeMode != .bits64 { linear &= 0xffff_ffff }
            tlb.invalidate(linear)
            retire(insn)
        case .invd, .wbinvd:
            try requireCPL0()
            serialize()
            retire(insn)
        case .clac, .stac:
            guard offersLeaf7EBX(bit: 20), cpu.cpl == 0 || !protectedMode else { throw .fault(.undefined) }
            if insn.operation == .clac {
                cpu.rflags &= ~X86SystemBits.flagAC
            } else {
                cpu.rflags |= X86SystemBits.flagAC
            }
            retire(insn)
        case .swapgs:
            guard cpu.codeMode == .bits64 else { throw .fault(.undefined) }
            try requireCPL0()
            let gs = cpu.segments[X86CPU.gs].base
            cpu.segments[X86CPU.gs].base = cpu.kernelGSBase
            cpu.kernelGSBase = gs
            retire(insn)
        case .rdpmc:
            // CPUID leaf 0xA offers no performance counters, so every ECX names an invalid
            // counter: #GP(0) at any CPL (and at CPL > 0 with CR4.PCE clear in any case).
            throw .fault(.gp(0))
        case .ud2, .monitor, .mwait, .rdrand:
            throw .fault(.undefined)
        case .int, .int3, .into, .int1, .iret, .jmpFar, .callFar, .retFar, .syscall, .sysret, .sysenter,
             .sysexit:
            countSensitiveControlTransfer(insn.operation)
            try executeControlTransfer(insn)
        case .verr, .verw:
            countSensitive(insn.operation == .verr ? .verr : .verw)
            guard protectedMode, !virtual8086 else { throw .fault(.undefined) }
            let selector = UInt16(truncatingIfNeeded: try selectorOperand(insn))
            setZeroFlag(try verifySegment(selector, write: insn.operation == .verw))
            retire(insn)
        case .lar, .lsl:
            countSensitive(insn.operation == .lar ? .lar : .lsl)
            guard protectedMode, !virtual8086 else { throw .fault(.undefined) }
            let selector = UInt16(truncatingIfNeeded: try read(insn.source, insn) & 0xffff)
            if let value = try accessRightsOrLimit(selector, limit: insn.operation == .lsl) {
                writeRegister(insn.destination.index, size: insn.destination.size,
                              insn.operation == .lar ? value & 0x00ff_ff00 : value)
                setZeroFlag(true)
            } else {
                setZeroFlag(false)
            }
            retire(insn)
        case .arpl:
            guard protectedMode, !virtual8086, cpu.codeMode != .bits64 else { throw .fault(.undefined) }
            let destination = try read(insn.destination, insn) & 0xffff
            let source = try read(insn.source, insn) & 0xffff
            if destination & 3 < source & 3 {
                try write(insn.destination, insn, (destination & ~3) | (source & 3))
                setZeroFlag(true)
            } else {
                setZeroFlag(false)
            }
            retire(insn)
        case .nop, .pause, .lfence, .mfence, .sfence:
            // Normally handled by the general family; kept here so the step loop always has them.
            retire(insn)
        default:
            return false
        }
        return true
    }

    // MARK: Privilege helpers

    var protectedMode: Bool { cpu.cr0 & X86SystemBits.cr0PE != 0 }

    /// Whether RDTSC and RDTSCP may run now: CR4.TSD restricts them to CPL 0 in protected mode
    /// (#GP elsewhere).
    var timeStampReadable: Bool { cpu.cr4 & X86SystemBits.cr4TSD == 0 || cpu.cpl == 0 || !protectedMode }
    var virtual8086: Bool { cpu.rflags & X86SystemBits.flagVM != 0 }
    var iopl: UInt8 { UInt8((cpu.rflags >> 12) & 3) }

    /// True when the bus's CPUID leaf 7 (subleaf 0) sets EBX bit `bit`: the feature is offered.
    func offersLeaf7EBX(bit: UInt32) -> Bool {
        bus.cpuid(function: 7, index: 0).ebx >> bit & 1 != 0
    }

    /// #GP(0) unless CPL = 0.
    @inline(__always)
    func requireCPL0() throws(X86Interruption) {
        if cpu.cpl != 0 { throw .fault(.gp(0)) }
    }

    /// CLI/STI: #GP(0) in protected mode when CPL > IOPL (no VME/PVI).
    func requireIOPL() throws(X86Interruption) {
        if protectedMode && (virtual8086 ? iopl < 3 : cpu.cpl > iopl) { throw .fault(.gp(0)) }
    }

    func setZeroFlag(_ on: Bool) {
        if on { cpu.rflags |= X86SystemBits.flagZF } else { cpu.rflags &= ~X86SystemBits.flagZF }
    }

    /// The time-stamp counter as the guest reads it.
    public var timeStampCounter: UInt64 { bus.readTimeStampCounter() &+ cpu.tscOffset }

    /// The segment and offset of the instruction's memory operand; #UD if it has none.
    func memoryOperand(_ insn: DecodedInstruction) throws(X86Interruption) -> (UInt8, UInt64) {
        guard insn.destination.kind == .memory || insn.source.kind == .memory else { throw .fault(.undefined) }
        return (insn.memory.segment, effectiveAddress(insn))
    }

    /// A 16-bit selector (or MSW) operand from a register or memory (the source, else the destination).
    func selectorOperand(_ insn: DecodedInstruction) throws(X86Interruption) -> UInt64 {
        let operand = insn.source.kind != .none ? insn.source : insn.destination
        if operand.kind == .memory {
            return try readMemory(segment: insn.memory.segment, offset: effectiveAddress(insn), size: 2)
        }
        return try read(operand, insn) & 0xffff
    }

    /// SLDT/STR/MOV from a segment register: registers take the operand size (zero-extended),
    /// memory 16 bits.
    func writeSelectorOperand(_ insn: DecodedInstruction, _ value: UInt64) throws(X86Interruption) {
        if insn.destination.kind == .memory {
            try writeMemory(segment: insn.memory.segment, offset: effectiveAddress(insn), size: 2, value: value)
        } else {
            let size = insn.destination.size == 0 ? insn.operandSize : insn.destination.size
            writeRegister(insn.destination.index, size: size, value)
        }
    }

    /// LGDT/LIDT's memory operand: 16-bit limit, then a 24-, 32- or 64-bit base.
    func readPseudoDescriptor(_ insn: DecodedInstruction) throws(X86Interruption) -> (UInt16, UInt64) {
        let (segment, offset) = try memoryOperand(insn)
        let limit = UInt16(try readMemory(segment: segment, offset: offset, size: 2))
        let baseOffset = (offset &+ 2) & Self.mask(insn.addressSize)
        if cpu.codeMode == .bits64 {
            let base = try readMemory(segment: segment, offset: baseOffset, size: 8)
            guard Self.isCanonical(base) else { throw .fault(.gp(0)) }
            return (limit, base)
        }
        var base = try readMemory(segment: segment, offset: baseOffset, size: 4)
        if insn.operandSize == 2 { base &= 0xff_ffff }
        return (limit, base)
    }

    // MARK: LLDT, LTR

    /// Reads a system descriptor (16 bytes in IA-32e mode) from the GDT.
    private func systemDescriptor(_ selector: UInt16) throws(X86Interruption) -> (X86Descriptor, UInt64, UInt64) {
        let errorCode = UInt32(selector & 0xfffc)
        guard selector & 4 == 0 else { throw .fault(.gp(errorCode)) }
        let width: UInt64 = cpu.longModeActive ? 16 : 8
        let address = try descriptorAddress(selector, width: width, error: .gp(errorCode))
        let d = X86Descriptor(raw: try readSystem(address, size: 8))
        let high = cpu.longModeActive ? try readSystem(address &+ 8, size: 8) : 0
        return (d, high & 0xffff_ffff, address)
    }

    func loadLocalDescriptorTable(_ selector: UInt16) throws(X86Interruption) {
        if selector & 0xfffc == 0 {
            cpu.ldtr = SegmentRegister(selector: selector, base: 0, limit: 0, type: 2, isCodeOrData: false,
                                       present: false)
            return
        }
        let errorCode = UInt32(selector & 0xfffc)
        let (d, baseHigh, _) = try systemDescriptor(selector)
        guard !d.isCodeOrData, d.type == 2 else { throw .fault(.gp(errorCode)) }
        guard d.present else { throw .fault(.np(errorCode)) }
        if cpu.longModeActive { guard Self.isCanonical(d.base | (baseHigh << 32)) else { throw .fault(.gp(errorCode)) } }
        cpu.ldtr = d.segment(selector: selector, baseHigh: baseHigh)
    }

    func loadTaskRegister(_ selector: UInt16) throws(X86Interruption) {
        let errorCode = UInt32(selector & 0xfffc)
        guard selector & 0xfffc != 0 else { throw .fault(.gp(0)) }
        let (d, baseHigh, address) = try systemDescriptor(selector)
        // Available TSS: 32/64-bit (9), or 16-bit (1) outside IA-32e mode.
        guard !d.isCodeOrData, d.type == 9 || (d.type == 1 && !cpu.longModeActive) else {
            throw .fault(.gp(errorCode))
        }
        guard d.present else { throw .fault(.np(errorCode)) }
        if cpu.longModeActive { guard Self.isCanonical(d.base | (baseHigh << 32)) else { throw .fault(.gp(errorCode)) } }
        // Mark it busy in the GDT.
        try writeSystem(address &+ 5, size: 1, value: (d.raw >> 40) | 2)
        var tr = d.segment(selector: selector, baseHigh: baseHigh)
        tr.type |= 2
        cpu.tr = tr
    }

    // MARK: Control and debug registers

    private func executeMoveControl(_ insn: DecodedInstruction) throws(X86Interruption) {
        let toControl = insn.destination.kind == .control
        let index = toControl ? insn.destination.index : insn.source.index
        guard [0, 2, 3, 4, 8].contains(index), index != 8 || cpu.codeMode == .bits64 else {
            throw .fault(.undefined)
        }
        try requireCPL0()
        let width: UInt8 = cpu.codeMode == .bits64 ? 8 : 4
        if toControl {
            if index != 8 { serialize() }  // MOV to CR0/2/3/4 is serializing (CR8 is not)
            let value = readRegister(insn.source.index, size: width)
            try writeControlRegister(Int(index), value)
        } else {
            let value: UInt64
            switch index {
            case 0: value = cpu.cr0
            case 2: value = cpu.cr2
            case 3: value = cpu.cr3
            case 4: value = cpu.cr4
            default: value = cpu.cr8
            }
            writeRegister(insn.destination.index, size: width, value)
        }
        retire(insn)
    }

    /// MOV to CR0, CR2, CR3, CR4 or CR8 with the SDM's checks (the caller checked CPL).
    public func writeControlRegister(_ index: Int, _ value: UInt64) throws(X86Interruption) {
        switch index {
        case 0:
            guard value >> 32 == 0 else { throw .fault(.gp(0)) }
            let new = (value & X86SystemBits.cr0Defined) | X86SystemBits.cr0ET
            let old = cpu.cr0
            if new & X86SystemBits.cr0PG != 0 && new & X86SystemBits.cr0PE == 0 { throw .fault(.gp(0)) }
            if new & X86SystemBits.cr0NW != 0 && new & X86SystemBits.cr0CD == 0 { throw .fault(.gp(0)) }
            var efer = cpu.efer
            if new & X86SystemBits.cr0PG != 0 && old & X86SystemBits.cr0PG == 0 && efer & X86SystemBits.eferLME != 0 {
                // Activating IA-32e mode.
                guard cpu.cr4 & X86SystemBits.cr4PAE != 0, !cpu.segments[X86CPU.cs].longMode else {
                    throw .fault(.gp(0))
                }
                efer |= X86SystemBits.eferLMA
            }
            if new & X86SystemBits.cr0PG == 0 && old & X86SystemBits.cr0PG != 0 && efer & X86SystemBits.eferLMA != 0 {
                guard cpu.codeMode != .bits64 else { throw .fault(.gp(0)) }
                efer &= ~X86SystemBits.eferLMA
            }
            cpu.efer = efer
            cpu.cr0 = new
            if new & X86SystemBits.cr0PE == 0 { cpu.cpl = 0 }
            if (old ^ new) & (X86SystemBits.cr0PG | X86SystemBits.cr0WP | X86SystemBits.cr0PE) != 0 { tlb.flush() }
        case 2:
            cpu.cr2 = value
        case 3:
            if cpu.longModeActive {
                guard value & ~((1 << Self.maxPhysicalAddressBits) - 1) == 0 else { throw .fault(.gp(0)) }
                cpu.cr3 = value
            } else {
                cpu.cr3 = value & 0xffff_ffff
            }
            tlb.flushNonGlobal()
        case 4:
            guard value & ~X86SystemBits.cr4Supported == 0 else { throw .fault(.gp(0)) }
            if cpu.longModeActive && value & X86SystemBits.cr4PAE == 0 { throw .fault(.gp(0)) }
            let changed = cpu.cr4 ^ value
            cpu.cr4 = value
            if changed & (X86SystemBits.cr4PAE | X86SystemBits.cr4PSE | X86SystemBits.cr4PGE) != 0 { tlb.flush() }
        case 8:
            guard value & ~0xf == 0 else { throw .fault(.gp(0)) }
            cpu.cr8 = value
        default:
            throw .fault(.undefined)
        }
    }

    private func executeMoveDebug(_ insn: DecodedInstruction) throws(X86Interruption) {
        let toDebug = insn.destination.kind == .debug
        var index = Int(toDebug ? insn.destination.index : insn.source.index)
        guard index < 8 else { throw .fault(.undefined) }
        if index == 4 || index == 5 {
            if cpu.cr4 & X86SystemBits.cr4DE != 0 { throw .fault(.undefined) }
            index += 2
        }
        try requireCPL0()
        // General detect: any access to a debug register is a #DB fault with DR6.BD.
        if cpu.dr[7] & X86DebugBits.dr7GD != 0 {
            cpu.dr[6] |= X86DebugBits.dr6BD
            throw .fault(X86Fault(vector: X86Fault.debug))
        }
        let width: UInt8 = cpu.codeMode == .bits64 ? 8 : 4
        if toDebug {
            serialize()  // MOV to DRn is serializing
            let value = readRegister(insn.source.index, size: width)
            switch index {
            case 6:
                guard value >> 32 == 0 else { throw .fault(.gp(0)) }
                cpu.dr[6] = (value & X86DebugBits.dr6Writable) | X86DebugBits.dr6Fixed
            case 7:
                guard value >> 32 == 0 else { throw .fault(.gp(0)) }
                cpu.dr[7] = (value & X86DebugBits.dr7Writable) | X86DebugBits.dr7Fixed
            default:
                cpu.dr[index] = value
            }
        } else {
            writeRegister(insn.destination.index, size: width, cpu.dr[index])
        }
        retire(insn)
    }

    // MARK: MSRs

    /// RDMSR: the MSRs the CPU holds, else the bus's; #GP(0) when neither knows it.
    public func readModelSpecificRegister(_ index: UInt32) throws(X86Interruption) -> UInt64 {
        switch index {
        case X86SystemBits.msrTSC: return timeStampCounter
        case X86SystemBits.msrSysenterCS: return cpu.sysenterCS
        case X86SystemBits.msrSysenterESP: return cpu.sysenterESP
        case X86SystemBits.msrSysenterEIP: return cpu.sysenterEIP
        case X86SystemBits.msrPAT: return cpu.pat
        case X86SystemBits.msrEFER: return cpu.efer
        case X86SystemBits.msrSTAR: return cpu.star
        case X86SystemBits.msrLSTAR: return cpu.lstar
        case X86SystemBits.msrCSTAR: return cpu.cstar
        case X86SystemBits.msrSFMASK: return cpu.sfmask
        case X86SystemBits.msrFSBase: return cpu.segments[X86CPU.fs].base
        case X86SystemBits.msrGSBase: return cpu.segments[X86CPU.gs].base
        case X86SystemBits.msrKernelGSBase: return cpu.kernelGSBase
        case X86SystemBits.msrTSCAux: return cpu.tscAux
        case X86SystemBits.msrTSCAdjust: return cpu.tscAdjust
        case X86SystemBits.msrMiscEnable: return cpu.miscEnable
        case X86SystemBits.msrMCGCap: return 0
        case X86SystemBits.msrMCGStatus: return cpu.machineCheckStatus
        default:
            if let value = cpu.mtrr.read(index) { return value }
            let value: UInt64?
            do {
                value = try bus.readMSR(index)
            } catch {
                throw .stop(error)
            }
            guard let value else { throw .fault(.gp(0)) }
            return value
        }
    }

    /// WRMSR with each MSR's reserved-bit and canonical checks (#GP(0)).
    public func writeModelSpecificRegister(_ index: UInt32, _ value: UInt64) throws(X86Interruption) {
        func canonical() throws(X86Interruption) { guard Self.isCanonical(value) else { throw .fault(.gp(0)) } }
        switch index {
        case X86SystemBits.msrTSC:
            // The change moves IA32_TSC_ADJUST by the same amount (SDM Vol. 3B, "Time-Stamp Counter Adjustment").
            let change = value &- timeStampCounter
            cpu.tscOffset &+= change
            cpu.tscAdjust &+= change
        case X86SystemBits.msrTSCAdjust:
            // And a write to IA32_TSC_ADJUST moves the TSC by its change.
            cpu.tscOffset &+= value &- cpu.tscAdjust
            cpu.tscAdjust = value
        case X86SystemBits.msrMiscEnable:
            guard (value ^ cpu.miscEnable) & ~X86SystemBits.miscEnableWritable == 0 else { throw .fault(.gp(0)) }
            cpu.miscEnable = value
        case X86SystemBits.msrMCGCap:
            throw .fault(.gp(0))  // read-only
        case X86SystemBits.msrMCGStatus:
            guard value & ~X86SystemBits.mcgStatusWritable == 0 else { throw .fault(.gp(0)) }
            cpu.machineCheckStatus = value
        case X86SystemBits.msrSysenterCS: cpu.sysenterCS = value & 0xffff_ffff
        case X86SystemBits.msrSysenterESP: try canonical(); cpu.sysenterESP = value
        case X86SystemBits.msrSysenterEIP: try canonical(); cpu.sysenterEIP = value
        case X86SystemBits.msrPAT:
            for i in 0..<8 {
                let type = (value >> (8 * UInt64(i))) & 0xff
                guard [0, 1, 4, 5, 6, 7].contains(type) else { throw .fault(.gp(0)) }
            }
            cpu.pat = value
        case X86SystemBits.msrEFER:
            guard value & ~X86SystemBits.eferSupported == 0 else { throw .fault(.gp(0)) }
            let new = (value & ~X86SystemBits.eferLMA) | (cpu.efer & X86SystemBits.eferLMA)
            if (new ^ cpu.efer) & X86SystemBits.eferLME != 0 && pagingEnabled { throw .fault(.gp(0)) }
            if (new ^ cpu.efer) & X86SystemBits.eferNXE != 0 { tlb.flush() }
            cpu.efer = new
        case X86SystemBits.msrSTAR: cpu.star = value
        case X86SystemBits.msrLSTAR: try canonical(); cpu.lstar = value
        case X86SystemBits.msrCSTAR: try canonical(); cpu.cstar = value
        case X86SystemBits.msrSFMASK:
            guard value >> 32 == 0 else { throw .fault(.gp(0)) }
            cpu.sfmask = value
        case X86SystemBits.msrFSBase: try canonical(); cpu.segments[X86CPU.fs].base = value
        case X86SystemBits.msrGSBase: try canonical(); cpu.segments[X86CPU.gs].base = value
        case X86SystemBits.msrKernelGSBase: try canonical(); cpu.kernelGSBase = value
        case X86SystemBits.msrTSCAux:
            guard value >> 32 == 0 else { throw .fault(.gp(0)) }
            cpu.tscAux = value
        default:
            if let done = cpu.mtrr.write(index, value) {
                guard done else { throw .fault(.gp(0)) }
                return
            }
            guard bus.writeMSR(index, value: value) else { throw .fault(.gp(0)) }
        }
    }

    // MARK: Segment registers

    private func executeMoveSegment(_ insn: DecodedInstruction) throws(X86Interruption) {
        if insn.destination.kind == .segment {
            let index = Int(insn.destination.index)
            guard index < 6, index != X86CPU.cs else { throw .fault(.undefined) }
            let selector = UInt16(truncatingIfNeeded: try selectorOperand(insn))
            try loadSegment(index, selector: selector)
            if index == X86CPU.ss { cpu.interruptShadow = true }
        } else {
            guard insn.source.kind == .segment, insn.source.index < 6 else { throw .fault(.undefined) }
            try writeSelectorOperand(insn, UInt64(cpu.segments[Int(insn.source.index)].selector))
        }
        retire(insn)
    }

    /// POP ES/SS/DS/FS/GS (the general family leaves segment destinations to this one).
    private func executePopSegment(_ insn: DecodedInstruction) throws(X86Interruption) {
        let index = Int(insn.destination.index)
        guard index < 6, index != X86CPU.cs else { throw .fault(.undefined) }
        let width = stackAddressSize
        let rsp = readRegister(4, size: width)
        let size = insn.operandSize
        let value = try readMemory(segment: UInt8(X86CPU.ss), offset: rsp, size: Int(size))
        try loadSegment(index, selector: UInt16(truncatingIfNeeded: value))
        writeRegister(4, size: width, (rsp &+ UInt64(size)) & Self.mask(width))
        if index == X86CPU.ss { cpu.interruptShadow = true }
        retire(insn)
    }

    /// LDS/LES/LFS/LGS/LSS: offset (operand size) then selector from memory.
    private func executeLoadFarPointer(_ insn: DecodedInstruction) throws(X86Interruption) {
        guard insn.source.kind == .memory else { throw .fault(.undefined) }
        let segment = insn.memory.segment
        let offset = effectiveAddress(insn)
        let size = insn.operandSize
        let pointer = try readMemory(segment: segment, offset: offset, size: Int(size))
        let selector = try readMemory(segment: segment, offset: (offset &+ UInt64(size)) & Self.mask(insn.addressSize),
                                      size: 2)
        let index = Int(insn.source2.index)
        try loadSegment(index, selector: UInt16(truncatingIfNeeded: selector))
        writeRegister(insn.destination.index, size: insn.destination.size == 0 ? size : insn.destination.size, pointer)
        if index == X86CPU.ss { cpu.interruptShadow = true }
        retire(insn)
    }

    // MARK: VERR, VERW, LAR, LSL

    private func verifySegment(_ selector: UInt16, write: Bool) throws(X86Interruption) -> Bool {
        guard selector & 0xfffc != 0,
              let address = try? descriptorAddress(selector, error: .gp(0)) else { return false }
        let d = X86Descriptor(raw: try readSystem(address, size: 8))
        guard d.isCodeOrData else { return false }
        if !d.conforming && (d.dpl < cpu.cpl || d.dpl < UInt8(selector & 3)) { return false }
        if write { return d.isData && d.readableOrWritable }
        return d.isData || d.readableOrWritable
    }

    /// LAR's access rights (descriptor bits 32-63 as stored) or LSL's byte limit, or nil.
    private func accessRightsOrLimit(_ selector: UInt16, limit: Bool) throws(X86Interruption) -> UInt64? {
        guard selector & 0xfffc != 0,
              let address = try? descriptorAddress(selector, error: .gp(0)) else { return nil }
        let d = X86Descriptor(raw: try readSystem(address, size: 8))
        if d.isCodeOrData {
            if !d.conforming && (d.dpl < cpu.cpl || d.dpl < UInt8(selector & 3)) { return nil }
        } else {
            let allowed: [UInt8]
            if cpu.longModeActive {
                allowed = limit ? [2, 9, 0xb] : [2, 9, 0xb, 0xc]
            } else {
                allowed = limit ? [1, 2, 3, 9, 0xb] : [1, 2, 3, 4, 5, 9, 0xb, 0xc]
            }
            guard allowed.contains(d.type), d.dpl >= cpu.cpl, d.dpl >= UInt8(selector & 3) else { return nil }
        }
        return limit ? UInt64(d.limit) : (d.raw >> 32) & 0x00ff_ff00
    }

    // MARK: Port I/O

    /// #GP(0) unless the access is allowed: CPL ≤ IOPL (outside virtual-8086 mode), or the TSS
    /// I/O permission bitmap clears every bit of the ports accessed.
    func checkIOPermission(port: UInt16, size: Int) throws(X86Interruption) {
        guard protectedMode, virtual8086 || cpu.cpl > iopl else { return }
        guard cpu.tr.present, cpu.tr.type & 0x9 == 0x9, cpu.tr.limit >= 0x67 else { throw .fault(.gp(0)) }
        let mapBase = try readSystem(cpu.tr.base &+ 0x66, size: 2)
        let byteOffset = mapBase + UInt64(port >> 3)
        guard byteOffset + 1 <= UInt64(cpu.tr.limit) else { throw .fault(.gp(0)) }
        let bits = try readSystem(cpu.tr.base &+ byteOffset, size: 2)
        let mask = ((UInt64(1) << UInt64(size)) - 1) << UInt64(port & 7)
        guard bits & mask == 0 else { throw .fault(.gp(0)) }
    }

    /// A port read; a needed hypervisor answer stops the instruction (it is retried later).
    func portRead(_ port: UInt16, size: Int) throws(X86Interruption) -> UInt64 {
        do {
            return UInt64(try bus.portRead(port: port, size: UInt8(size)))
        } catch {
            throw .stop(error)
        }
    }

    private func executePortIO(_ insn: DecodedInstruction) throws(X86Interruption) {
        if insn.operation == .in {
            let size = Int(insn.destination.size == 0 ? insn.operandSize : insn.destination.size)
            let port = UInt16(truncatingIfNeeded: try read(insn.source, insn))
            try checkIOPermission(port: port, size: size)
            let value = try portRead(port, size: size)
            writeRegister(0, size: UInt8(size), value)
            watchPort(port, size: size)
        } else {
            let size = Int(insn.source.size == 0 ? insn.operandSize : insn.source.size)
            let port = UInt16(truncatingIfNeeded: try read(insn.destination, insn))
            try checkIOPermission(port: port, size: size)
            bus.portWrite(port: port, size: UInt8(size), value: UInt32(truncatingIfNeeded: readRegister(0, size: UInt8(size))))
            watchPort(port, size: size)
        }
        retire(insn)
    }

    /// INS/OUTS, with REP: one element per iteration; stops between iterations (RIP kept) when an
    /// exit is pending, so each element is one exit as on `kvm`.
    private func executeStringIO(_ insn: DecodedInstruction) throws(X86Interruption) {
        let size = Int(min(insn.operandSize, 4))
        let width = insn.addressSize
        let addressMask = Self.mask(width)
        let port = UInt16(truncatingIfNeeded: cpu.gpr[X86CPU.rdx])
        try checkIOPermission(port: port, size: size)
        let repeated = insn.prefixes.repetition != .none
        let step = cpu.rflags & X86SystemBits.flagDF != 0 ? UInt64(size).twosComplement : UInt64(size)
        while true {
            if repeated && readRegister(1, size: width) == 0 { break }
            if insn.operation == .ins {
                let rdi = readRegister(7, size: width)
                // The destination is checked before the port is read.
                _ = try linearAddress(segment: UInt8(X86CPU.es), offset: rdi, size: size)
                let value = try portRead(port, size: size)
                try writeMemory(segment: UInt8(X86CPU.es), offset: rdi, size: size, value: value)
                writeRegister(7, size: width, (rdi &+ step) & addressMask)
            } else {
                let rsi = readRegister(6, size: width)
                let value = try readMemory(segment: insn.memory.segment, offset: rsi, size: size)
                bus.portWrite(port: port, size: UInt8(size), value: UInt32(truncatingIfNeeded: value))
                writeRegister(6, size: width, (rsi &+ step) & addressMask)
            }
            watchPort(port, size: size)
            commitAccesses()
            if !repeated { break }
            let count = (readRegister(1, size: width) &- 1) & addressMask
            writeRegister(1, size: width, count)
            if count == 0 { break }
            if hasPendingExit || stopRequestedSoon || debugTrapHits != 0 {
                cpu.rflags |= X86SystemBits.flagRF  // as between REP string iterations (String.swift)
                return
            }
        }
        retire(insn)
    }

    /// True when the step loop should get control back soon (a stop was requested).
    var stopRequestedSoon: Bool { stopRequest.pending }
}

extension UInt64 {
    fileprivate var twosComplement: UInt64 { 0 &- self }
}
