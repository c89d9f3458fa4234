// The DSDT's virtio-mmio devices (LNRO0005): their AML as bytes, and as ACPICA reads it back.

import Foundation
import Testing
@testable import VisorACPI

@Suite struct VirtioDSDTTests {
    static func platform(devices: Int) -> ACPIPlatform {
        var platform = ACPIPlatform(processorCount: 1)
        platform.virtioMMIODevices = (0..<devices).map {
            ACPIPlatform.VirtioMMIODevice(base: 0xd000_0000 + UInt32($0) * 0x1000, length: 0x1000, interrupt: UInt8([5, 6, 7][$0]))
        }
        return platform
    }

    @Test func withoutDevicesTheDSDTIsOnlyS5() {
        #expect(DSDT.body(for: Self.platform(devices: 0)) == DSDT.body)
    }

    @Test func oneDeviceInAML() {
        let aml = DSDT.virtioMMIODevice(ACPIPlatform.VirtioMMIODevice(base: 0xd000_1000, length: 0x1000, interrupt: 6), index: 1)
        #expect(Array(aml[0..<2]) == [0x5b, 0x82], "DeviceOp")
        #expect(Int(aml[2]) == aml.count - 2, "a one-byte PkgLength covering the rest")
        #expect(Array(aml[3..<7]) == Array("VR01".utf8))
        let text = String(decoding: aml, as: UTF8.self)
        #expect(text.contains("_HID\u{0d}LNRO0005\0"))
        // Memory32Fixed read-write at 0xd0001000, 4 KiB; Extended Interrupt consumer/edge/high, IRQ 6; End Tag.
        let resources: [UInt8] = [0x86, 0x09, 0x00, 0x01, 0x00, 0x10, 0x00, 0xd0, 0x00, 0x10, 0x00, 0x00,
                                  0x89, 0x06, 0x00, 0x03, 0x01, 0x06, 0x00, 0x00, 0x00, 0x79, 0x00]
        #expect(Array(aml.suffix(resources.count)) == resources)
    }

    @Test func devicesAreInTheSystemBusScope() {
        let aml = DSDT.body(for: Self.platform(devices: 3))
        let scope = Array(aml[DSDT.body.count...])
        #expect(scope[0] == 0x10, "ScopeOp")
        // A two-byte PkgLength (3 devices are more than 63 bytes) covering the rest of the table.
        let length = Int(scope[1] & 0x0f) | Int(scope[2]) << 4
        #expect(scope[1] & 0xc0 == 0x40 && length == scope.count - 1)
        #expect(Array(scope[3..<8]) == [0x5c] + Array("_SB_".utf8))
    }

    @Test func packageLengthEncodings() {
        #expect(DSDT.packageLength(5) == [6])
        #expect(DSDT.packageLength(62) == [63])
        // 63 bytes after it: 65 with the two length bytes = 0x41 → low nibble 1, then 4.
        #expect(DSDT.packageLength(63) == [0x41, 0x04])
    }

    @Test(.enabled(if: IASL.path != nil, "iasl (Debian's acpica-tools) is not installed"))
    func acpicaDecodesTheDevices() throws {
        let set = ACPITables.build(Self.platform(devices: 2))
        let table = try #require(set.table("DSDT"))
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("visor-acpi-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let start = Int(table.address - set.base)
        try Data(set.bytes[start..<(start + table.length)]).write(to: folder.appendingPathComponent("dsdt.dat"))
        let output = try IASL.run(["-d", "dsdt.dat"], in: folder)
        let text = try String(contentsOf: folder.appendingPathComponent("dsdt.dsl"), encoding: .utf8)
        #expect(!output.contains("Error") && !text.contains("Incorrect checksum"), "\(output)")
        #expect(text.contains("Name (_S5, Package (0x04)"))
        #expect(text.contains("Scope (\\_SB)") && text.contains("Device (VR00)") && text.contains("Device (VR01)"), "\(text)")
        #expect(text.components(separatedBy: "Name (_HID, \"LNRO0005\")").count - 1 == 2, "\(text)")
        #expect(text.contains("Memory32Fixed (ReadWrite,") && text.contains("0xD0001000"), "\(text)")
        #expect(text.contains("Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )"), "\(text)")
    }
}
