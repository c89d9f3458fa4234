// ModRM, SIB and displacement decoding (SDM vol. 2, 2.1.5, tables 2-1 to 2-3), 16-bit and
// 32/64-bit addressing, RIP-relative, and the default segment (SS for rBP/rSP bases).

/// The ModRM byte's fields.
struct ModRM {
    let raw: UInt8
    init(_ raw: UInt8) { self.raw = raw }
    var mod: UInt8 { raw >> 6 }
    var reg: UInt8 { (raw >> 3) & 7 }
    var rm: UInt8 { raw & 7 }
    /// mod = 11: the r/m field names a register.
    var isRegister: Bool { raw >= 0xc0 }
}

/// 16-bit addressing: r/m → (base, index, defaults to SS). BX=3, BP=5, SI=6, DI=7.
private let addressing16: [(base: UInt8, index: UInt8, stack: Bool)] = [
    (3, 6, false),                                  // 000 [BX+SI]
    (3, 7, false),                                  // 001 [BX+DI]
    (5, 6, true),                                   // 010 [BP+SI]
    (5, 7, true),                                   // 011 [BP+DI]
    (6, MemoryOperand.noRegister, false),           // 100 [SI]
    (7, MemoryOperand.noRegister, false),           // 101 [DI]
    (5, MemoryOperand.noRegister, true),            // 110 [BP] (mod=00: disp16 alone)
    (3, MemoryOperand.noRegister, false),           // 111 [BX]
]

extension DecoderState {
    /// Reads the SIB and displacement for the current ModRM (mod ≠ 11).
    mutating func readMemoryOperand(addressSize: UInt8, segmentOverride: UInt8?) throws(DecodeFailure)
        -> MemoryOperand
    {
        var memory = MemoryOperand()
        var stack = false
        let mod = modrm.mod
        if addressSize == 2 {
            let row = addressing16[Int(modrm.rm)]
            if mod == 0 && modrm.rm == 6 {
                memory.displacement = Int64(bitPattern: try cursor.signed(2))
            } else {
                memory.base = row.base
                memory.index = row.index
                stack = row.stack
                if mod == 1 {
                    memory.displacement = Int64(bitPattern: try cursor.signed(1))
                } else if mod == 2 {
                    memory.displacement = Int64(bitPattern: try cursor.signed(2))
                }
            }
        } else {
            var baseLow = modrm.rm
            var noBase = false
            if modrm.rm == 4 {
                let sib = try cursor.byte()
                let scaleBits = sib >> 6
                let index = ((sib >> 3) & 7) | rexX
                baseLow = sib & 7
                memory.scale = 1 << scaleBits
                if index != 4 { memory.index = index }
                if baseLow == 5 && mod == 0 { noBase = true }
            } else if modrm.rm == 5 && mod == 0 {
                if mode == .bits64 {
                    memory.base = MemoryOperand.ripRelative
                }
                noBase = true
            }
            if !noBase {
                let base = baseLow | rexB
                memory.base = base
                stack = base == 4 || base == 5
            }
            if mod == 1 {
                memory.displacement = Int64(bitPattern: try cursor.signed(1))
            } else if mod == 2 || noBase {
                memory.displacement = Int64(bitPattern: try cursor.signed(4))
            }
        }
        memory.segment = segmentOverride ?? (stack ? 2 : 3)
        return memory
    }
}
