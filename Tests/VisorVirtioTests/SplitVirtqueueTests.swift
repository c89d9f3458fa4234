import Testing
import VisorCore
@testable import VisorVirtio

/// The split ring's walks, notification suppression, and every malformed ring a hostile driver
/// can write: each leaves the device DEVICE_NEEDS_RESET with a message, and nothing outside RAM
/// is touched.
@Suite struct SplitVirtqueueTests {
    let image: TemporaryImage
    let driver: FakeDriver

    init() throws {
        image = try TemporaryImage(bytes: pattern(16 * 512))
        driver = try FakeDriver(model: VirtioBlock(storage: try RawDiskImage(path: image.path, readOnly: false), serial: "s"))
    }

    // MARK: EVENT_IDX

    @Test func eventIndexFormula() {
        #expect(SplitVirtqueue.needsEvent(eventIndex: 0, new: 1, old: 0))
        #expect(!SplitVirtqueue.needsEvent(eventIndex: 5, new: 3, old: 0))
        #expect(SplitVirtqueue.needsEvent(eventIndex: 5, new: 6, old: 3))
        // Across the 16-bit wrap.
        #expect(SplitVirtqueue.needsEvent(eventIndex: 0xffff, new: 1, old: 0xfffe))
        #expect(!SplitVirtqueue.needsEvent(eventIndex: 2, new: 1, old: 0xfffe))
    }

    @Test func eventIndexSuppressesInterrupts() throws {
        try driver.bringUp(extraFeatures: VirtioFeature.eventIndex)
        // used_event 0: the first completion (used index 0 → 1) interrupts.
        try driver.setUsedEvent(0)
        _ = try driver.blockRequest(type: VirtioBlock.RequestType.flush, sector: 0)
        #expect(driver.read(VirtioMMIORegister.interruptStatus) == VirtioInterrupt.usedBuffer)
        driver.write(VirtioMMIORegister.interruptACK, VirtioInterrupt.usedBuffer)
        // The device asks to be notified when the next buffer is made available.
        #expect(driver.availableEvent == 1)
        // used_event 3: completions 2 and 3 (used index 1 → 2, 2 → 3) do not interrupt...
        try driver.setUsedEvent(3)
        _ = try driver.blockRequest(type: VirtioBlock.RequestType.flush, sector: 0)
        _ = try driver.blockRequest(type: VirtioBlock.RequestType.flush, sector: 0)
        #expect(driver.read(VirtioMMIORegister.interruptStatus) == 0)
        #expect(driver.availableEvent == 3)
        // ...the fourth (3 → 4 passes used_event 3) does.
        _ = try driver.blockRequest(type: VirtioBlock.RequestType.flush, sector: 0)
        #expect(driver.read(VirtioMMIORegister.interruptStatus) == VirtioInterrupt.usedBuffer)
        #expect(driver.lineChanges == [true, false, true])
        // Four requests, four notifications, two interrupts: what `--stats` reports.
        let counts = driver.device.queueStatistics[0]
        #expect(counts.notifications == 4 && counts.buffers == 4 && counts.interrupts == 2)
    }

    @Test func noInterruptFlagWithoutEventIndex() throws {
        try driver.bringUp()
        try driver.setAvailableFlags(SplitVirtqueue.availableNoInterrupt)
        _ = try driver.blockRequest(type: VirtioBlock.RequestType.flush, sector: 0)
        #expect(driver.read(VirtioMMIORegister.interruptStatus) == 0)
        try driver.setAvailableFlags(0)
        _ = try driver.blockRequest(type: VirtioBlock.RequestType.flush, sector: 0)
        #expect(driver.read(VirtioMMIORegister.interruptStatus) == VirtioInterrupt.usedBuffer)
    }

    @Test func servesSeveralChainsInOneNotification() throws {
        try driver.bringUp()
        for (n, head) in [UInt16(0), 2, 4].enumerated() {
            let header = driver.allocate(16), status = driver.allocate(1)
            _ = n
            try driver.memory.store(VirtioBlock.RequestType.flush, at: GuestPhysicalAddress(header))
            try driver.setDescriptor(head, address: header, length: 16, flags: SplitVirtqueue.descriptorNext, next: head + 1)
            try driver.setDescriptor(head + 1, address: status, length: 1, flags: SplitVirtqueue.descriptorWrite)
            try driver.makeAvailable(head)
        }
        driver.kick()
        #expect(driver.usedIndex == 3)
        #expect(try (0..<3).map { try driver.usedEntry($0).id } == [0, 2, 4])
    }

    @Test func indirectTable() throws {
        try driver.bringUp()
        let table = driver.allocate(48), header = driver.allocate(16), data = driver.allocate(512), status = driver.allocate(1)
        try driver.memory.store(VirtioBlock.RequestType.read, at: GuestPhysicalAddress(header))
        try driver.memory.store(UInt64(2), at: GuestPhysicalAddress(header + 8))
        try driver.setDescriptor(0, address: header, length: 16, flags: SplitVirtqueue.descriptorNext, next: 1, table: table)
        try driver.setDescriptor(1, address: data, length: 512, flags: SplitVirtqueue.descriptorNext | SplitVirtqueue.descriptorWrite,
                                 next: 2, table: table)
        try driver.setDescriptor(2, address: status, length: 1, flags: SplitVirtqueue.descriptorWrite, table: table)
        try driver.setDescriptor(3, address: table, length: 48, flags: SplitVirtqueue.descriptorIndirect)
        try driver.makeAvailable(3)
        driver.kick()
        #expect(driver.usedIndex == 1)
        #expect(try driver.memory.load(UInt8.self, at: GuestPhysicalAddress(status)) == 0)
        #expect(try driver.memory.read(at: GuestPhysicalAddress(data), count: 512) == Array(pattern(16 * 512)[1024..<1536]))
    }

    // MARK: Hostile rings

    /// Makes chain `head` available, kicks, and checks the device broke with a message
    /// containing `expected`, completed nothing, and serves nothing more until reset.
    func expectBroken(head: UInt16 = 0, _ expected: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        try driver.makeAvailable(head)
        driver.kick()
        #expect(driver.read(VirtioMMIORegister.status) & VirtioStatus.deviceNeedsReset != 0, sourceLocation: sourceLocation)
        #expect(driver.device.brokenReason?.contains(expected) == true,
                "message: \(driver.device.brokenReason ?? "none")", sourceLocation: sourceLocation)
        #expect(driver.usedIndex == 0, sourceLocation: sourceLocation)
        #expect(driver.read(VirtioMMIORegister.interruptStatus) & VirtioInterrupt.configurationChange != 0,
                sourceLocation: sourceLocation)
        #expect(!driver.device.isLive, sourceLocation: sourceLocation)
        #expect(driver.device.beginService(queue: 0) == nil, sourceLocation: sourceLocation)
        // A reset and a fresh bring-up make it usable again.
        try driver.bringUp()
        #expect(driver.device.brokenReason == nil, sourceLocation: sourceLocation)
        #expect(try image.contents() == pattern(16 * 512), sourceLocation: sourceLocation)
    }

    /// A flush request in descriptors 0 (header) and 1 (status), for chains to splice into.
    func flushRequest() throws -> (header: UInt64, status: UInt64) {
        let header = driver.allocate(16), status = driver.allocate(1)
        try driver.memory.store(VirtioBlock.RequestType.flush, at: GuestPhysicalAddress(header))
        return (header, status)
    }

    @Test func bufferOutsideRAM() throws {
        try driver.bringUp()
        let (header, _) = try flushRequest()
        try driver.setDescriptor(0, address: header, length: 16, flags: SplitVirtqueue.descriptorNext, next: 1)
        try driver.setDescriptor(1, address: TestLayout.ramSize - 1, length: 2, flags: SplitVirtqueue.descriptorWrite)
        try expectBroken("not inside guest RAM")
    }

    @Test func lengthOverflowingTheAddressSpace() throws {
        try driver.bringUp()
        let (header, _) = try flushRequest()
        try driver.setDescriptor(0, address: header, length: 16, flags: SplitVirtqueue.descriptorNext, next: 1)
        try driver.setDescriptor(1, address: UInt64.max - 8, length: 0xffff_ffff, flags: SplitVirtqueue.descriptorWrite)
        try expectBroken("not inside guest RAM")
    }

    @Test func headOutsideTheTable() throws {
        try driver.bringUp()
        try expectBroken(head: 200, "outside its table")
    }

    @Test func nextOutsideTheTable() throws {
        try driver.bringUp()
        let (header, _) = try flushRequest()
        try driver.setDescriptor(0, address: header, length: 16, flags: SplitVirtqueue.descriptorNext, next: 8)
        try expectBroken("descriptor index 8 is outside its table of 8")
    }

    @Test func loop() throws {
        try driver.bringUp()
        let (header, status) = try flushRequest()
        try driver.setDescriptor(0, address: header, length: 16, flags: SplitVirtqueue.descriptorNext, next: 1)
        try driver.setDescriptor(1, address: status, length: 1, flags: SplitVirtqueue.descriptorWrite | SplitVirtqueue.descriptorNext, next: 2)
        try driver.setDescriptor(2, address: status, length: 1, flags: SplitVirtqueue.descriptorWrite | SplitVirtqueue.descriptorNext, next: 1)
        try expectBroken("loops back to descriptor 1")
    }

    @Test func selfLoop() throws {
        try driver.bringUp()
        let (header, _) = try flushRequest()
        try driver.setDescriptor(0, address: header, length: 16, flags: SplitVirtqueue.descriptorNext, next: 0)
        try expectBroken("loops back to descriptor 0")
    }

    /// An indirect table of queue size + 1 descriptors, all distinct and chained.
    @Test func chainLongerThanTheQueue() throws {
        try driver.bringUp()
        let count = UInt16(driver.queueSize) + 1
        let table = driver.allocate(16 * UInt64(count))
        let (header, status) = try flushRequest()
        try driver.setDescriptor(0, address: header, length: 16, flags: SplitVirtqueue.descriptorNext, next: 1, table: table)
        for index in 1..<count {
            let last = index == count - 1
            try driver.setDescriptor(index, address: status, length: 1,
                                     flags: SplitVirtqueue.descriptorWrite | (last ? 0 : SplitVirtqueue.descriptorNext),
                                     next: index + 1, table: table)
        }
        try driver.setDescriptor(0, address: table, length: 16 * UInt32(count), flags: SplitVirtqueue.descriptorIndirect)
        try expectBroken("longer than the queue size 8")
    }

    @Test func indirectTableWithBadLength() throws {
        try driver.bringUp()
        let table = driver.allocate(64)
        try driver.setDescriptor(0, address: table, length: 20, flags: SplitVirtqueue.descriptorIndirect)
        try expectBroken("not a non-zero multiple of 16")
    }

    @Test func indirectTableOutsideRAM() throws {
        try driver.bringUp()
        try driver.setDescriptor(0, address: TestLayout.ramSize - 16, length: 32, flags: SplitVirtqueue.descriptorIndirect)
        try expectBroken("not inside guest RAM")
    }

    @Test func nestedIndirectTable() throws {
        try driver.bringUp()
        let table = driver.allocate(16)
        try driver.setDescriptor(0, address: table, length: 16, flags: SplitVirtqueue.descriptorIndirect, table: table)
        try driver.setDescriptor(0, address: table, length: 16, flags: SplitVirtqueue.descriptorIndirect)
        try expectBroken("an indirect descriptor inside an indirect table")
    }

    @Test func indirectWithoutNegotiation() throws {
        #expect(driver.negotiate(VirtioFeature.version1))
        driver.setUpQueue()
        driver.driverOK()
        let table = driver.allocate(16)
        try driver.setDescriptor(0, address: table, length: 16, flags: SplitVirtqueue.descriptorIndirect)
        try expectBroken("VIRTIO_F_INDIRECT_DESC was not negotiated")
    }

    @Test func readableAfterWritable() throws {
        try driver.bringUp()
        let (header, status) = try flushRequest()
        try driver.setDescriptor(0, address: status, length: 1, flags: SplitVirtqueue.descriptorWrite | SplitVirtqueue.descriptorNext, next: 1)
        try driver.setDescriptor(1, address: header, length: 16)
        try expectBroken("device-readable but follows a device-writable")
    }

    /// A read request whose data buffer the device would have to write is device-readable.
    @Test func readIntoADeviceReadableBuffer() throws {
        try driver.bringUp()
        let header = driver.allocate(16), data = driver.allocate(512), status = driver.allocate(1)
        try driver.memory.store(VirtioBlock.RequestType.read, at: GuestPhysicalAddress(header))
        try driver.setDescriptor(0, address: header, length: 16, flags: SplitVirtqueue.descriptorNext, next: 1)
        try driver.setDescriptor(1, address: data, length: 512, flags: SplitVirtqueue.descriptorNext, next: 2)
        try driver.setDescriptor(2, address: status, length: 1, flags: SplitVirtqueue.descriptorWrite)
        try expectBroken("device-readable data buffer")
        #expect(try driver.memory.read(at: GuestPhysicalAddress(data), count: 512) == [UInt8](repeating: 0, count: 512))
    }

    @Test func headerTooShort() throws {
        try driver.bringUp()
        let (header, status) = try flushRequest()
        try driver.setDescriptor(0, address: header, length: 8, flags: SplitVirtqueue.descriptorNext, next: 1)
        try driver.setDescriptor(1, address: status, length: 1, flags: SplitVirtqueue.descriptorWrite)
        try expectBroken("header is 8 bytes, not 16")
    }

    @Test func noStatusByte() throws {
        try driver.bringUp()
        let (header, _) = try flushRequest()
        try driver.setDescriptor(0, address: header, length: 16)
        try expectBroken("no device-writable status byte")
    }

    @Test func availableIndexTooFarAhead() throws {
        try driver.bringUp()
        try driver.setAvailableIndex(100)
        driver.kick()
        #expect(driver.device.brokenReason?.contains("more than the queue size 8 ahead") == true)
    }
}
