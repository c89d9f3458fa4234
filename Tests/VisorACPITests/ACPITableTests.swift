// The ACPI tables, read back the way an OS reads them: find the RSDP by scanning the BIOS area,
// follow the RSDT and XSDT, check every checksum and length, and decode the FADT, MADT and the
// DSDT's AML. A second suite hands the tables to ACPICA's own disassembler (`iasl -d`, the code
// Linux's ACPI core is built from) when it is installed.

import Foundation
import Testing
@testable import VisorACPI

/// Little-endian reads from a table set by guest address.
struct TableReader {
    let set: ACPITableSet
    func u8(_ address: UInt64) -> UInt8 { set.bytes[Int(address - set.base)] }
    func u16(_ a: UInt64) -> UInt16 { UInt16(u8(a)) | UInt16(u8(a + 1)) << 8 }
    func u32(_ a: UInt64) -> UInt32 { UInt32(u16(a)) | UInt32(u16(a + 2)) << 16 }
    func u64(_ a: UInt64) -> UInt64 { UInt64(u32(a)) | UInt64(u32(a + 4)) << 32 }
    func string(_ a: UInt64, _ count: Int) -> String {
        String(decoding: (0..<count).map { u8(a + UInt64($0)) }, as: UTF8.self)
    }
    func bytes(_ a: UInt64, _ count: Int) -> [UInt8] { (0..<count).map { u8(a + UInt64($0)) } }
    func sum(_ a: UInt64, _ count: Int) -> UInt8 { bytes(a, count).reduce(0, &+) }

    /// The address of an RSDP found as Linux's acpi_find_root_pointer looks for one: on 16-byte
    /// boundaries, "RSD PTR " with a valid checksum of the first 20 bytes (and of all 36 for
    /// revision 2).
    func scanForRSDP() -> UInt64? {
        var a = set.base
        while a + 36 <= set.base + UInt64(set.bytes.count) {
            if string(a, 8) == "RSD PTR ", sum(a, 20) == 0, u8(a + 15) < 2 || sum(a, 36) == 0 { return a }
            a += 16
        }
        return nil
    }

    /// The table pointed at by `address`: signature and length, after checking the checksum.
    func header(_ address: UInt64) -> (signature: String, length: Int) {
        (string(address, 4), Int(u32(address + 4)))
    }
}

@Suite struct ACPITableTests {
    let set = ACPITables.build(ACPIPlatform(processorCount: 3))
    var reader: TableReader { TableReader(set: set) }

    @Test func theRSDPIsWhereABIOSAreaScanFindsIt() {
        #expect(set.base == 0xe_0000)
        #expect(set.base + UInt64(set.bytes.count) <= ACPITables.biosAreaEnd, "every table inside 0xe0000-0xfffff")
        #expect(reader.scanForRSDP() == set.rsdpAddress)
        #expect(set.rsdpAddress % 16 == 0)
        #expect(reader.u8(set.rsdpAddress + 15) == 2, "revision 2: RSDT and XSDT")
        #expect(reader.u32(set.rsdpAddress + 20) == 36, "length")
        #expect(reader.string(set.rsdpAddress + 9, 6) == ACPITables.oemID)
    }

    @Test func rsdtAndXSDTListTheSameTables() throws {
        let rsdt = UInt64(reader.u32(set.rsdpAddress + 16))
        let xsdt = reader.u64(set.rsdpAddress + 24)
        #expect(reader.header(rsdt).signature == "RSDT")
        #expect(reader.header(xsdt).signature == "XSDT")
        let rsdtEntries = (0..<(reader.header(rsdt).length - 36) / 4).map { UInt64(reader.u32(rsdt + 36 + UInt64($0) * 4)) }
        let xsdtEntries = (0..<(reader.header(xsdt).length - 36) / 8).map { reader.u64(xsdt + 36 + UInt64($0) * 8) }
        #expect(rsdtEntries == xsdtEntries)
        #expect(rsdtEntries.map { reader.header($0).signature } == ["FACP", "APIC"])
    }

    @Test func everyTableSumsToZeroAndHasItsLength() {
        for table in set.tables {
            switch table.signature {
            case "RSD PTR ":
                #expect(reader.sum(table.address, 20) == 0)
                #expect(reader.sum(table.address, 36) == 0)
            case "FACS":
                #expect(reader.u32(table.address + 4) == 64)  // the FACS has no checksum
            default:
                #expect(reader.sum(table.address, table.length) == 0, "\(table.signature) checksum")
                #expect(reader.string(table.address, 4) == table.signature)
                #expect(reader.string(table.address + 10, 6) == ACPITables.oemID)
                #expect(reader.string(table.address + 16, 8) == ACPITables.oemTableID)
            }
        }
        // The tables do not overlap.
        let ranges = set.tables.map { $0.address..<($0.address + UInt64($0.length)) }.sorted { $0.lowerBound < $1.lowerBound }
        for (a, b) in zip(ranges, ranges.dropFirst()) { #expect(a.upperBound <= b.lowerBound) }
    }

    @Test func theFADTDescribesVisorsPowerManagementBlocks() throws {
        let fadt = try #require(set.table("FACP")).address
        #expect(reader.header(fadt).length == 276, "the ACPI 6 layout")
        #expect(reader.u8(fadt + 8) == 6, "revision")
        let facs = UInt64(reader.u32(fadt + 36)), dsdt = UInt64(reader.u32(fadt + 40))
        #expect(reader.string(facs, 4) == "FACS" && facs % 64 == 0, "the FACS is 64-byte aligned")
        #expect(reader.string(dsdt, 4) == "DSDT")
        #expect(reader.u16(fadt + 46) == 9, "SCI_INT")
        #expect(reader.u32(fadt + 48) == 0, "no SMI command port: always in ACPI mode")
        #expect(reader.u32(fadt + 56) == 0x600, "PM1a_EVT_BLK")
        #expect(reader.u32(fadt + 64) == 0x604, "PM1a_CNT_BLK, where Visor's PM1aControl is")
        #expect(reader.u8(fadt + 88) == 4 && reader.u8(fadt + 89) == 2, "PM1 event and control lengths")
        #expect(reader.u32(fadt + 76) == 0x608 && reader.u8(fadt + 91) == 4, "the PM timer")
        #expect(reader.u32(fadt + 112) & (1 << 8) == 0, "TMR_VAL_EXT clear: a 24-bit timer")
        #expect(reader.u8(fadt + 108) == 0x32, "the RTC century byte")
        let bootArch = reader.u16(fadt + 109)
        #expect(bootArch & 0b111 == 0b111, "legacy devices, an 8042, no VGA")
        let flags = reader.u32(fadt + 112)
        #expect(flags & (1 << 20) == 0, "not hardware-reduced: PM1 blocks and the 8259s are real")
        #expect(flags & (1 << 4) == 0, "a fixed-feature power button")
        #expect(flags & (1 << 10) == 0, "no reset register")
        #expect(reader.u64(fadt + 140) == 0, "X_DSDT 0: DSDT is used")
    }

    @Test func theMADTListsEveryProcessorTheIOAPICAndTheISAOverrides() throws {
        for count in [1, 2, 4, 64] {
            let set = ACPITables.build(ACPIPlatform(processorCount: count))
            let reader = TableReader(set: set)
            let madt = try #require(set.table("APIC"))
            #expect(reader.u32(madt.address + 36) == 0xfee0_0000, "local APIC address")
            #expect(reader.u32(madt.address + 40) & 1 == 1, "PC-AT compatible: 8259s present")
            var apicIDs: [UInt8] = []
            var ioAPICs: [(id: UInt8, address: UInt32, base: UInt32)] = []
            var overrides: [(irq: UInt8, gsi: UInt32, flags: UInt16)] = []
            var nmis = 0
            var at = madt.address + 44
            let end = madt.address + UInt64(madt.length)
            while at < end {
                let type = reader.u8(at), length = UInt64(reader.u8(at + 1))
                try #require(length >= 2 && at + length <= end, "structure lengths walk the table exactly")
                switch type {
                case 0:
                    #expect(length == 8)
                    #expect(reader.u8(at + 2) == reader.u8(at + 3), "UID = APIC ID")
                    #expect(reader.u32(at + 4) & 1 == 1, "enabled")
                    apicIDs.append(reader.u8(at + 3))
                case 1: ioAPICs.append((reader.u8(at + 2), reader.u32(at + 4), reader.u32(at + 8)))
                case 2: overrides.append((reader.u8(at + 3), reader.u32(at + 4), reader.u16(at + 8)))
                case 4:
                    #expect(reader.u8(at + 2) == 0xff && reader.u8(at + 5) == 1, "LINT1 NMI on every processor")
                    nmis += 1
                default: Issue.record("unexpected MADT structure type \(type)")
                }
                at += length
            }
            #expect(at == end)
            #expect(apicIDs == (0..<count).map { UInt8($0) }, "one local APIC per vCPU, IDs 0 to n-1")
            #expect(ioAPICs.count == 1 && ioAPICs[0].address == 0xfec0_0000 && ioAPICs[0].base == 0)
            #expect(overrides.count == 2)
            #expect(overrides.contains { $0.irq == 0 && $0.gsi == 2 && $0.flags == 0 }, "the PIT on pin 2")
            #expect(overrides.contains { $0.irq == 9 && $0.gsi == 9 && $0.flags == 0b1101 }, "SCI: level, active high")
            #expect(nmis == 1)
        }
    }

    @Test func theDSDTDefinesS5WithSleepType0() throws {
        let dsdt = try #require(set.table("DSDT"))
        let aml = reader.bytes(dsdt.address + 36, dsdt.length - 36)
        // NameOp "_S5_" PackageOp PkgLength NumElements, then that many integers.
        #expect(Array(aml[0..<5]) == [0x08] + Array("_S5_".utf8))
        #expect(aml[5] == 0x12, "a package")
        let packageLength = Int(aml[6])
        #expect(packageLength & 0xc0 == 0 && 6 + packageLength == aml.count, "the package is the rest of the table")
        #expect(aml[7] == 4, "four elements")
        #expect(Array(aml[8...]) == [0, 0, 0, 0], "ZeroOp: SLP_TYPa = SLP_TYPb = 0")
    }

    @Test func withoutAPMTimerItsBlockIsZero() throws {
        var platform = ACPIPlatform(processorCount: 1)
        platform.pmTimerBlock = 0
        let set = ACPITables.build(platform)
        let reader = TableReader(set: set)
        let fadt = try #require(set.table("FACP")).address
        #expect(reader.u32(fadt + 76) == 0 && reader.u8(fadt + 91) == 0)
        #expect(reader.sum(fadt, 276) == 0)
    }

    /// A platform with an HPET, as Visor's.
    static var withHPET: ACPIPlatform {
        var platform = ACPIPlatform(processorCount: 2)
        platform.hpetAddress = 0xfed0_0000
        platform.hpetEventTimerBlockID = 0x8086_a201
        platform.hpetMinimumPeriodicTicks = 10_000
        return platform
    }

    @Test func theHPETTableGivesTheRegisterBlockAndCapabilitiesAndIsListed() throws {
        let set = ACPITables.build(Self.withHPET)
        let reader = TableReader(set: set)
        let hpet = try #require(set.table("HPET"))
        #expect(hpet.length == 56)
        #expect(reader.sum(hpet.address, hpet.length) == 0)
        #expect(reader.u32(hpet.address + 36) == 0x8086_a201, "Event Timer Block ID")
        #expect(reader.u8(hpet.address + 40) == 0, "GAS: system memory")
        #expect(reader.u64(hpet.address + 44) == 0xfed0_0000, "GAS address")
        #expect(reader.u8(hpet.address + 52) == 0, "HPET number")
        #expect(reader.u16(hpet.address + 53) == 10_000, "minimum periodic tick")
        let rsdt = UInt64(reader.u32(set.rsdpAddress + 16)), xsdt = reader.u64(set.rsdpAddress + 24)
        #expect(reader.header(rsdt).length == 36 + 3 * 4 && UInt64(reader.u32(rsdt + 36 + 8)) == hpet.address)
        #expect(reader.header(xsdt).length == 36 + 3 * 8 && reader.u64(xsdt + 36 + 16) == hpet.address)
        #expect(self.set.table("HPET") == nil, "no HPET, no table")
    }

    @Test func tablesCanGoElsewhereInTheBIOSArea() {
        let moved = ACPITables.build(ACPIPlatform(processorCount: 1), at: 0xf_0000)
        let reader = TableReader(set: moved)
        #expect(moved.rsdpAddress == 0xf_0000)
        #expect(reader.scanForRSDP() == 0xf_0000)
        for table in moved.tables { #expect(table.address >= 0xf_0000) }
        #expect(UInt64(reader.u32(moved.rsdpAddress + 16)) == moved.table("RSDT")?.address)
    }
}

/// ACPICA's disassembler on Visor's tables: it checks checksums and lengths and decodes every
/// field, as Linux's ACPI core (the same code) does at boot.
@Suite(.enabled(if: IASL.path != nil, "iasl (Debian's acpica-tools) is not installed"))
struct ACPICADisassemblyTests {
    let set = ACPITables.build(ACPIPlatform(processorCount: 2))

    /// Disassembles `signature`'s table and returns the .dsl text.
    func disassemble(_ signature: String, in set: ACPITableSet? = nil) throws -> String {
        let set = set ?? self.set
        let table = try #require(set.table(signature))
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("visor-acpi-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let file = folder.appendingPathComponent("\(signature.lowercased()).dat")
        let start = Int(table.address - set.base)
        try Data(set.bytes[start..<(start + table.length)]).write(to: file)
        let output = try IASL.run(["-d", file.path], in: folder)
        let dsl = folder.appendingPathComponent("\(signature.lowercased()).dsl")
        guard let text = try? String(contentsOf: dsl, encoding: .utf8) else {
            Issue.record("iasl wrote no disassembly:\n\(output)")
            return ""
        }
        #expect(!output.contains("Error") && !text.contains("Incorrect checksum"), "\(signature): \(output)")
        return text
    }

    @Test func fadtDecodes() throws {
        let text = try disassemble("FACP")
        #expect(text.contains("PM1A Event Block Address : 00000600"))
        #expect(text.contains("PM1A Control Block Address : 00000604"))
        #expect(text.contains("SCI Interrupt : 0009"))
        #expect(text.contains("PM Timer Block Address : 00000608"))
        #expect(text.contains("Hardware Reduced (V5) : 0"))
    }

    @Test func madtDecodes() throws {
        let text = try disassemble("APIC")
        #expect(text.components(separatedBy: "Subtable Type : 00 [Processor Local APIC]").count - 1 == 2)
        #expect(text.contains("Subtable Type : 01 [I/O APIC]"))
        #expect(text.contains("Address : FEC00000"))
        #expect(text.components(separatedBy: "[Interrupt Source Override]").count - 1 == 2)
    }

    @Test func hpetDecodes() throws {
        let text = try disassemble("HPET", in: ACPITables.build(ACPITableTests.withHPET))
        #expect(text.contains("[High Precision Event Timer table]"))
        #expect(text.contains("Hardware Block ID : 8086A201"))
        #expect(text.contains("Space ID : 00 [SystemMemory]"))
        #expect(text.contains("Address : 00000000FED00000"))
        #expect(text.contains("Minimum Clock Ticks : 2710"))
        #expect(text.contains("4K Page Protect : 1"))
    }

    @Test func dsdtDecompilesToTheS5Package() throws {
        let text = try disassemble("DSDT")
        #expect(text.contains("Name (_S5, Package (0x04)"))
        #expect(text.contains("DefinitionBlock"))
    }
}

enum IASL {
    /// Where iasl is; nil when it is not installed, or when VISOR_TEST_WITHOUT names iasl (to see
    /// the skip on a machine that has it).
    static let path: String? = {
        let without = (ProcessInfo.processInfo.environment["VISOR_TEST_WITHOUT"] ?? "")
            .split(whereSeparator: { $0 == " " || $0 == "," })
        guard !without.contains("iasl") else { return nil }
        return ["/usr/bin/iasl", "/usr/local/bin/iasl"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    /// Runs iasl in `folder`; returns what it printed.
    static func run(_ arguments: [String], in folder: URL) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path ?? "iasl")
        process.arguments = arguments
        process.currentDirectoryURL = folder
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }
}
