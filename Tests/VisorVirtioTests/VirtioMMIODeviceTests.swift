import Testing
import VisorCore
@testable import VisorVirtio

/// The transport's register file and status state machine, with a block device behind it.
@Suite struct VirtioMMIODeviceTests {
    func makeDriver(readOnly: Bool = false, sectors: Int = 64) throws -> (FakeDriver, TemporaryImage) {
        let image = try TemporaryImage(bytes: pattern(sectors * 512))
        let block = VirtioBlock(storage: try RawDiskImage(path: image.path, readOnly: readOnly), serial: "visor-disk-0")
        return (try FakeDriver(model: block), image)
    }

    @Test func identifiesItself() throws {
        let (driver, _) = try makeDriver()
        #expect(driver.read(VirtioMMIORegister.magicValue) == 0x7472_6976)
        #expect(driver.read(VirtioMMIORegister.version) == 2)
        #expect(driver.read(VirtioMMIORegister.deviceID) == VirtioDeviceID.block)
        #expect(driver.read(VirtioMMIORegister.status) == 0)
        // Registers are 32-bit: a byte read of the magic value reads 0.
        #expect(driver.device.read(offset: VirtioMMIORegister.magicValue, size: 1) == 0)
    }

    @Test func negotiatesOfferedFeatures() throws {
        let (driver, _) = try makeDriver()
        let offered = driver.deviceFeatures
        #expect(offered & VirtioFeature.version1 != 0)
        #expect(offered & VirtioFeature.eventIndex != 0)
        #expect(offered & VirtioBlock.Feature.flush != 0)
        #expect(driver.negotiate(VirtioFeature.version1 | VirtioBlock.Feature.flush))
        #expect(driver.device.driverFeatures == VirtioFeature.version1 | VirtioBlock.Feature.flush)
        // Features are fixed after FEATURES_OK.
        driver.write(VirtioMMIORegister.driverFeaturesSel, 0)
        driver.write(VirtioMMIORegister.driverFeatures, 0)
        #expect(driver.device.driverFeatures == VirtioFeature.version1 | VirtioBlock.Feature.flush)
    }

    @Test func refusesFeaturesNotOfferedOrLegacy() throws {
        let (driver, _) = try makeDriver()
        // Bit 40 is not offered; FEATURES_OK does not stick.
        #expect(!driver.negotiate(VirtioFeature.version1 | 1 << 40))
        // Without VERSION_1 (a legacy driver) neither.
        #expect(!driver.negotiate(VirtioBlock.Feature.flush))
        // DRIVER_OK cannot be set without FEATURES_OK.
        driver.driverOK()
        #expect(driver.read(VirtioMMIORegister.status) & VirtioStatus.driverOK == 0)
        #expect(!driver.device.isLive)
    }

    @Test func readOnlyDiskOffersRO() throws {
        let (driver, _) = try makeDriver(readOnly: true)
        #expect(driver.deviceFeatures & VirtioBlock.Feature.readOnly != 0)
        #expect(driver.deviceFeatures & VirtioBlock.Feature.discard == 0)
        let (writable, _) = try makeDriver()
        #expect(writable.deviceFeatures & VirtioBlock.Feature.readOnly == 0)
    }

    @Test func capacityInConfigSpace() throws {
        let (driver, _) = try makeDriver(sectors: 100)
        #expect(driver.device.read(offset: VirtioMMIORegister.config, size: 8) == 100)
        #expect(driver.device.read(offset: VirtioMMIORegister.config, size: 4) == 100)
        #expect(driver.device.read(offset: VirtioMMIORegister.config + 4, size: 4) == 0)
        #expect(driver.device.read(offset: VirtioMMIORegister.config + 20, size: 4) == 512)  // blk_size
        // Past the end of the config space reads 0.
        #expect(driver.device.read(offset: VirtioMMIORegister.config + 0x800, size: 4) == 0)
    }

    @Test func queueRegisters() throws {
        let (driver, _) = try makeDriver()
        driver.write(VirtioMMIORegister.queueSel, 0)
        #expect(driver.read(VirtioMMIORegister.queueNumMax) == 256)
        driver.write(VirtioMMIORegister.queueSel, 1)  // blk has one queue
        #expect(driver.read(VirtioMMIORegister.queueNumMax) == 0)
        try driver.bringUp()
        #expect(driver.read(VirtioMMIORegister.queueReady) == 1)
    }

    @Test func notifyIsIgnoredUntilDriverOK() throws {
        let (driver, _) = try makeDriver()
        #expect(driver.negotiate(VirtioFeature.version1))
        driver.setUpQueue()
        driver.write(VirtioMMIORegister.queueNotify, 0)
        #expect(driver.notifications.isEmpty)
        driver.driverOK()
        driver.write(VirtioMMIORegister.queueNotify, 0)
        driver.write(VirtioMMIORegister.queueNotify, 5)  // no such queue
        #expect(driver.notifications == [0])
    }

    @Test func resetByWritingZero() throws {
        let (driver, _) = try makeDriver()
        try driver.bringUp()
        _ = try driver.blockRequest(type: VirtioBlock.RequestType.flush, sector: 0)
        #expect(driver.read(VirtioMMIORegister.interruptStatus) == VirtioInterrupt.usedBuffer)
        #expect(driver.lineChanges == [true])
        let generation = driver.device.generation
        driver.write(VirtioMMIORegister.status, 0)
        #expect(driver.read(VirtioMMIORegister.status) == 0)
        #expect(driver.read(VirtioMMIORegister.interruptStatus) == 0)
        #expect(driver.lineChanges == [true, false])
        #expect(driver.read(VirtioMMIORegister.queueReady) == 0)
        #expect(driver.device.driverFeatures == 0)
        #expect(driver.device.generation == generation + 1)
    }

    @Test func interruptAcknowledgeLowersTheLine() throws {
        let (driver, _) = try makeDriver()
        try driver.bringUp()
        _ = try driver.blockRequest(type: VirtioBlock.RequestType.flush, sector: 0)
        driver.write(VirtioMMIORegister.interruptACK, VirtioInterrupt.usedBuffer)
        #expect(driver.read(VirtioMMIORegister.interruptStatus) == 0)
        #expect(driver.lineChanges == [true, false])
    }

    @Test func badQueueSizeBreaksTheDevice() throws {
        let (driver, _) = try makeDriver()
        #expect(driver.negotiate(VirtioFeature.version1))
        driver.setUpQueue(size: 6)  // not a power of two
        #expect(driver.read(VirtioMMIORegister.queueReady) == 0)
        #expect(driver.read(VirtioMMIORegister.status) & VirtioStatus.deviceNeedsReset != 0)
        #expect(driver.device.brokenReason?.contains("power of two") == true)
    }

    @Test func queueOutsideRAMBreaksTheDevice() throws {
        let (driver, _) = try makeDriver()
        #expect(driver.negotiate(VirtioFeature.version1))
        driver.setUpQueue(descriptorTable: TestLayout.ramSize - 16)
        #expect(driver.device.brokenReason?.contains("not inside guest RAM") == true)
    }

    /// A service begun before a reset publishes nothing into the (new) rings.
    @Test func completionsOfAResetDeviceAreDropped() throws {
        let (driver, _) = try makeDriver()
        try driver.bringUp()
        try driver.setDescriptor(0, address: 0x8000, length: 16, flags: SplitVirtqueue.descriptorNext, next: 1)
        try driver.setDescriptor(1, address: 0x8010, length: 1, flags: SplitVirtqueue.descriptorWrite)
        try driver.memory.store(VirtioBlock.RequestType.flush, at: GuestPhysicalAddress(0x8000))
        try driver.makeAvailable(0)
        guard var service = driver.device.beginService(queue: 0) else { throw TestFailure("no service") }
        service.run(model: driver.device.model, memory: driver.memory)
        #expect(service.completions.count == 1)
        driver.write(VirtioMMIORegister.status, 0)
        #expect(!driver.device.finishService(service))
        #expect(driver.usedIndex == 0)
    }
}
