// The ACPI PM1a event block (ACPI specification section 4.8.3.1): the PM1 status register
// (PM1_STS, 16 bits at +0) and the PM1 enable register (PM1_EN, 16 bits at +2), where QEMU's
// `pc` machine puts them, at I/O port 0x600, just below PM1a_CNT at 0x604. The FADT names it, and
// ACPI requires it of every machine that is not hardware-reduced: the OS clears status bits,
// enables the fixed events it handles, and reads both in its SCI handler.
//
// The one event source Visor has is the power button (`pressPowerButton()`, for a host to ask
// the guest to shut down); the SCI output is high while an enabled event's status bit is set.
// Status bits are write-one-to-clear.

import VisorCore

/// The PM1a status and enable registers.
///
/// Not thread-safe: the owner serialises guest accesses.
public final class PM1aEvent: PortDevice {
    /// PM1_STS and PM1_EN, two bytes each.
    public static let portCount: UInt16 = 4

    /// PM1_STS / PM1_EN bits.
    public enum Bit {
        public static let timer: UInt16 = 1 << 0
        public static let busMaster: UInt16 = 1 << 4
        public static let global: UInt16 = 1 << 5
        public static let powerButton: UInt16 = 1 << 8
        public static let sleepButton: UInt16 = 1 << 9
        public static let rtc: UInt16 = 1 << 10
        /// WAK_STS: status only.
        public static let wake: UInt16 = 1 << 15
    }

    /// The bits a PM1_EN write keeps (WAK has no enable; bits 1-4, 6-7, 11-15 are reserved).
    static let enableWritable: UInt16 = Bit.timer | Bit.global | Bit.powerButton | Bit.sleepButton | Bit.rtc

    /// The SCI, the ACPI system control interrupt (ISA IRQ 9, level-triggered, as the FADT says).
    public let sciLine: any InterruptLine
    public private(set) var status: UInt16 = 0
    public private(set) var enable: UInt16 = 0
    private var sciLevel = false

    public init(sciLine: any InterruptLine = NoInterruptLine()) {
        self.sciLine = sciLine
    }

    /// The power button was pressed: PWRBTN_STS is set, and the SCI raised when it is enabled.
    public func pressPowerButton() {
        status |= Bit.powerButton
        updateSCI()
    }

    public func read(offset: UInt16, size: UInt8) -> UInt32 {
        var result: UInt32 = 0
        for lane in 0..<UInt32(min(size, 4)) {
            let port = UInt32(offset) + lane
            let byte: UInt32
            switch port {
            case 0, 1: byte = UInt32(status >> ((port & 1) * 8)) & 0xff
            case 2, 3: byte = UInt32(enable >> ((port & 1) * 8)) & 0xff
            default: byte = 0xff
            }
            result |= byte << (lane * 8)
        }
        return result
    }

    public func write(offset: UInt16, size: UInt8, value: UInt32) {
        for lane in 0..<UInt32(min(size, 4)) {
            let port = UInt32(offset) + lane
            let byte = UInt16(truncatingIfNeeded: value >> (lane * 8))
            let shift = UInt16((port & 1) * 8)
            switch port {
            case 0, 1: status &= ~(byte << shift)  // write one to clear
            case 2, 3: enable = (enable & ~(0xff << shift) | byte << shift) & Self.enableWritable
            default: continue
            }
        }
        updateSCI()
    }

    private func updateSCI() {
        let level = status & enable != 0
        if level != sciLevel {
            sciLevel = level
            sciLine.setLevel(level)
        }
    }
}
