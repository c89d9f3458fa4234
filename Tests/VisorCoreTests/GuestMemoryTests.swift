import Testing
@testable import VisorCore

@Suite("Guest memory")
struct GuestMemoryTests {
    @Test("a fresh guest RAM reads as zeros and keeps what is written")
    func readWrite() throws {
        let memory = try GuestMemory(size: 1 << 20)
        #expect(try memory.read(at: GuestPhysicalAddress(0x1000), count: 4) == [0, 0, 0, 0])
        try memory.write([1, 2, 3, 4], at: GuestPhysicalAddress(0x1000))
        #expect(try memory.read(at: GuestPhysicalAddress(0x1000), count: 4) == [1, 2, 3, 4])
        try memory.store(UInt32(0xdead_beef), at: GuestPhysicalAddress(0x2001))
        #expect(try memory.load(UInt32.self, at: GuestPhysicalAddress(0x2001)) == 0xdead_beef)
        #expect(try memory.read(at: GuestPhysicalAddress(0x2001), count: 4) == [0xef, 0xbe, 0xad, 0xde])
    }

    @Test("accesses that end at the last byte succeed; one byte further fails")
    func edges() throws {
        let memory = try GuestMemory(size: 1 << 20)
        try memory.store(UInt64(7), at: GuestPhysicalAddress((1 << 20) - 8))
        #expect(throws: GuestMemoryError.outOfBounds(address: (1 << 20) - 7, length: 8)) {
            try memory.store(UInt64(7), at: GuestPhysicalAddress((1 << 20) - 7))
        }
        #expect(throws: GuestMemoryError.self) { try memory.read(at: GuestPhysicalAddress(1 << 20), count: 1) }
        #expect(throws: GuestMemoryError.self) { try memory.read(at: GuestPhysicalAddress(0), count: -1) }
        #expect(try memory.read(at: GuestPhysicalAddress(1 << 20), count: 0) == [])
    }

    @Test("addresses near 2^64 never wrap into RAM")
    func overflow() throws {
        let memory = try GuestMemory(size: 1 << 20)
        for address in [UInt64.max, UInt64.max - 3, UInt64.max - (1 << 19)] {
            #expect(!memory.contains(GuestPhysicalAddress(address), length: 8))
            #expect(throws: GuestMemoryError.self) { try memory.load(UInt64.self, at: GuestPhysicalAddress(address)) }
        }
        #expect(!memory.contains(GuestPhysicalAddress(8), length: UInt64.max))
    }

    @Test("RAM beyond 3 GiB continues at 4 GiB, and the hole between is not RAM")
    func highMemory() throws {
        let size: UInt64 = GuestMemory.lowMemoryLimit + (1 << 20)
        let memory = try GuestMemory(size: size)
        #expect(memory.regions.count == 2)
        #expect(memory.regions[1].guestStart == GuestPhysicalAddress(GuestMemory.highMemoryStart))
        #expect(memory.regions[1].size == 1 << 20)
        #expect(!memory.contains(GuestPhysicalAddress(GuestMemory.lowMemoryLimit), length: 1))
        #expect(!memory.contains(GuestPhysicalAddress(GuestMemory.lowMemoryLimit - 2), length: 4))
        #expect(memory.contains(GuestPhysicalAddress(GuestMemory.highMemoryStart + (1 << 20) - 1), length: 1))
        #expect(!memory.contains(GuestPhysicalAddress(GuestMemory.highMemoryStart + (1 << 20) - 1), length: 2))
        try memory.store(UInt16(0xabcd), at: GuestPhysicalAddress(GuestMemory.highMemoryStart))
        #expect(try memory.load(UInt16.self, at: GuestPhysicalAddress(GuestMemory.highMemoryStart)) == 0xabcd)
        // The high byte must not alias low memory.
        #expect(try memory.load(UInt16.self, at: GuestPhysicalAddress(0)) == 0)
    }

    @Test("sizes that are zero, unaligned or too large are refused")
    func invalidSizes() {
        for size: UInt64 in [0, 4095, 4097, GuestMemory.maximumSize + 4096] {
            #expect(throws: GuestMemoryError.invalidSize(size)) { try GuestMemory(size: size) }
        }
    }
}

@Suite("I/O bus")
struct IOBusTests {
    final class Recorder: PortDevice {
        var writes: [(UInt16, UInt8, UInt32)] = []
        func read(offset: UInt16, size: UInt8) -> UInt32 { 0x1234_5600 | UInt32(offset) }
        func write(offset: UInt16, size: UInt8, value: UInt32) { writes.append((offset, size, value)) }
    }

    @Test("unbacked ports read all ones for their size and count reads and writes")
    func unbacked() {
        let bus = IOBus()
        #expect(bus.read(port: 0x80, size: 1) == 0xff)
        #expect(bus.read(port: 0x80, size: 2) == 0xffff)
        #expect(bus.read(port: 0x80, size: 4) == 0xffff_ffff)
        bus.write(port: 0x80, size: 1, value: 1)
        #expect(bus.unbackedReads == 3)
        #expect(bus.unbackedWrites == 1)
    }

    @Test("devices see offsets from their base, values masked to the access size")
    func routing() throws {
        let bus = IOBus()
        let device = Recorder()
        try bus.attach(device, base: 0x3f8, count: 8)
        #expect(bus.read(port: 0x3fd, size: 1) == 0x05)
        bus.write(port: 0x3f9, size: 1, value: 0x1ff)
        #expect(device.writes.count == 1)
        #expect(device.writes.first?.0 == 1)
        #expect(device.writes.first?.2 == 0xff)
        #expect(bus.unbackedReads == 0)
    }

    @Test("overlapping and empty ranges are refused")
    func attachErrors() throws {
        let bus = IOBus()
        try bus.attach(Recorder(), base: 0x3f8, count: 8)
        #expect(throws: IOBusError.overlap(base: 0x3ff, count: 2)) { try bus.attach(Recorder(), base: 0x3ff, count: 2) }
        #expect(throws: IOBusError.overlap(base: 0x3f0, count: 9)) { try bus.attach(Recorder(), base: 0x3f0, count: 9) }
        #expect(throws: IOBusError.invalidRange(base: 0x10, count: 0)) { try bus.attach(Recorder(), base: 0x10, count: 0) }
        #expect(throws: IOBusError.invalidRange(base: 0xffff, count: 2)) { try bus.attach(Recorder(), base: 0xffff, count: 2) }
        try bus.attach(Recorder(), base: 0x3f0, count: 8)
    }
}

@Suite("CPUID table")
struct CPUIDTableTests {
    let host = [
        CPUIDEntry(function: 0, eax: 0xd, ebx: 0x6874_7541),
        CPUIDEntry(function: 1, eax: 0x800f12, ecx: 0x0000_0001),
        CPUIDEntry(function: 0x4000_0000, eax: 0x4000_0001, ebx: 0x4b4d_564b),
        CPUIDEntry(function: 7, index: 1, indexSignificant: true, ebx: 0x55),
    ]

    @Test("the hypervisor leaves carry Visor's signature and ABI version, replacing the host's")
    func hypervisorLeaves() {
        let table = CPUIDTable(hostSupported: host)
        let signature = table.lookup(function: 0x4000_0000)
        #expect(signature.eax == 0x4000_0010, "the highest leaf is the timing leaf")
        #expect(VisorABIProbe.signatureText(signature) == "VisorVisorVM")
        #expect(table.lookup(function: 0x4000_0001).eax == 0x0001_0001, "ABI 1.1")
        #expect(table.entries.filter { $0.function == 0x4000_0000 }.count == 1)
    }

    @Test("the timing leaf gives the TSC and APIC timer rates in kHz, 0 when unknown")
    func timingLeaf() {
        let table = CPUIDTable(hostSupported: host, timeStampCounterFrequency: 2_596_100_000,
                               apicTimerFrequency: 1_000_000_000)
        let timing = table.lookup(function: 0x4000_0010)
        #expect(timing.eax == 2_596_100 && timing.ebx == 1_000_000)
        let unknown = CPUIDTable(hostSupported: host).lookup(function: 0x4000_0010)
        #expect(unknown.eax == 0 && unknown.ebx == 0)
        let huge = CPUIDTable(hostSupported: host, timeStampCounterFrequency: .max).lookup(function: 0x4000_0010)
        #expect(huge.eax == .max, "saturates rather than traps")
    }

    @Test("leaf 1 describes Visor's local APIC: APIC and TSC-deadline on, x2APIC off")
    func localAPICBits() {
        let x2apicHost = [CPUIDEntry(function: 1, ecx: 1 << 21, edx: 0)]
        let leaf1 = CPUIDTable(hostSupported: x2apicHost).lookup(function: 1)
        #expect(leaf1.ecx & (1 << 21) == 0)
        #expect(leaf1.ecx & (1 << 24) != 0)
        #expect(leaf1.edx & (1 << 9) != 0)
    }

    @Test("leaf 1 announces a hypervisor; other leaves pass through")
    func passThrough() {
        let table = CPUIDTable(hostSupported: host)
        #expect(table.lookup(function: 1).ecx == 0x8000_0001 | CPUIDTable.tscDeadlineBit)
        #expect(table.lookup(function: 0).ebx == 0x6874_7541)
        #expect(table.lookup(function: 7, index: 1).ebx == 0x55)
        #expect(table.lookup(function: 7, index: 0).ebx == 0)
        #expect(table.lookup(function: 0x8000_0042) == CPUIDEntry(function: 0x8000_0042))
    }
}

/// Decodes a signature the way a guest does: twelve bytes from EBX, ECX, EDX.
enum VisorABIProbe {
    static func signatureText(_ e: CPUIDEntry) -> String {
        var bytes: [UInt8] = []
        for r in [e.ebx, e.ecx, e.edx] { for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: r >> (8 * UInt32(i)))) } }
        return String(decoding: bytes, as: UTF8.self)
    }
}
