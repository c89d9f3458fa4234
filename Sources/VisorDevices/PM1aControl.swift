// The ACPI PM1a control register (PM1a_CNT, ACPI specification section 4.8.3.2.1) where QEMU's
// `pc` machine puts it: its PIIX4 power-management block starts at I/O port 0x600 and PM1a_CNT
// is at offset 4, so guests (and Linux's ACPI driver, through the FADT) power off by writing
// SLP_EN there, commonly as `outw(0x604, 0x2000)`.

import VisorCore

/// The 16-bit PM1a control register. Writing SLP_EN requests the machine's sleep state; Visor
/// has no sleeping states, so every sleep request is a soft power-off (S5) and the guest ends
/// with status 0. (QEMU's `pc` machine powers off for SLP_TYP 0 and suspends for other types.)
///
/// Not thread-safe: the owner serialises guest accesses.
public final class PM1aControl: PortDevice {
    /// The register is 16 bits wide: two ports.
    public static let portCount: UInt16 = 2

    /// SCI_EN: events raise an SCI (ACPI mode) rather than an SMI.
    public static let sciEnable: UInt16 = 0b0000_0000_0000_0001
    /// BM_RLD: bus-master requests move the processor from C3 to C0.
    public static let busMasterReload: UInt16 = 0b0000_0000_0000_0010
    /// GBL_RLS: raises an event to the BIOS's global lock.
    public static let globalRelease: UInt16 = 0b0000_0000_0000_0100
    /// SLP_TYP, bits 12-10: the sleeping state SLP_EN enters (from the DSDT's `\_Sx` objects).
    public static let sleepTypeMask: UInt16 = 0b0001_1100_0000_0000
    /// SLP_EN: write-only, enters the sleeping state in SLP_TYP. Always reads 0.
    public static let sleepEnable: UInt16 = 0b0010_0000_0000_0000

    /// Called once, when the guest first requests power-off.
    public typealias Handler = () -> Void

    /// The register's bits as last written, without the write-only SLP_EN.
    public private(set) var control: UInt16 = 0
    /// Whether the guest has asked to power off; the domain should end with status 0.
    public private(set) var poweredOff = false
    /// Called on the first power-off request.
    public var onPowerOff: Handler?

    public init(onPowerOff: Handler? = nil) {
        self.onPowerOff = onPowerOff
    }

    /// Reads the register's bytes that fall inside the two ports; bytes beyond them read as
    /// all ones, like undecoded ISA ports.
    public func read(offset: UInt16, size: UInt8) -> UInt32 {
        guard offset < Self.portCount else { return allOnes(size: size) }
        var result: UInt32 = 0
        for lane in 0..<min(UInt32(size), 4) {
            let port = UInt32(offset) + lane
            let byte: UInt32 = port < UInt32(Self.portCount) ? UInt32(control >> (port * 8)) & 0xff : 0xff
            result |= byte << (lane * 8)
        }
        return result
    }

    /// Writes the bytes of `value` that fall inside the two ports (so a byte write of 0x20 to
    /// the high port sets SLP_EN too); other bytes are ignored.
    public func write(offset: UInt16, size: UInt8, value: UInt32) {
        guard offset < Self.portCount else { return }
        var written = control
        var touched = false
        for lane in 0..<min(UInt32(size), 4) {
            let port = UInt32(offset) + lane
            guard port < UInt32(Self.portCount) else { continue }
            let byte = UInt16(truncatingIfNeeded: value >> (lane * 8))
            let shift = UInt16(port * 8)
            written = written & ~(0xff << shift) | byte << shift
            touched = true
        }
        guard touched else { return }
        control = written & ~Self.sleepEnable
        if written & Self.sleepEnable != 0 && !poweredOff {
            poweredOff = true
            onPowerOff?()
        }
    }
}
