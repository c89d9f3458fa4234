// The ACPI power-management timer (ACPI specification section 4.8.3.3): a free-running 24-bit
// counter at 3.579545 MHz, read as a 32-bit I/O port (PM_TMR_BLK, where QEMU's `pc` machine has
// it: 0x608). The FADT names it. Linux uses it as a clock source (`acpi_pm`) and, above all, as the
// clock-source watchdog's reference: without it the watchdog measures the TSC against jiffies,
// which lag when a slow vCPU takes timer ticks late, and declares a good TSC unstable.
//
// The count is the virtual clock scaled to the timer's rate, so it agrees with the TSC, the PIT
// and the APIC timer exactly. Simplification: TMR_STS (the status bit set when bit 23 changes)
// is never set, and so never raises the SCI; the FADT's TMR_VAL_EXT flag is clear (24 bits).

import VisorCore

/// The PM timer's counter register.
///
/// Not thread-safe: the owner serialises guest accesses.
public final class ACPIPMTimer: PortDevice {
    /// The register is 32 bits wide: four ports.
    public static let portCount: UInt16 = 4
    /// The timer's rate: the PC's 14.31818 MHz crystal divided by 4.
    public static let frequency: UInt64 = 3_579_545
    /// The counter's width: 24 bits.
    public static let mask: UInt32 = 0x00ff_ffff

    public let clock: any TimeSource

    public init(clock: any TimeSource) {
        self.clock = clock
    }

    /// The counter now.
    public var count: UInt32 {
        UInt32(truncatingIfNeeded: scale(clock.nanoseconds, by: Self.frequency, over: nanosecondsPerSecond)) & Self.mask
    }

    /// Reads the bytes of the counter that fall inside the four ports (bits 31-24 read 0);
    /// bytes past them read as all ones.
    public func read(offset: UInt16, size: UInt8) -> UInt32 {
        let value = count
        var result: UInt32 = 0
        for lane in 0..<UInt32(min(size, 4)) {
            let port = UInt32(offset) + lane
            let byte = port < UInt32(Self.portCount) ? value >> (port * 8) & 0xff : 0xff
            result |= byte << (lane * 8)
        }
        return result
    }

    /// The counter is read-only.
    public func write(offset: UInt16, size: UInt8, value: UInt32) {}
}
