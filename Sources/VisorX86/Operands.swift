// Reading and writing an instruction's operands: registers at their sizes, memory through
// segmentation and paging, immediates. Every interpreter family goes through these.

import VisorCore
import VisorX86Decode

extension X86Machine {
    /// The mask of the low `size` bytes.
    @inline(__always)
    public static func mask(_ size: UInt8) -> UInt64 {
        size >= 8 ? .max : (UInt64(1) << (UInt64(size) * 8)) &- 1
    }

    // MARK: Registers

    /// General-purpose register `index` at `size` bytes.
    @inline(__always)
    public func readRegister(_ index: UInt8, size: UInt8) -> UInt64 {
        cpu.gpr[Int(index & 15)] & Self.mask(size)
    }

    /// Writes register `index` at `size` bytes: 32-bit writes zero the upper half, 8- and 16-bit
    /// writes keep the other bits.
    @inline(__always)
    public func writeRegister(_ index: UInt8, size: UInt8, _ value: UInt64) {
        let i = Int(index & 15)
        switch size {
        case 8: cpu.gpr[i] = value
        case 4: cpu.gpr[i] = value & 0xffff_ffff
        default:
            let m = Self.mask(size)
            cpu.gpr[i] = (cpu.gpr[i] & ~m) | (value & m)
        }
    }

    // MARK: Memory operands

    /// The offset (effective address) of the instruction's memory operand, truncated to the
    /// address size. RIP-relative addresses count from the next instruction.
    public func effectiveAddress(_ insn: DecodedInstruction) -> UInt64 {
        let m = insn.memory
        var address = UInt64(bitPattern: m.displacement)
        if m.base == MemoryOperand.ripRelative {
            address = address &+ cpu.rip &+ UInt64(insn.length)
        } else if m.base != MemoryOperand.noRegister {
            address = address &+ cpu.gpr[Int(m.base & 15)]
        }
        if m.index != MemoryOperand.noRegister {
            address = address &+ cpu.gpr[Int(m.index & 15)] &* UInt64(m.scale)
        }
        return address & Self.mask(insn.addressSize)
    }

    /// The linear address of `offset` in segment `segment`, checked as the mode requires:
    /// canonical in 64-bit mode (#GP(0), or #SS(0) for the stack segment), otherwise within
    /// the segment's limit.
    public func linearAddress(segment: UInt8, offset: UInt64, size: Int) throws(X86Interruption) -> UInt64 {
        let s = Int(segment % 6)
        if cpu.codeMode == .bits64 {
            // Only FS and GS have bases in 64-bit mode.
            let base = (s == X86CPU.fs || s == X86CPU.gs) ? cpu.segments[s].base : 0
            let linear = base &+ offset
            guard Self.isCanonical(linear), Self.isCanonical(linear &+ UInt64(size - 1)) else {
                throw .fault(s == X86CPU.ss ? .ss(0) : .gp(0))
            }
            return linear
        }
        let seg = cpu.segments[s]
        // The cache holds the limit in bytes (granularity applied), as X86State and KVM do.
        if cpu.cr0 & X86.cr0ProtectionEnable != 0 && size > 0 {
            let last = offset &+ UInt64(size - 1)
            let limit = UInt64(seg.limit)
            let ok: Bool
            if !seg.present {
                ok = false  // a null (unusable) segment
            } else if seg.isCodeOrData && seg.type & 0xc == 0x4 {
                // Expand-down data: valid offsets are (limit, 0xffff or 0xffff_ffff].
                let top: UInt64 = seg.defaultSize32 ? 0xffff_ffff : 0xffff
                ok = offset > limit && last <= top && last >= offset
            } else {
                ok = last <= limit && last >= offset
            }
            guard ok else { throw .fault(s == X86CPU.ss ? .ss(0) : .gp(0)) }
        }
        return (seg.base &+ offset) & 0xffff_ffff
    }

    @inline(__always)
    public static func isCanonical(_ address: UInt64) -> Bool {
        let top = Int64(bitPattern: address) >> 47
        return top == 0 || top == -1
    }

    /// Reads `size` bytes at `segment:offset`.
    public func readMemory(segment: UInt8, offset: UInt64, size: Int) throws(X86Interruption) -> UInt64 {
        try readLinear(try linearAddress(segment: segment, offset: offset, size: size), size: size)
    }

    /// Writes `size` bytes at `segment:offset`.
    public func writeMemory(segment: UInt8, offset: UInt64, size: Int, value: UInt64) throws(X86Interruption) {
        try writeLinear(try linearAddress(segment: segment, offset: offset, size: size), size: size, value: value)
    }

    // MARK: Operands

    /// Reads an operand (register, high byte, memory, immediate, segment selector).
    public func read(_ operand: Operand, _ insn: DecodedInstruction) throws(X86Interruption) -> UInt64 {
        switch operand.kind {
        case .register: return readRegister(operand.index, size: operand.size)
        case .highByte: return (cpu.gpr[Int(operand.index & 3)] >> 8) & 0xff
        case .memory:
            return try readMemory(segment: insn.memory.segment, offset: effectiveAddress(insn), size: Int(operand.size))
        case .immediate: return insn.immediate & Self.mask(operand.size)
        case .segment: return UInt64(cpu.segments[Int(operand.index % 6)].selector)
        case .none, .control, .debug, .xmm, .mmx, .x87: throw .fault(.undefined)
        }
    }

    /// Writes an operand (register, high byte, memory).
    public func write(_ operand: Operand, _ insn: DecodedInstruction, _ value: UInt64) throws(X86Interruption) {
        switch operand.kind {
        case .register: writeRegister(operand.index, size: operand.size, value)
        case .highByte:
            let i = Int(operand.index & 3)
            cpu.gpr[i] = (cpu.gpr[i] & ~0xff00) | ((value & 0xff) << 8)
        case .memory:
            try writeMemory(segment: insn.memory.segment, offset: effectiveAddress(insn), size: Int(operand.size),
                            value: value)
        case .none, .immediate, .segment, .control, .debug, .xmm, .mmx, .x87: throw .fault(.undefined)
        }
    }

    // MARK: Stack

    /// The stack pointer's width: 8 in 64-bit mode, else 4 or 2 from SS.B.
    public var stackAddressSize: UInt8 {
        if cpu.codeMode == .bits64 { return 8 }
        return cpu.segments[X86CPU.ss].defaultSize32 ? 4 : 2
    }

    /// Pushes `size` bytes.
    public func push(_ value: UInt64, size: UInt8) throws(X86Interruption) {
        let width = stackAddressSize
        let rsp = (readRegister(4, size: width) &- UInt64(size)) & Self.mask(width)
        try writeMemory(segment: UInt8(X86CPU.ss), offset: rsp, size: Int(size), value: value)
        writeRegister(4, size: width, rsp)
    }

    /// Pops `size` bytes.
    public func pop(size: UInt8) throws(X86Interruption) -> UInt64 {
        let width = stackAddressSize
        let rsp = readRegister(4, size: width)
        let value = try readMemory(segment: UInt8(X86CPU.ss), offset: rsp, size: Int(size))
        writeRegister(4, size: width, (rsp &+ UInt64(size)) & Self.mask(width))
        return value
    }
}
