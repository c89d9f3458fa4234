// The x87 control and environment instructions: FNINIT, FNCLEX, FNSTCW/FLDCW, FNSTSW,
// FNSTENV/FLDENV and FNSAVE/FRSTOR with the layouts of SDM Vol. 1 figures 8-9 to 8-12 (32- and
// 16-bit, protected and real-address mode), and the derived status bits ES and B.
//
// FNSTENV stores the reserved upper halves of the 32-bit layout's words as ones, and then masks
// every exception. FLDENV/FRSTOR load the tags as empty or not (the full tag word is computed
// from the registers when stored). These are the x87's control instructions: they do not record
// FOP, FIP or FDP.

import VisorX86Decode

extension X86Machine {
    func executeX87Control(_ insn: DecodedInstruction) throws(X86Interruption) {
        switch insn.operation {
        case .fnIgnored:
            break
        case .fninit:
            resetX87()
        case .fnclex:
            cpu.fsw &= ~(0x3f | Self.fswStackFault | Self.fswErrorSummary)
        case .fnstcw:
            try write(insn.destination, insn, UInt64(cpu.fcw))
        case .fnstsw:
            try write(insn.destination, insn, UInt64(cpu.fsw))
        case .fldcw:
            cpu.fcw = UInt16(truncatingIfNeeded: try read(insn.source, insn))
            updateErrorSummary()
        case .fnstenv, .fnsave:
            let save = insn.operation == .fnsave
            let env = x87EnvironmentImage(size16: insn.operandSize == 2)
            var image = [UInt8]()
            for i in 0..<env.count { image.append(env[i]) }
            if save {
                for i in 0..<8 {
                    let r = st(i)
                    for j in 0..<8 { image.append(UInt8(truncatingIfNeeded: r.significand >> (8 * UInt64(j)))) }
                    image.append(UInt8(truncatingIfNeeded: r.signExponent))
                    image.append(UInt8(truncatingIfNeeded: r.signExponent >> 8))
                }
            }
            try writeImage(insn, image)
            if save {
                resetX87()
            } else {
                cpu.fcw |= 0x3f
                updateErrorSummary()
            }
        default:  // .fldenv, .frstor
            let size16 = insn.operandSize == 2
            let envSize = size16 ? 14 : 28
            let total = insn.operation == .frstor ? envSize + 80 : envSize
            let linear = try linearAddress(segment: insn.memory.segment, offset: effectiveAddress(insn), size: total)
            var image = [UInt8](repeating: 0, count: total)
            for i in 0..<total { image[i] = UInt8(truncatingIfNeeded: try readLinear(linear &+ UInt64(i), size: 1)) }
            loadX87Environment(image, size16: size16)
            updateErrorSummary()
            if insn.operation == .frstor {
                for i in 0..<8 {
                    var sig: UInt64 = 0
                    for j in 0..<8 { sig |= UInt64(image[envSize + 10 * i + j]) << (8 * UInt64(j)) }
                    let se = UInt16(image[envSize + 10 * i + 8]) | UInt16(image[envSize + 10 * i + 9]) << 8
                    cpu.fpr[physicalRegister(i)] = Float80Bits(significand: sig, signExponent: se)
                }
            }
        }
    }

    /// FNINIT's state: control 037F, status 0, every register empty, pointers 0.
    func resetX87() {
        cpu.fcw = 0x037f; cpu.fsw = 0; cpu.ftw = 0
        cpu.fop = 0; cpu.fip = 0; cpu.fcs = 0; cpu.fdp = 0; cpu.fds = 0
    }

    /// ES and B follow the flags the control word leaves unmasked: the processor derives them
    /// (it raises #MF for an unmasked flag set by FXRSTOR or FLDENV whatever ES said, and clears
    /// ES and B loaded without one), so they are recomputed whenever the flags or masks change.
    func updateErrorSummary() {
        let pending = cpu.fsw & 0x3f & ~cpu.fcw & 0x3f != 0
        cpu.fsw = pending ? cpu.fsw | Self.fswErrorSummary : cpu.fsw & ~Self.fswErrorSummary
    }

    private func writeImage(_ insn: DecodedInstruction, _ image: [UInt8]) throws(X86Interruption) {
        let linear = try linearAddress(segment: insn.memory.segment, offset: effectiveAddress(insn), size: image.count)
        try probeWritable(linear, length: image.count)
        for (i, byte) in image.enumerated() { try writeLinear(linear &+ UInt64(i), size: 1, value: UInt64(byte)) }
    }

    /// The full tag word: 00 valid, 01 zero, 10 special (NaN, infinity, denormal, unsupported),
    /// 11 empty, for R0-R7.
    var fullTagWord: UInt16 {
        var tags: UInt16 = 0
        for p in 0..<8 {
            let tag: UInt16
            if cpu.ftw & (1 << UInt8(p)) == 0 {
                tag = 3
            } else {
                let r = cpu.fpr[p]
                let exponent = r.signExponent & 0x7fff
                if exponent == 0 {
                    tag = r.significand == 0 ? 1 : 2
                } else if exponent == 0x7fff || r.significand >> 63 == 0 {
                    tag = 2
                } else {
                    tag = 0
                }
            }
            tags |= tag << (2 * UInt16(p))
        }
        return tags
    }

    /// FNSTENV's image (SDM Vol. 1 figures 8-9 to 8-12): 28 bytes, or 14 with a 16-bit
    /// operand size; the real-mode layouts outside protected mode.
    func x87EnvironmentImage(size16: Bool) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: size16 ? 14 : 28)
        func put(_ value: UInt64, at offset: Int, _ count: Int) {
            for i in 0..<count { b[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
        }
        let word = size16 ? 2 : 4
        put(UInt64(cpu.fcw), at: 0, 2)
        put(UInt64(cpu.fsw), at: word, 2)
        put(UInt64(fullTagWord), at: 2 * word, 2)
        if !size16 {
            // The reserved upper halves of the first three doublewords read as ones.
            put(0xffff, at: 2, 2); put(0xffff, at: 6, 2); put(0xffff, at: 10, 2)
        }
        let fop = UInt64(cpu.fop & 0x7ff)
        if protectedMode {
            if size16 {
                put(cpu.fip, at: 6, 2); put(UInt64(cpu.fcs), at: 8, 2)
                put(cpu.fdp, at: 10, 2); put(UInt64(cpu.fds), at: 12, 2)
            } else {
                put(cpu.fip, at: 12, 4); put(UInt64(cpu.fcs) | fop << 16, at: 16, 4)
                put(cpu.fdp, at: 20, 4); put(UInt64(cpu.fds), at: 24, 4)
                put(0xffff, at: 26, 2)
            }
        } else {
            // Real-address mode: linear 20- or 32-bit pointers split around the opcode.
            let ip = cpu.fip &+ UInt64(cpu.fcs) << 4
            let dp = cpu.fdp &+ UInt64(cpu.fds) << 4
            if size16 {
                put(ip & 0xffff, at: 6, 2); put((ip >> 16 & 0xf) << 12 | fop, at: 8, 2)
                put(dp & 0xffff, at: 10, 2); put((dp >> 16 & 0xf) << 12, at: 12, 2)
            } else {
                put(ip & 0xffff, at: 12, 2); put((ip >> 16 & 0xffff) << 12 | fop, at: 16, 4)
                put(dp & 0xffff, at: 20, 2); put((dp >> 16 & 0xffff) << 12, at: 24, 4)
            }
        }
        return b
    }

    /// FLDENV/FRSTOR: control, status and tags (empty or not) and the pointers.
    func loadX87Environment(_ b: [UInt8], size16: Bool) {
        func get(_ offset: Int, _ count: Int) -> UInt64 {
            var v: UInt64 = 0
            for i in 0..<count where offset + i < b.count { v |= UInt64(b[offset + i]) << (8 * UInt64(i)) }
            return v
        }
        let word = size16 ? 2 : 4
        cpu.fcw = UInt16(truncatingIfNeeded: get(0, 2))
        cpu.fsw = UInt16(truncatingIfNeeded: get(word, 2))
        let tags = get(2 * word, 2)
        var abridged: UInt8 = 0
        for p in 0..<8 where (tags >> (2 * UInt64(p))) & 3 != 3 { abridged |= 1 << UInt8(p) }
        cpu.ftw = abridged
        if protectedMode {
            if size16 {
                cpu.fip = get(6, 2); cpu.fcs = UInt16(truncatingIfNeeded: get(8, 2))
                cpu.fdp = get(10, 2); cpu.fds = UInt16(truncatingIfNeeded: get(12, 2))
            } else {
                cpu.fip = get(12, 4); cpu.fcs = UInt16(truncatingIfNeeded: get(16, 2))
                cpu.fop = UInt16(truncatingIfNeeded: get(18, 2)) & 0x7ff
                cpu.fdp = get(20, 4); cpu.fds = UInt16(truncatingIfNeeded: get(24, 2))
            }
        } else if size16 {
            cpu.fip = get(6, 2) | (get(8, 2) >> 12) << 16; cpu.fop = UInt16(truncatingIfNeeded: get(8, 2)) & 0x7ff
            cpu.fdp = get(10, 2) | (get(12, 2) >> 12) << 16
            cpu.fcs = 0; cpu.fds = 0
        } else {
            cpu.fip = get(12, 2) | (get(16, 4) >> 12 & 0xffff) << 16; cpu.fop = UInt16(truncatingIfNeeded: get(16, 2)) & 0x7ff
            cpu.fdp = get(20, 2) | (get(24, 4) >> 12 & 0xffff) << 16
            cpu.fcs = 0; cpu.fds = 0
        }
    }
}
