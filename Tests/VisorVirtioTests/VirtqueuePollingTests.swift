import Testing
import VisorCore
@testable import VisorVirtio

/// The device side of vhost-style polling: while a worker polls the available ring the driver
/// is asked not to notify, and what the poll finds is served and counted without a notification.
/// The driver here decides whether to notify as Linux's virtqueue_kick_prepare does.
@Suite struct VirtqueuePollingTests {
    let image: TemporaryImage
    let driver: FakeDriver

    init() throws {
        image = try TemporaryImage(bytes: pattern(16 * 512))
        driver = try FakeDriver(model: VirtioBlock(storage: try RawDiskImage(path: image.path, readOnly: false), serial: "s"))
    }

    /// Puts a FLUSH request on descriptors 0-1 and makes it available; returns whether the
    /// driver would notify: with EVENT_IDX when the new available index passed avail_event,
    /// without it unless the device set VIRTQ_USED_F_NO_NOTIFY.
    func submitFlush(eventIndex: Bool) throws -> Bool {
        let header = driver.allocate(16), status = driver.allocate(1)
        try driver.memory.store(VirtioBlock.RequestType.flush, at: GuestPhysicalAddress(header))
        try driver.setDescriptor(0, address: header, length: 16, flags: SplitVirtqueue.descriptorNext, next: 1)
        try driver.setDescriptor(1, address: status, length: 1, flags: SplitVirtqueue.descriptorWrite)
        let old = driver.availableIndex
        try driver.makeAvailable(0)
        if eventIndex {
            return SplitVirtqueue.needsEvent(eventIndex: driver.availableEvent, new: driver.availableIndex, old: old)
        }
        return try driver.memory.load(UInt16.self, at: GuestPhysicalAddress(TestLayout.usedRing)) & SplitVirtqueue.usedNoNotify == 0
    }

    /// One pass over queue 0, as the worker makes it.
    func servePass() -> Bool {
        guard var service = driver.device.beginService(queue: 0) else { return false }
        service.run(model: driver.device.model, memory: driver.memory)
        return driver.device.finishService(service)
    }

    @Test(arguments: [true, false])
    func pollTakesRequestsWithoutNotifications(eventIndex: Bool) throws {
        try driver.bringUp(extraFeatures: eventIndex ? VirtioFeature.eventIndex : 0)
        // The first request: notifications are on, so the driver notifies.
        #expect(try submitFlush(eventIndex: eventIndex))
        driver.kick()
        #expect(driver.usedIndex == 1)

        // The worker polls: three more requests, none notified, each found by the poll.
        for n in 2...4 {
            #expect(driver.device.beginPolling(queue: 0))
            #expect(try driver.device.pollTarget(queue: 0)?.hasAvailable(driver.memory) == false)
            #expect(try !submitFlush(eventIndex: eventIndex), "request \(n) was notified while the device polled")
            #expect(try driver.device.pollTarget(queue: 0)?.hasAvailable(driver.memory) == true)
            #expect(driver.device.endPolling(queue: 0, found: true))
            #expect(!servePass())
            #expect(driver.usedIndex == UInt16(n))
        }
        // After the last pass notifications are on again: the next request notifies.
        #expect(try submitFlush(eventIndex: eventIndex))
        let counts = driver.device.queueStatistics[0]
        #expect(counts.notifications == 1 && counts.buffers == 4 && counts.polledPasses == 3)
    }

    @Test(arguments: [true, false])
    func pollThatTimesOutAsksForNotificationsAndLooksAgain(eventIndex: Bool) throws {
        try driver.bringUp(extraFeatures: eventIndex ? VirtioFeature.eventIndex : 0)
        #expect(driver.device.beginPolling(queue: 0))
        // The poll gave up just as the driver added a request without notifying (it read the
        // suppressed setting): ending the poll turns notifications back on and finds it.
        #expect(try !submitFlush(eventIndex: eventIndex))
        #expect(driver.device.endPolling(queue: 0, found: false))
        #expect(!servePass())
        #expect(driver.usedIndex == 1)
        // Nothing more: the next poll's end finds nothing, and the driver notifies again.
        #expect(driver.device.beginPolling(queue: 0))
        #expect(!driver.device.endPolling(queue: 0, found: false))
        #expect(try submitFlush(eventIndex: eventIndex))
        #expect(driver.device.queueStatistics[0].polledPasses == 0)
    }

    @Test func nothingToPollOnADeviceThatIsNotLive() throws {
        #expect(!driver.device.beginPolling(queue: 0))
        #expect(driver.device.pollTarget(queue: 0) == nil)
        #expect(!driver.device.endPolling(queue: 0, found: true))
        try driver.bringUp()
        #expect(!driver.device.beginPolling(queue: 1), "virtio-blk has one queue")
    }

    @Test func whichQueuesArePolled() throws {
        #expect(driver.device.model.pollsAvailableRing(queue: 0))
        // A network's transmit queue is, its receive queue (filled from the host side) is not.
        let network = VirtioNet(backend: FakePacketBackend(), mac: VirtioNetTests.mac, queueSize: 8, receiveBound: 4)
        #expect(network.pollsAvailableRing(queue: VirtioNet.transmitQueue))
        #expect(!network.pollsAvailableRing(queue: VirtioNet.receiveQueue))
        // A console's output is sparse: not polled (the protocol's default).
        let console = VirtioConsole(output: { _ in })
        #expect(!console.pollsAvailableRing(queue: VirtioConsole.receiveQueue))
        #expect(!console.pollsAvailableRing(queue: VirtioConsole.transmitQueue))
    }
}
