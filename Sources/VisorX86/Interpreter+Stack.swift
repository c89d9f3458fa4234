// Stack instructions: PUSH POP PUSHF POPF PUSHA POPA ENTER LEAVE.
//
// Every instruction here reads and writes memory before it commits rSP/rBP, so a fault (#SS,
// #PF) leaves the registers unchanged. POP into a segment register belongs to the system
// family (a descriptor load), so `executeGeneral` leaves it alone.
//
// POPF follows the SDM's privilege rules: at CPL 0 every flag but VIP, VIF and VM may change;
// above CPL 0 IOPL is kept, and IF too when CPL > IOPL; RF is cleared by 32/64-bit POPF.
// In virtual-8086 mode POPF/PUSHF with IOPL < 3 raise #GP(0) (VME is not modelled).

import VisorCore
import VisorX86Decode

extension X86Machine {
    func executeStack(_ insn: DecodedInstruction) throws(X86Interruption) -> Bool {
        let size = insn.operandSize
        let width = stackAddressSize
        let ss = UInt8(X86CPU.ss)
        switch insn.operation {
        case .push:
            if insn.source.kind == .segment { countSensitive(.pushSegment) }
            let value = try readValue(insn.source, insn, size: size)
            try push(value, size: size)
        case .pop:
            if insn.destination.kind == .segment { return false }
            let rsp = readRegister(4, size: width)
            let value = try readMemory(segment: ss, offset: rsp, size: Int(size))
            let saved = cpu.gpr[X86CPU.rsp]
            // rSP is incremented first: a memory destination's address uses the new value, and
            // `pop rsp` ends with the popped value.
            writeRegister(4, size: width, (rsp &+ UInt64(size)) & Self.mask(width))
            do {
                try write(insn.destination, insn, value)
            } catch let e {
                cpu.gpr[X86CPU.rsp] = saved
                throw e
            }
        case .pushf:
            countSensitive(.pushf)
            try checkVirtual8086FlagAccess()
            let image = cpu.rflags & ~(RFlag.resume | RFlag.virtual8086)
            try push(image & Self.mask(size), size: size)
        case .popf:
            countSensitive(.popf)
            try checkVirtual8086FlagAccess()
            let value = try pop(size: size)
            var writable = RFlag.status | RFlag.trap | RFlag.interrupt | RFlag.direction | RFlag.iopl
                | RFlag.nestedTask | RFlag.alignmentCheck | RFlag.identification
            let cpl = UInt64(cpu.cr0 & X86.cr0ProtectionEnable == 0 ? 0 : cpu.cpl)
            if cpl > 0 || flag(RFlag.virtual8086) {
                writable &= ~RFlag.iopl
                let iopl = (cpu.rflags & RFlag.iopl) >> 12
                if cpl > iopl { writable &= ~RFlag.interrupt }
            }
            var flags = cpu.rflags
            if size == 2 {
                writable &= 0xffff
            } else {
                flags &= ~RFlag.resume
            }
            cpu.rflags = (flags & ~writable) | (value & writable) | RFlag.reserved1
        case .pusha:
            guard cpu.codeMode != .bits64 else { throw .fault(.undefined) }
            var rsp = readRegister(4, size: width)
            let original = readRegister(4, size: size)
            for i in [0, 1, 2, 3, 4, 5, 6, 7] {
                let value = i == 4 ? original : readRegister(UInt8(i), size: size)
                rsp = (rsp &- UInt64(size)) & Self.mask(width)
                try writeMemory(segment: ss, offset: rsp, size: Int(size), value: value)
            }
            writeRegister(4, size: width, rsp)
        case .popa:
            guard cpu.codeMode != .bits64 else { throw .fault(.undefined) }
            let rsp = readRegister(4, size: width)
            var values = [UInt64](repeating: 0, count: 8)
            for i in 0..<8 {
                let offset = (rsp &+ UInt64(i) &* UInt64(size)) & Self.mask(width)
                values[7 - i] = try readMemory(segment: ss, offset: offset, size: Int(size))
            }
            for i in 0..<8 where i != 4 { writeRegister(UInt8(i), size: size, values[i]) }
            writeRegister(4, size: width, (rsp &+ 8 &* UInt64(size)) & Self.mask(width))
        case .enter:
            let allocation = insn.immediate & 0xffff
            let level = insn.immediate2 & 31
            var rsp = readRegister(4, size: width)
            var rbp = readRegister(5, size: width)
            rsp = (rsp &- UInt64(size)) & Self.mask(width)
            try writeMemory(segment: ss, offset: rsp, size: Int(size), value: readRegister(5, size: size))
            let frame = rsp
            if level > 0 {
                var i: UInt64 = 1
                while i < level {
                    rbp = (rbp &- UInt64(size)) & Self.mask(width)
                    let outer = try readMemory(segment: ss, offset: rbp, size: Int(size))
                    rsp = (rsp &- UInt64(size)) & Self.mask(width)
                    try writeMemory(segment: ss, offset: rsp, size: Int(size), value: outer)
                    i += 1
                }
                rsp = (rsp &- UInt64(size)) & Self.mask(width)
                try writeMemory(segment: ss, offset: rsp, size: Int(size), value: frame)
            }
            writeRegister(5, size: size, frame)
            writeRegister(4, size: width, (rsp &- allocation) & Self.mask(width))
        default:  // .leave
            let rbp = readRegister(5, size: width)
            let value = try readMemory(segment: ss, offset: rbp, size: Int(size))
            writeRegister(4, size: width, (rbp &+ UInt64(size)) & Self.mask(width))
            writeRegister(5, size: size, value)
        }
        retire(insn)
        return true
    }

    /// PUSHF/POPF in virtual-8086 mode need IOPL 3 (no VME).
    @inline(__always)
    private func checkVirtual8086FlagAccess() throws(X86Interruption) {
        if flag(RFlag.virtual8086) && cpu.rflags & RFlag.iopl != RFlag.iopl { throw .fault(.gp(0)) }
    }
}
