// The ACPI tables a PC guest's OS reads to find its processors, interrupt controllers and power
// controls (ACPI specification 6.4, chapter 5), built as plain bytes for the boot loader to copy
// into the BIOS area. Nothing here touches guest memory or knows about devices: the platform is
// described by numbers (`ACPIPlatform`), and the result is a byte array with its addresses.
//
// The set, all below 4 GiB so the 32-bit RSDT can point at every table:
//
//   RSDP ──▶ RSDT / XSDT ──▶ FACP (FADT) ──▶ DSDT (the \_S5 sleep object), FACS
//                        ├─▶ APIC (MADT): a local APIC per vCPU, the I/O APIC, ISA overrides, LINT1 NMI
//                        └─▶ HPET (when the platform has one): its register block and capabilities
//
// The FADT describes a PC that is not hardware-reduced: PM1a event block at 0x600 and control
// block at 0x604 (where QEMU's `pc` machine has them), no SMI command port (the machine is always
// in ACPI mode), no GPE blocks, a 24-bit PM timer at 0x608, SCI on ISA IRQ 9, an 8042 and legacy
// devices, no VGA, a fixed-feature power button. `poweroff` writes SLP_TYP from
// \_S5 (0) with SLP_EN into PM1a_CNT.

/// The platform the tables describe.
public struct ACPIPlatform: Sendable, Equatable {
    /// Processors, with APIC IDs (and ACPI processor UIDs) 0 to count - 1.
    public var processorCount: Int
    public var localAPICAddress: UInt32 = 0xfee0_0000
    public var ioAPICID: UInt8 = 0
    public var ioAPICAddress: UInt32 = 0xfec0_0000
    /// The first global system interrupt of the I/O APIC's pins.
    public var ioAPICInterruptBase: UInt32 = 0
    /// The ISA IRQ of the SCI (level-triggered, active high).
    public var sciInterrupt: UInt8 = 9
    public var pm1aEventBlock: UInt16 = 0x600
    public var pm1aControlBlock: UInt16 = 0x604
    /// The PM timer's port (0: none; the timer is optional since ACPI 5.0a).
    public var pmTimerBlock: UInt16 = 0x608
    /// The CMOS index of the RTC's century byte (0: none).
    public var rtcCenturyIndex: UInt8 = 0x32
    /// The 8042 keyboard controller is present (IA-PC boot architecture flag).
    public var has8042 = true
    /// Virtio-mmio devices, described in the DSDT (`LNRO0005`) for kernels that find them there.
    public var virtioMMIODevices: [VirtioMMIODevice] = []
    /// The HPET's register block, when there is one (0: none, and no HPET table).
    public var hpetAddress: UInt64 = 0
    /// The HPET's Event Timer Block ID: the low 32 bits of its GCAP_ID register.
    public var hpetEventTimerBlockID: UInt32 = 0
    /// The shortest period, in main counter ticks, the HPET counts in periodic mode.
    public var hpetMinimumPeriodicTicks: UInt16 = 0

    public init(processorCount: Int) { self.processorCount = processorCount }

    /// One virtio-mmio device: its register window and its interrupt (an ISA IRQ below 16, edge,
    /// active high as the MADT leaves it).
    public struct VirtioMMIODevice: Sendable, Equatable {
        public var base: UInt32
        public var length: UInt32
        public var interrupt: UInt8
        public init(base: UInt32, length: UInt32, interrupt: UInt8) {
            self.base = base; self.length = length; self.interrupt = interrupt
        }
    }
}

/// Where one table went.
public struct ACPITableLocation: Sendable, Equatable {
    /// The four-character signature ("RSD PTR " for the RSDP).
    public var signature: String
    public var address: UInt64
    public var length: Int
}

/// A built set of tables: the bytes to copy to `base` and where each table is.
public struct ACPITableSet: Sendable, Equatable {
    public var base: UInt64
    public var bytes: [UInt8]
    public var rsdpAddress: UInt64
    public var tables: [ACPITableLocation]

    /// The location of the table with `signature`.
    public func table(_ signature: String) -> ACPITableLocation? { tables.first { $0.signature == signature } }
}

public enum ACPITables {
    /// OEM ID in every header and the RSDP (6 characters).
    public static let oemID = "VISOR "
    /// OEM table ID (8 characters).
    public static let oemTableID = "VISORPC "
    /// Creator ID (4 characters).
    public static let creatorID = "VISR"
    /// Where PCs keep their firmware tables: the BIOS area 0xe0000-0xfffff, which Linux scans for
    /// the RSDP on 16-byte boundaries when no loader tells it where the RSDP is.
    public static let biosAreaStart: UInt64 = 0xe_0000
    public static let biosAreaEnd: UInt64 = 0x10_0000

    /// The MADT's interrupt source overrides, as on PCs and QEMU: the PIT's IRQ 0 reaches I/O APIC
    /// pin 2, and the SCI is level-triggered, active high.
    public static func interruptOverrides(for platform: ACPIPlatform) -> [(irq: UInt8, gsi: UInt32, flags: UInt16)] {
        [(0, platform.ioAPICInterruptBase + 2, 0),
         (platform.sciInterrupt, platform.ioAPICInterruptBase + UInt32(platform.sciInterrupt),
          MADT.polarityActiveHigh | MADT.triggerLevel)]
    }

    /// Builds the tables for `platform` to be copied to `base` (16-byte aligned, below 4 GiB).
    public static func build(_ platform: ACPIPlatform, at base: UInt64 = biosAreaStart) -> ACPITableSet {
        precondition(base % 16 == 0 && base < 1 << 32, "ACPI tables go 16-byte aligned below 4 GiB")
        precondition(platform.processorCount >= 1 && platform.processorCount <= 255, "1 to 255 processors")
        var blob = Blob(base: base)
        // The RSDP first, at `base` itself, where a scan of the BIOS area finds it.
        let rsdpOffset = blob.reserve(36, alignment: 16)
        let facs = blob.append(facsTable(), alignment: 64)
        let dsdt = blob.append(table("DSDT", revision: 2, body: DSDT.body(for: platform)), alignment: 16)
        let fadt = blob.append(table("FACP", revision: 6, body: fadtBody(platform, facs: facs, dsdt: dsdt)), alignment: 16)
        let madt = blob.append(table("APIC", revision: 5, body: madtBody(platform)), alignment: 16)
        var entries = [fadt, madt]
        var hpet: UInt64?
        if platform.hpetAddress != 0 {
            let address = blob.append(table("HPET", revision: 1, body: hpetBody(platform)), alignment: 16)
            entries.append(address)
            hpet = address
        }
        var rsdtBody: [UInt8] = []
        for entry in entries { rsdtBody.le(UInt32(entry)) }
        let rsdt = blob.append(table("RSDT", revision: 1, body: rsdtBody), alignment: 16)
        var xsdtBody: [UInt8] = []
        for entry in entries { xsdtBody.le(UInt64(entry)) }
        let xsdt = blob.append(table("XSDT", revision: 1, body: xsdtBody), alignment: 16)
        blob.put(rsdp(rsdt: rsdt, xsdt: xsdt), at: rsdpOffset)

        let tables = ([("RSD PTR ", base + UInt64(rsdpOffset)), ("FACS", facs), ("DSDT", dsdt), ("FACP", fadt),
                       ("APIC", madt), ("RSDT", rsdt), ("XSDT", xsdt)] + (hpet.map { [("HPET", $0)] } ?? []))
            .map { name, address in
                ACPITableLocation(signature: name, address: address,
                                  length: name == "RSD PTR " ? 36 : Int(blob.u32(at: Int(address - base) + 4)))
            }
        return ACPITableSet(base: base, bytes: blob.bytes, rsdpAddress: base + UInt64(rsdpOffset), tables: tables)
    }

    // MARK: The tables

    /// The Root System Description Pointer (section 5.2.5), revision 2: both the RSDT and XSDT.
    static func rsdp(rsdt: UInt64, xsdt: UInt64) -> [UInt8] {
        var b = Array("RSD PTR ".utf8)
        b.append(0)                       // checksum of the first 20 bytes, below
        b += Array(oemID.utf8)
        b.append(2)                       // revision: ACPI 2.0 and later
        b.le(UInt32(rsdt))
        b.le(UInt32(36))                  // length of the whole structure
        b.le(xsdt)
        b.append(0)                       // extended checksum of all 36 bytes, below
        b += [0, 0, 0]                    // reserved
        b[8] = checksum(b[0..<20])
        b[32] = checksum(b[0..<36])
        return b
    }

    /// The Firmware ACPI Control Structure (section 5.2.10): no waking vector, no global lock
    /// owner, version 2. It has no checksum.
    static func facsTable() -> [UInt8] {
        var b = Array("FACS".utf8)
        b.le(UInt32(64))                  // length
        b.le(UInt32(0))                   // hardware signature
        b.le(UInt32(0))                   // firmware waking vector
        b.le(UInt32(0))                   // global lock
        b.le(UInt32(0))                   // flags: no S4BIOS, no 64-bit wake
        b.le(UInt64(0))                   // X firmware waking vector
        b.append(2)                       // version
        b += [UInt8](repeating: 0, count: 64 - b.count)
        return b
    }

    /// The Fixed ACPI Description Table body (section 5.2.9, the 6.x layout: 276 bytes in all).
    static func fadtBody(_ p: ACPIPlatform, facs: UInt64, dsdt: UInt64) -> [UInt8] {
        var b: [UInt8] = []
        b.le(UInt32(facs))                // 36 FIRMWARE_CTRL
        b.le(UInt32(dsdt))                // 40 DSDT
        b.append(0)                       // 44 reserved (ACPI 1.0 INT_MODEL)
        b.append(0)                       // 45 Preferred_PM_Profile: unspecified
        b.le(UInt16(p.sciInterrupt))      // 46 SCI_INT
        b.le(UInt32(0))                   // 48 SMI_CMD: none, the machine is always in ACPI mode
        b += [0, 0, 0, 0]                 // 52 ACPI_ENABLE, ACPI_DISABLE, S4BIOS_REQ, PSTATE_CNT
        b.le(UInt32(p.pm1aEventBlock))    // 56 PM1a_EVT_BLK
        b.le(UInt32(0))                   // 60 PM1b_EVT_BLK
        b.le(UInt32(p.pm1aControlBlock))  // 64 PM1a_CNT_BLK
        b.le(UInt32(0))                   // 68 PM1b_CNT_BLK
        b.le(UInt32(0))                   // 72 PM2_CNT_BLK
        b.le(UInt32(p.pmTimerBlock))      // 76 PM_TMR_BLK
        b.le(UInt32(0))                   // 80 GPE0_BLK
        b.le(UInt32(0))                   // 84 GPE1_BLK
        b.append(4)                       // 88 PM1_EVT_LEN: status + enable, 2 bytes each
        b.append(2)                       // 89 PM1_CNT_LEN
        b.append(0)                       // 90 PM2_CNT_LEN
        b.append(p.pmTimerBlock == 0 ? 0 : 4)  // 91 PM_TMR_LEN
        b += [0, 0, 0, 0]                 // 92 GPE0_BLK_LEN, GPE1_BLK_LEN, GPE1_BASE, CST_CNT
        b.le(UInt16(101))                 // 96 P_LVL2_LAT: > 100, C2 not supported
        b.le(UInt16(1001))                // 98 P_LVL3_LAT: > 1000, C3 not supported
        b.le(UInt32(0))                   // 100 FLUSH_SIZE, FLUSH_STRIDE
        b += [0, 0, 0, 0]                 // 104 DUTY_OFFSET, DUTY_WIDTH, DAY_ALRM, MON_ALRM
        b.append(p.rtcCenturyIndex)       // 108 CENTURY
        b.le(FADT.legacyDevices | (p.has8042 ? FADT.has8042 : 0) | FADT.vgaNotPresent)  // 109 IAPC_BOOT_ARCH
        b.append(0)                       // 111 reserved
        b.le(FADT.wbinvd | FADT.processorC1 | FADT.sleepButtonIsControlMethod | FADT.rtcWakeNotFixed)  // 112 Flags
        b += [UInt8](repeating: 0, count: 12)  // 116 RESET_REG: none (reboot goes through the 8042)
        b.append(0)                       // 128 RESET_VALUE
        b.le(UInt16(0))                   // 129 ARM_BOOT_ARCH
        b.append(0)                       // 131 FADT minor version: 6.0
        b.le(UInt64(0))                   // 132 X_FIRMWARE_CTRL: 0, FIRMWARE_CTRL holds it
        b.le(UInt64(0))                   // 140 X_DSDT: 0, DSDT holds it
        // 148-267: the X_ register blocks and the sleep registers, all zero: the 32-bit fields
        // above are used (the specification's rule for a zero 64-bit field).
        b += [UInt8](repeating: 0, count: 10 * 12)
        b.le(UInt64(0))                   // 268 hypervisor vendor identity
        return b
    }

    /// The Multiple APIC Description Table body (section 5.2.12).
    static func madtBody(_ p: ACPIPlatform) -> [UInt8] {
        var b: [UInt8] = []
        b.le(p.localAPICAddress)
        b.le(MADT.pcatCompatible)         // dual 8259s are present too
        for index in 0..<p.processorCount {
            // Processor Local APIC: type 0, length 8, UID, APIC ID, flags (enabled).
            b += [MADT.typeLocalAPIC, 8, UInt8(index), UInt8(index)]
            b.le(MADT.enabled)
        }
        // I/O APIC: type 1, length 12, ID, reserved, address, global system interrupt base.
        b += [MADT.typeIOAPIC, 12, p.ioAPICID, 0]
        b.le(p.ioAPICAddress)
        b.le(p.ioAPICInterruptBase)
        for override in interruptOverrides(for: p) {
            // Interrupt Source Override: type 2, length 10, bus 0 (ISA), source IRQ, GSI, flags.
            b += [MADT.typeInterruptSourceOverride, 10, 0, override.irq]
            b.le(override.gsi)
            b.le(override.flags)
        }
        // Local APIC NMI: type 4, length 6, every processor (UID 0xff), flags (conforming), LINT1.
        b += [MADT.typeLocalAPICNMI, 6, 0xff]
        b.le(UInt16(0))
        b.append(1)
        return b
    }

    /// The IA-PC HPET description table's body (HPET specification 1.0a, section 3.2.4): the
    /// Event Timer Block ID (GCAP_ID's low half), the block's address as a Generic Address
    /// Structure in system memory, HPET number 0, the minimum periodic tick, and page protection
    /// 1 (nothing else in the block's 4 KiB page).
    static func hpetBody(_ p: ACPIPlatform) -> [UInt8] {
        var b: [UInt8] = []
        b.le(p.hpetEventTimerBlockID)
        b += [0, 64, 0, 0]                // GAS: system memory, 64-bit registers, offset 0, access size undefined
        b.le(p.hpetAddress)
        b.append(0)                       // HPET number
        b.le(p.hpetMinimumPeriodicTicks)
        b.append(1)                       // page protection: 4 KiB
        return b
    }

    /// A table: the 36-byte System Description Table Header (section 5.2.6) and `body`, with its
    /// checksum set.
    static func table(_ signature: String, revision: UInt8, body: [UInt8]) -> [UInt8] {
        var b = Array(signature.utf8)
        b.le(UInt32(36 + body.count))     // length
        b.append(revision)
        b.append(0)                       // checksum, below
        b += Array(oemID.utf8)
        b += Array(oemTableID.utf8)
        b.le(UInt32(1))                   // OEM revision
        b += Array(creatorID.utf8)
        b.le(UInt32(1))                   // creator revision
        b += body
        b[9] = checksum(b[...])
        return b
    }

    /// The byte that makes `bytes` sum to zero modulo 256.
    static func checksum(_ bytes: ArraySlice<UInt8>) -> UInt8 {
        0 &- bytes.reduce(0, &+)
    }
}

/// FADT field values.
enum FADT {
    // IAPC_BOOT_ARCH (offset 109).
    static let legacyDevices: UInt16 = 1 << 0
    static let has8042: UInt16 = 1 << 1
    static let vgaNotPresent: UInt16 = 1 << 2
    // Flags (offset 112).
    /// WBINVD works (flushes every cache).
    static let wbinvd: UInt32 = 1 << 0
    /// C1 (HLT) works on every processor.
    static let processorC1: UInt32 = 1 << 2
    /// PWR_BUTTON clear: the power button is the fixed-feature one (PM1 PWRBTN_STS/EN).
    /// SLP_BUTTON set: there is no fixed-feature sleep button.
    static let sleepButtonIsControlMethod: UInt32 = 1 << 5
    /// FIX_RTC set: the RTC alarm does not wake the machine through PM1 RTC_STS.
    static let rtcWakeNotFixed: UInt32 = 1 << 6
}

/// MADT structure types and flags.
public enum MADT {
    public static let typeLocalAPIC: UInt8 = 0
    public static let typeIOAPIC: UInt8 = 1
    public static let typeInterruptSourceOverride: UInt8 = 2
    public static let typeLocalAPICNMI: UInt8 = 4
    /// MADT flags bit 0: the PC-AT dual 8259 setup is present too.
    public static let pcatCompatible: UInt32 = 1
    /// Local APIC flags bit 0: the processor is usable.
    public static let enabled: UInt32 = 1
    /// MPS INTI flags: polarity bits 1-0 and trigger mode bits 3-2.
    public static let polarityActiveHigh: UInt16 = 0b01
    public static let polarityActiveLow: UInt16 = 0b11
    public static let triggerEdge: UInt16 = 0b01 << 2
    public static let triggerLevel: UInt16 = 0b11 << 2
}

/// Bytes laid out at increasing, aligned offsets from a base address.
struct Blob {
    let base: UInt64
    var bytes: [UInt8] = []

    /// Zero bytes at the next `alignment`-aligned offset; returns the offset.
    mutating func reserve(_ count: Int, alignment: Int) -> Int {
        let offset = (bytes.count + alignment - 1) / alignment * alignment
        bytes += [UInt8](repeating: 0, count: offset + count - bytes.count)
        return offset
    }

    /// `data` at the next aligned offset; returns its guest address.
    mutating func append(_ data: [UInt8], alignment: Int) -> UInt64 {
        let offset = reserve(data.count, alignment: alignment)
        put(data, at: offset)
        return base + UInt64(offset)
    }

    mutating func put(_ data: [UInt8], at offset: Int) {
        bytes.replaceSubrange(offset..<(offset + data.count), with: data)
    }

    func u32(at offset: Int) -> UInt32 {
        (0..<4).reduce(0) { $0 | UInt32(bytes[offset + $1]) << (8 * $1) }
    }
}

extension Array where Element == UInt8 {
    /// Appends a little-endian integer.
    mutating func le<T: FixedWidthInteger>(_ value: T) {
        for i in 0..<(T.bitWidth / 8) { append(UInt8(truncatingIfNeeded: value >> (i * 8))) }
    }
}
