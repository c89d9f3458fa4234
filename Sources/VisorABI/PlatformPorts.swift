// The I/O ports of Visor's PC-like platform that guests may rely on, and the ACPI bits and SCI
// line that go with them.

/// Fixed I/O port addresses of the emulated platform.
public enum PlatformPorts {
    /// COM1, a 16550A UART: eight registers from here.
    public static let com1: UInt16 = 0x3f8
    /// Number of registers of a 16550A.
    public static let uartRegisterCount: UInt16 = 8
    /// QEMU's `isa-debug-exit` port: writing `v` ends the guest with status `(v << 1) | 1`.
    public static let debugExit: UInt16 = 0xf4
    /// Width of the debug-exit port in bytes (QEMU's `iosize=4`).
    public static let debugExitSize: UInt16 = 4
    /// The ACPI PM1a event block (PM1_STS, then PM1_EN, 16 bits each), below PM1a_CNT as on
    /// QEMU's `pc` machine; the FADT names both.
    public static let acpiPM1aEvent: UInt16 = 0x600
    /// Width of the PM1a event block in bytes.
    public static let acpiPM1aEventSize: UInt16 = 4
    /// The ACPI PM1a control register (PM1a_CNT) where QEMU's `pc` machine has it: the PIIX4
    /// power-management block at 0x600, plus 4. Writing `acpiSleepEnable` powers off: status 0.
    public static let acpiPM1aControl: UInt16 = 0x604
    /// Width of PM1a_CNT in bytes.
    public static let acpiPM1aControlSize: UInt16 = 2
    /// The ACPI PM timer (PM_TMR_BLK): a 24-bit count at 3.579545 MHz, after PM1a_CNT as on
    /// QEMU's `pc` machine.
    public static let acpiPMTimer: UInt16 = 0x608
    /// Width of the PM timer register in bytes.
    public static let acpiPMTimerSize: UInt16 = 4
    /// PM1a_CNT.SLP_EN with SLP_TYP 0: the 16-bit value that requests soft power-off.
    public static let acpiSleepEnable: UInt16 = 0x2000
    /// PM1_STS.PWRBTN_STS and PM1_EN.PWRBTN_EN (bit 8 of each): the host pressed the power
    /// button; with the enable bit set the press raises the SCI. The status bit is write-one-to-clear.
    public static let acpiPowerButton: UInt16 = 1 << 8
    /// The ISA IRQ of the ACPI SCI (the FADT's SCI_INT): level-triggered, active high (the MADT's
    /// interrupt source override says so), on the I/O APIC's pin 9 and the slave 8259's IRQ 9.
    public static let acpiSCIInterrupt: UInt8 = 9
}
