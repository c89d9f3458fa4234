// The Differentiated System Description Table's AML: as small as Linux needs, written by hand.
//
// The one object is \_S5, the soft-off sleep state: its package gives the SLP_TYP values the OS
// writes into PM1a_CNT (and PM1b_CNT) with SLP_EN to power off. Without it Linux's ACPI sleep
// support has no S5, `pm_power_off` stays unset and `poweroff` only halts. Visor's PM1a control
// register powers off for any SLP_TYP; 0 is what the PIIX4 (and QEMU's `pc` machine) uses.
//
// In ASL (ACPI specification chapter 19) the table is:
//
//     DefinitionBlock ("", "DSDT", 2, "VISOR ", "VISORPC ", 1)
//     {
//         Name (_S5, Package (4) { 0, 0, 0, 0 })
//     }
//
// Everything else a PC's DSDT usually has (processor objects, a PCI root bridge, the PNP IDs of
// the serial port, RTC and 8042) is left out: Linux finds the processors in the MADT and probes
// the legacy devices at their standard ports without PNP.

enum DSDT {
    /// The AML byte code after the table header (ACPI specification section 20.2 for the grammar).
    static let body: [UInt8] = [
        0x08,                   // NameOp: DefName := NameOp NameString DataRefObject
        0x5f, 0x53, 0x35, 0x5f, // NameSeg "_S5_" (a name segment is four characters, '_' pads)
        0x12,                   // PackageOp: DefPackage := PackageOp PkgLength NumElements PackageElementList
        0x06,                   // PkgLength (one byte, bits 7-6 = 0): 6 bytes, itself included
        0x04,                   // NumElements: 4
        0x00,                   // ZeroOp: SLP_TYPa = 0
        0x00,                   // ZeroOp: SLP_TYPb = 0
        0x00,                   // ZeroOp: reserved
        0x00,                   // ZeroOp: reserved
    ]
}
