// Protected-mode segmentation: descriptors read from the GDT/LDT, and the SDM's checks when a
// segment register is loaded (Vol. 3A ch. 3 and 5; the MOV/POP/LDS/JMP/CALL/RET/IRET pages).
//
// Segment caches keep the limit in bytes (granularity already applied), the convention of
// `X86State` and KVM. Accessed bits are set in the descriptor when a segment is loaded. Call
// gates as far-transfer targets are not supported: they raise #GP(selector) (64-bit kernels use
// none). TSSes and task gates switch tasks in 32-bit protected mode (TaskSwitch.swift).

import VisorCore

/// An 8-byte segment or gate descriptor as stored in a descriptor table.
public struct X86Descriptor: Equatable, Sendable {
    public var raw: UInt64
    public init(raw: UInt64) { self.raw = raw }

    public var base: UInt64 { ((raw >> 16) & 0xff_ffff) | ((raw >> 32) & 0xff00_0000) }
    public var rawLimit: UInt32 { UInt32(raw & 0xffff) | UInt32((raw >> 32) & 0xf_0000) }
    /// The limit in bytes.
    public var limit: UInt32 { granularity4K ? (rawLimit << 12) | 0xfff : rawLimit }
    public var type: UInt8 { UInt8((raw >> 40) & 0xf) }
    public var isCodeOrData: Bool { raw & (1 << 44) != 0 }
    public var dpl: UInt8 { UInt8((raw >> 45) & 3) }
    public var present: Bool { raw & (1 << 47) != 0 }
    public var longMode: Bool { raw & (1 << 53) != 0 }
    public var defaultSize32: Bool { raw & (1 << 54) != 0 }
    public var granularity4K: Bool { raw & (1 << 55) != 0 }
    public var isCode: Bool { isCodeOrData && type & 8 != 0 }
    public var isData: Bool { isCodeOrData && type & 8 == 0 }
    public var conforming: Bool { isCode && type & 4 != 0 }
    /// Code: readable; data: writable.
    public var readableOrWritable: Bool { type & 2 != 0 }

    /// The descriptor-cache form, for `selector`.
    public func segment(selector: UInt16, baseHigh: UInt64 = 0) -> SegmentRegister {
        SegmentRegister(selector: selector, base: base | (baseHigh << 32), limit: limit, type: type,
                        isCodeOrData: isCodeOrData, dpl: dpl, present: present, longMode: longMode,
                        defaultSize32: defaultSize32, granularity4K: granularity4K)
    }
}

extension X86Machine {
    /// The linear address of `selector`'s descriptor (`width` 8 or 16 bytes), or `error` when it
    /// lies outside the GDT/LDT limit (or the LDT is null).
    func descriptorAddress(_ selector: UInt16, width: UInt64 = 8, error: X86Fault) throws(X86Interruption) -> UInt64 {
        let offset = UInt64(selector & 0xfff8)
        if selector & 4 != 0 {
            guard cpu.ldtr.present, cpu.ldtr.selector & 0xfffc != 0,
                  offset + width - 1 <= UInt64(cpu.ldtr.limit) else { throw .fault(error) }
            return cpu.ldtr.base &+ offset
        }
        guard offset + width - 1 <= UInt64(cpu.gdtr.limit) else { throw .fault(error) }
        return cpu.gdtr.base &+ offset
    }

    /// Reads the descriptor of a (non-null) selector; #GP(selector) — or `error` — if outside the table.
    public func readDescriptor(_ selector: UInt16, error: X86Fault? = nil) throws(X86Interruption) -> X86Descriptor {
        let address = try descriptorAddress(selector, error: error ?? .gp(UInt32(selector & 0xfffc)))
        return X86Descriptor(raw: try readSystem(address, size: 8))
    }

    /// Sets the accessed bit of a code/data descriptor in its table, as loading it does.
    func markAccessed(_ selector: UInt16, _ descriptor: X86Descriptor) throws(X86Interruption) {
        guard descriptor.isCodeOrData, descriptor.type & 1 == 0 else { return }
        let address = try descriptorAddress(selector, error: .gp(UInt32(selector & 0xfffc)))
        try writeSystem(address &+ 5, size: 1, value: (descriptor.raw >> 40) | 1)
    }

    /// A null (unusable) data-segment cache for `selector`.
    static func nullSegment(_ selector: UInt16, base: UInt64 = 0) -> SegmentRegister {
        SegmentRegister(selector: selector, base: base, limit: 0, type: 0, isCodeOrData: true, dpl: 0,
                        present: false)
    }

    /// Loads data-segment or stack-segment register `index` (ES, SS, DS, FS, GS) with `selector`,
    /// as MOV, POP and LDS/LES/LFS/LGS/LSS do, with the SDM's checks: in real mode the base is
    /// `selector << 4`; in protected mode a null selector makes ES/DS/FS/GS unusable (and is
    /// #GP(0) for SS outside 64-bit mode), the descriptor must be readable (writable data for SS),
    /// privilege must allow it (#GP(selector)), and it must be present (#NP, or #SS for SS).
    /// Loading CS this way is #UD. Does not set the interrupt shadow (the caller does for SS).
    public func loadSegment(_ index: Int, selector: UInt16) throws(X86Interruption) {
        guard index != X86CPU.cs, index >= 0, index < 6 else { throw .fault(.undefined) }
        if cpu.cr0 & X86.cr0ProtectionEnable == 0 || cpu.rflags & X86SystemBits.flagVM != 0 {
            cpu.segments[index].selector = selector
            cpu.segments[index].base = UInt64(selector) << 4
            return
        }
        let rpl = UInt8(selector & 3)
        let errorCode = UInt32(selector & 0xfffc)
        if selector & 0xfffc == 0 {
            if index == X86CPU.ss {
                guard cpu.codeMode == .bits64, cpu.cpl != 3, rpl == cpu.cpl else { throw .fault(.gp(0)) }
                var null = Self.nullSegment(selector)
                null.dpl = cpu.cpl
                cpu.segments[index] = null
            } else {
                cpu.segments[index] = Self.nullSegment(selector)
            }
            return
        }
        let d = try readDescriptor(selector)
        if index == X86CPU.ss {
            guard rpl == cpu.cpl, d.isData, d.readableOrWritable, d.dpl == cpu.cpl else {
                throw .fault(.gp(errorCode))
            }
            guard d.present else { throw .fault(.ss(errorCode)) }
        } else {
            guard d.isCodeOrData, d.isData || d.readableOrWritable else { throw .fault(.gp(errorCode)) }
            if !d.conforming {
                guard rpl <= d.dpl, cpu.cpl <= d.dpl else { throw .fault(.gp(errorCode)) }
            }
            guard d.present else { throw .fault(.np(errorCode)) }
        }
        try markAccessed(selector, d)
        cpu.segments[index] = d.segment(selector: selector)
    }

    /// Real-mode (or virtual-8086) code segment for `selector`: base `selector << 4`, other
    /// attributes kept (so "unreal" limits survive, as on hardware).
    func realModeCodeSegment(_ selector: UInt16) -> SegmentRegister {
        var cs = cpu.segments[X86CPU.cs]
        cs.selector = selector
        cs.base = UInt64(selector) << 4
        return cs
    }

    /// The code segment a far JMP or CALL to `selector` loads (same privilege only): a code
    /// segment, conforming with DPL ≤ CPL or non-conforming with RPL ≤ CPL and DPL = CPL, present.
    /// The new CS's RPL is the CPL. Gates and TSS selectors raise #GP(selector) (the caller
    /// switches tasks for TSSes and task gates outside IA-32e mode).
    func farTransferCodeSegment(_ selector: UInt16) throws(X86Interruption) -> SegmentRegister {
        guard selector & 0xfffc != 0 else { throw .fault(.gp(0)) }
        let errorCode = UInt32(selector & 0xfffc)
        let d = try readDescriptor(selector)
        guard d.isCode else { throw .fault(.gp(errorCode)) }
        if d.conforming {
            guard d.dpl <= cpu.cpl else { throw .fault(.gp(errorCode)) }
        } else {
            guard UInt8(selector & 3) <= cpu.cpl, d.dpl == cpu.cpl else { throw .fault(.gp(errorCode)) }
        }
        guard d.present else { throw .fault(.np(errorCode)) }
        if cpu.longModeActive && d.longMode && d.defaultSize32 { throw .fault(.gp(errorCode)) }
        try markAccessed(selector, d)
        return d.segment(selector: (selector & 0xfffc) | UInt16(cpu.cpl))
    }

    /// The code segment a far RET or IRET returns to: RPL ≥ CPL, DPL = RPL (≤ RPL if
    /// conforming), present.
    func returnCodeSegment(_ selector: UInt16) throws(X86Interruption) -> SegmentRegister {
        guard selector & 0xfffc != 0 else { throw .fault(.gp(0)) }
        let errorCode = UInt32(selector & 0xfffc)
        let rpl = UInt8(selector & 3)
        let d = try readDescriptor(selector)
        guard d.isCode, rpl >= cpu.cpl else { throw .fault(.gp(errorCode)) }
        if d.conforming {
            guard d.dpl <= rpl else { throw .fault(.gp(errorCode)) }
        } else {
            guard d.dpl == rpl else { throw .fault(.gp(errorCode)) }
        }
        guard d.present else { throw .fault(.np(errorCode)) }
        if cpu.longModeActive && d.longMode && d.defaultSize32 { throw .fault(.gp(errorCode)) }
        try markAccessed(selector, d)
        return d.segment(selector: selector)
    }

    /// The stack segment a return to privilege `cpl` loads: RPL = DPL = `cpl`, writable data,
    /// present (#SS). A null selector is allowed only when returning to 64-bit code at CPL < 3.
    func returnStackSegment(_ selector: UInt16, cpl: UInt8, to64Bit: Bool) throws(X86Interruption) -> SegmentRegister {
        let errorCode = UInt32(selector & 0xfffc)
        if selector & 0xfffc == 0 {
            guard to64Bit, cpl != 3, UInt8(selector & 3) == cpl else { throw .fault(.gp(0)) }
            var null = Self.nullSegment(selector)
            null.dpl = cpl
            return null
        }
        let d = try readDescriptor(selector)
        guard UInt8(selector & 3) == cpl, d.isData, d.readableOrWritable, d.dpl == cpl else {
            throw .fault(.gp(errorCode))
        }
        guard d.present else { throw .fault(.ss(errorCode)) }
        try markAccessed(selector, d)
        return d.segment(selector: selector)
    }

    /// After a return to an outer (less privileged) level: ES, DS, FS, GS holding data or
    /// non-conforming code segments more privileged than the new CPL become null.
    func nullSegmentsAboveCPL() {
        for index in [X86CPU.es, X86CPU.ds, X86CPU.fs, X86CPU.gs] {
            let s = cpu.segments[index]
            let conformingCode = s.isCodeOrData && s.type & 0xc == 0xc
            if s.present && !conformingCode && s.dpl < cpu.cpl {
                cpu.segments[index] = Self.nullSegment(0, base: s.base)
            }
        }
    }
}
