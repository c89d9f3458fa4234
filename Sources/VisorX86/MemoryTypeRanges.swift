// The memory-type range registers (MTRRs, SDM Vol. 3A 12.11) and the read-only identification
// MSRs Linux reads at boot. A software CPU has no caches, so memory types change nothing; the
// registers hold what the guest writes, with the SDM's #GP checks (reserved bits, invalid
// types), so that an OS can program them as on hardware and read them back.
//
// IA32_MTRRCAP reports 8 variable ranges, the fixed ranges and write-combining, no SMRR.
// IA32_PLATFORM_ID reads 0; IA32_FEATURE_CONTROL reads "locked, VMX off" (Visor offers no VMX)
// and, being locked, refuses writes with #GP(0).

/// The MTRR state of one CPU. Reset value: every register 0 (MTRRs disabled, uncached default).
public struct MemoryTypeRangeRegisters: Equatable, Sendable {
    public static let capabilities: UInt32 = 0xfe, defaultType: UInt32 = 0x2ff
    public static let variableBase: UInt32 = 0x200, variableCount = 8
    /// IA32_MTRR_FIX64K_00000, FIX16K_80000, FIX16K_A0000, FIX4K_C0000 ... FIX4K_F8000.
    public static let fixedIndexes: [UInt32] = [0x250, 0x258, 0x259, 0x268, 0x269, 0x26a, 0x26b, 0x26c, 0x26d, 0x26e, 0x26f]
    public static let platformID: UInt32 = 0x17, featureControl: UInt32 = 0x3a

    /// VCNT 8, FIX, WC.
    static let capabilityValue: UInt64 = 8 | 1 << 8 | 1 << 10
    /// Physical-address bits above MAXPHYADDR (40) are reserved.
    static let physicalMask: UInt64 = ((1 << 40) - 1) & ~0xfff

    public var defaultTypeValue: UInt64 = 0
    public var fixed = [UInt64](repeating: 0, count: 11)
    /// PHYSBASE0, PHYSMASK0, PHYSBASE1, ...
    public var variable = [UInt64](repeating: 0, count: 16)

    public init() {}

    /// UC, WC, WT, WP, WB: the memory types a register may hold.
    static func validType(_ type: UInt64) -> Bool { [0, 1, 4, 5, 6].contains(type & 0xff) }

    /// The MSR's value, or nil when `index` is not one of these.
    public func read(_ index: UInt32) -> UInt64? {
        switch index {
        case Self.capabilities: return Self.capabilityValue
        case Self.defaultType: return defaultTypeValue
        case Self.platformID: return 0
        case Self.featureControl: return 1  // locked, VMX disabled
        case Self.variableBase..<Self.variableBase + UInt32(2 * Self.variableCount):
            return variable[Int(index - Self.variableBase)]
        default:
            guard let i = Self.fixedIndexes.firstIndex(of: index) else { return nil }
            return fixed[i]
        }
    }

    /// Writes the MSR: true if done, false for #GP(0) (a reserved bit, an invalid type, a
    /// read-only register); nil when `index` is not one of these.
    public mutating func write(_ index: UInt32, _ value: UInt64) -> Bool? {
        switch index {
        case Self.capabilities, Self.platformID, Self.featureControl:
            return false
        case Self.defaultType:
            // Type (7:0), FE (10), E (11).
            guard value & ~0xcff == 0, Self.validType(value) else { return false }
            defaultTypeValue = value
            return true
        case Self.variableBase..<Self.variableBase + UInt32(2 * Self.variableCount):
            let i = Int(index - Self.variableBase)
            if i % 2 == 0 {
                // PHYSBASE: type (7:0), base.
                guard value & ~(Self.physicalMask | 0xff) == 0, Self.validType(value) else { return false }
            } else {
                // PHYSMASK: valid (11), mask.
                guard value & ~(Self.physicalMask | 1 << 11) == 0 else { return false }
            }
            variable[i] = value
            return true
        default:
            guard let i = Self.fixedIndexes.firstIndex(of: index) else { return nil }
            for byte in 0..<8 where !Self.validType(value >> (8 * UInt64(byte))) { return false }
            fixed[i] = value
            return true
        }
    }
}
