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
//
// Then, in Scope (\_SB), one device per virtio-mmio device, which Linux's virtio_mmio driver
// matches by its ACPI ID (a kernel built without CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES, as
// Debian's, finds them only so):
//
//         Device (VR00)
//         {
//             Name (_HID, "LNRO0005")
//             Name (_UID, 0)
//             Name (_CRS, ResourceTemplate ()
//             {
//                 Memory32Fixed (ReadWrite, 0xD0000000, 0x00001000)
//                 Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { 5 }
//             })
//         }
//
// Edge and active high because the MADT leaves ISA IRQs below 16 so, and Linux keeps the MADT's
// trigger for those whatever _CRS says (with a warning when they differ).

enum DSDT {
    /// The AML for `platform`: \_S5, then its virtio-mmio devices.
    /// The devices go in the system bus scope, `Scope (\_SB) { ... }`, as a PC's do.
    static func body(for platform: ACPIPlatform) -> [UInt8] {
        // At most 32 devices (about 2 KiB), well inside a two-byte PkgLength.
        let devices = platform.virtioMMIODevices.prefix(32).enumerated().flatMap { virtioMMIODevice($1, index: $0) }
        guard !devices.isEmpty else { return body }
        let contents: [UInt8] = [0x5c] + Array("_SB_".utf8) + devices  // RootChar, NameSeg
        return body + [0x10] + packageLength(contents.count) + contents  // ScopeOp
    }

    /// `Device (VRnn) { _HID, _UID, _CRS }` as in the header comment (nn: two decimal digits).
    static func virtioMMIODevice(_ device: ACPIPlatform.VirtioMMIODevice, index: Int) -> [UInt8] {
        func le32(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }
        let resources: [UInt8] =
            [0x86, 0x09, 0x00, 0x01] + le32(device.base) + le32(device.length)  // Memory32Fixed, read-write
            + [0x89, 0x06, 0x00, 0x03, 0x01] + le32(UInt32(device.interrupt))   // Extended Interrupt: consumer, edge, high, exclusive; one
            + [0x79, 0x00]                                                       // End Tag (checksum 0: not checked)
        let buffer: [UInt8] = [0x0a, UInt8(resources.count)] + resources       // BufferSize (BytePrefix) and the bytes
        let crs: [UInt8] = [0x08] + Array("_CRS".utf8) + [0x11] + packageLength(buffer.count) + buffer  // NameOp, BufferOp
        let hid: [UInt8] = [0x08] + Array("_HID".utf8) + [0x0d] + Array("LNRO0005".utf8) + [0x00]   // StringPrefix, NUL
        let uid: [UInt8] = [0x08] + Array("_UID".utf8) + [0x0a, UInt8(truncatingIfNeeded: index)]   // BytePrefix
        let digits = Array(String(index % 100).utf8)
        let name: [UInt8] = Array("VR".utf8) + (digits.count == 1 ? [0x30] + digits : digits)
        let contents = name + hid + uid + crs
        return [0x5b, 0x82] + packageLength(contents.count) + contents  // DeviceOp (ExtOpPrefix 0x82)
    }

    /// A PkgLength for `count` bytes after it (the encoding counts its own bytes too): one byte
    /// up to 63, else two (bits 7-6 = 1, low nibble, then the next byte).
    static func packageLength(_ count: Int) -> [UInt8] {
        if count + 1 <= 0x3f { return [UInt8(count + 1)] }
        let total = count + 2
        return [0x40 | UInt8(total & 0x0f), UInt8(truncatingIfNeeded: total >> 4)]
    }

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
