// The virtio worker's poll of the available ring (vhost's busy-poll), on its real thread: after
// serving a request it polls with the driver asked not to notify, and takes the next request,
// which the driver made available without notifying, with no notification at all.

import Foundation
import Testing
import VisorCore
import VisorDevices
import VisorVirtio
@testable import Visor

/// A virtio slot on a platform, driven from the test thread as Linux's virtio_mmio driver drives
/// it (register writes under the platform lock, split rings in guest RAM): a virtio-blk disk, or
/// any other model.
private final class PolledDevice {
    static let queueSize: UInt16 = 8
    /// Queue q's rings at these bases plus `0x4000 * q`; its buffers at `buffers + 0x1000 * q`.
    static let descriptors: UInt64 = 0x1000, available: UInt64 = 0x2000, used: UInt64 = 0x3000, buffers: UInt64 = 0x40000
    static func ring(_ base: UInt64, queue: Int) -> UInt64 { base + 0x4000 * UInt64(queue) }
    var imagePath: String?
    let platform: DevicePlatform
    let memory: GuestMemory
    let slot: VirtioSlot
    private var availableIndex: [UInt16]

    private final class Clock: TimeSource { var nanoseconds: UInt64 { 0 } }

    init(model: any VirtioDeviceModel, pollNanoseconds: UInt64) throws {
        platform = try DevicePlatform(vcpuCount: 1, clock: Clock(), tscFrequency: 1_000_000_000,
                                      apicTimerFrequency: 1_000_000_000, consoleOutput: { _ in })
        platform.setSignalHandler { _, _ in }
        memory = try GuestMemory(size: 1 << 20)
        availableIndex = Array(repeating: 0, count: model.queueCount)
        slot = VirtioSlot(model: model, name: "virtio test device", index: 0, platform: platform, memory: memory,
                          pollNanoseconds: pollNanoseconds, notice: { _ in })
    }

    /// A virtio-blk disk on a new 32 KiB image.
    convenience init(pollNanoseconds: UInt64) throws {
        let path = NSTemporaryDirectory() + "visor-poll-test-\(UUID().uuidString).img"
        guard FileManager.default.createFile(atPath: path, contents: Data(count: 64 * 512)) else {
            throw PollTestFailure(what: "cannot create \(path)")
        }
        do {
            try self.init(model: VirtioBlock(storage: try RawDiskImage(path: path, readOnly: false), serial: "poll"),
                          pollNanoseconds: pollNanoseconds)
        } catch {
            unlink(path)
            throw error
        }
        imagePath = path
    }

    deinit { if let imagePath { unlink(imagePath) } }

    func write(_ register: UInt64, _ value: UInt64) {
        platform.lock.withLock { slot.device.write(offset: register, size: 4, value: value) }
    }

    /// Feature negotiation (VERSION_1 and EVENT_IDX), each queue at the addresses above, DRIVER_OK.
    func bringUp() {
        let features = VirtioFeature.version1 | VirtioFeature.eventIndex
        write(VirtioMMIORegister.status, 0)
        write(VirtioMMIORegister.status, UInt64(VirtioStatus.acknowledge | VirtioStatus.driver))
        write(VirtioMMIORegister.driverFeaturesSel, 0)
        write(VirtioMMIORegister.driverFeatures, features & 0xffff_ffff)
        write(VirtioMMIORegister.driverFeaturesSel, 1)
        write(VirtioMMIORegister.driverFeatures, features >> 32)
        write(VirtioMMIORegister.status, UInt64(VirtioStatus.acknowledge | VirtioStatus.driver | VirtioStatus.featuresOK))
        for queue in availableIndex.indices {
            write(VirtioMMIORegister.queueSel, UInt64(queue))
            write(VirtioMMIORegister.queueNum, UInt64(Self.queueSize))
            write(VirtioMMIORegister.queueDescLow, Self.ring(Self.descriptors, queue: queue))
            write(VirtioMMIORegister.queueDriverLow, Self.ring(Self.available, queue: queue))
            write(VirtioMMIORegister.queueDeviceLow, Self.ring(Self.used, queue: queue))
            write(VirtioMMIORegister.queueReady, 1)
        }
        write(VirtioMMIORegister.status, UInt64(VirtioStatus.acknowledge | VirtioStatus.driver | VirtioStatus.featuresOK
                                                | VirtioStatus.driverOK))
    }

    func usedIndex(queue: Int = 0) -> UInt16 {
        (try? memory.load(UInt16.self, at: GuestPhysicalAddress(Self.ring(Self.used, queue: queue) + 2))) ?? 0
    }
    var usedIndex: UInt16 { usedIndex() }
    func availableEvent(queue: Int = 0) -> UInt16 {
        let used = Self.ring(Self.used, queue: queue)
        return (try? memory.load(UInt16.self, at: GuestPhysicalAddress(used + 4 + 8 * UInt64(Self.queueSize)))) ?? 0
    }
    var availableEvent: UInt16 { availableEvent() }

    /// A FLUSH request (header in descriptor 0, status in 1) on a disk's queue 0; see `submit`.
    @discardableResult
    func submitFlush() throws -> Bool {
        let header = Self.buffers, status = Self.buffers + 16
        try memory.store(VirtioBlock.RequestType.flush, at: GuestPhysicalAddress(header))
        return try submit(queue: 0, [(header, 16, false), (status, 1, true)])
    }

    /// Makes a chain of `buffers` (address, length, device-writable) available on `queue`, in
    /// descriptors from 0 (one chain in flight per queue); notifies only when the new index
    /// passes avail_event, as virtqueue_kick_prepare decides. Returns whether it did.
    @discardableResult
    func submit(queue: Int, _ buffers: [(address: UInt64, length: UInt32, writable: Bool)]) throws -> Bool {
        let table = Self.ring(Self.descriptors, queue: queue), available = Self.ring(Self.available, queue: queue)
        for (i, buffer) in buffers.enumerated() {
            let descriptor = table + 16 * UInt64(i)
            let last = i == buffers.count - 1
            try memory.store(buffer.address, at: GuestPhysicalAddress(descriptor))
            try memory.store(buffer.length, at: GuestPhysicalAddress(descriptor + 8))
            try memory.store((last ? 0 : SplitVirtqueue.descriptorNext) | (buffer.writable ? SplitVirtqueue.descriptorWrite : 0),
                             at: GuestPhysicalAddress(descriptor + 12))
            try memory.store(UInt16(last ? 0 : i + 1), at: GuestPhysicalAddress(descriptor + 14))
        }
        let old = availableIndex[queue]
        try memory.store(UInt16(0), at: GuestPhysicalAddress(available + 4 + 2 * UInt64(old % Self.queueSize)))
        availableIndex[queue] &+= 1
        try memory.store(availableIndex[queue], at: GuestPhysicalAddress(available + 2))
        guard SplitVirtqueue.needsEvent(eventIndex: availableEvent(queue: queue), new: availableIndex[queue], old: old) else {
            return false
        }
        write(VirtioMMIORegister.queueNotify, UInt64(queue))
        return true
    }

    /// Waits until `condition` holds, looked at under the platform lock, so the worker is
    /// between two of its locked steps (a hang guard, not a timing check).
    func waitUntil(_ what: String, _ condition: () -> Bool) throws {
        let deadline = Date().addingTimeInterval(120)
        while !platform.lock.withLock(condition) {
            guard Date() < deadline else { throw PollTestFailure(what: "no \(what) within 120 s") }
            usleep(100)
        }
    }
}

private struct PollTestFailure: Error { let what: String }

/// A network device's shape, without the network: queue 0 is a receive queue, whose buffers are
/// filled when the host side has data (`arrive`), queue 1 a transmit queue, whose buffers are the
/// work and which the worker polls.
private final class LoopbackModel: VirtioDeviceModel, @unchecked Sendable {
    // Unchecked Sendable: `waiting` and `wake` are guarded by `lock`.
    let deviceID: UInt32 = VirtioDeviceID.network
    let deviceFeatures = VirtioFeature.version1 | VirtioFeature.eventIndex
    let queueCount = 2
    let queueSizeMax: UInt16 = 8
    let configSpace: [UInt8] = Array(repeating: 0, count: 8)
    private let lock = NSLock()
    private var waiting = 0
    private var wake: (@Sendable (Int) -> Void)?

    func serve(_ chain: DescriptorChain, queue: Int, memory: GuestMemory, features: UInt64) throws(VirtqueueError) -> UInt32 {
        guard queue == 0 else { return 0 }
        lock.withLock { waiting -= 1 }
        return 1
    }
    func hasWork(queue: Int) -> Bool { queue != 0 || lock.withLock { waiting > 0 } }
    func start(wake: @escaping @Sendable (Int) -> Void) { lock.withLock { self.wake = wake } }
    func pollsAvailableRing(queue: Int) -> Bool { queue == 1 }

    /// A frame arrives from the host side: the receive queue has work.
    func arrive() {
        let wake = lock.withLock { waiting += 1; return self.wake }
        wake?(0)
    }
}

@Suite("Virtio worker polling")
struct VirtioWorkerPollTests {
    @Test("the worker's poll takes a request the driver made available without notifying, and counts it")
    func pollTakesRequestWithoutNotification() throws {
        // A poll far longer than the test: only the request or the stop ends it.
        let disk = try PolledDevice(pollNanoseconds: 600_000_000_000)
        disk.bringUp()
        disk.slot.start()
        #expect(try disk.submitFlush(), "the first request is notified: nobody polls yet")
        // The worker published the completion and began polling in one hold of the lock.
        try disk.waitUntil("the first completion") { disk.usedIndex == 1 }
        // avail_event went back one (the driver passed it), so the driver does not notify.
        #expect(disk.availableEvent == 0)
        #expect(try !disk.submitFlush(), "notified while the worker polled")
        try disk.waitUntil("the second completion") { disk.usedIndex == 2 }
        // Stopping ends the (long) poll the worker went back to.
        disk.slot.stop()
        let counts = disk.platform.lock.withLock { disk.slot.device.queueStatistics[0] }
        #expect(counts.buffers == 2 && counts.notifications == 1 && counts.polledPasses == 1)
    }

    @Test("a transmit queue's poll goes on across a pass over the receive queue")
    func pollOutlivesOtherQueuesPass() throws {
        let model = LoopbackModel()
        let device = try PolledDevice(model: model, pollNanoseconds: 600_000_000_000)
        device.bringUp()
        device.slot.start()
        let frame = PolledDevice.buffers
        #expect(try device.submit(queue: 1, [(frame, 64, false)]), "the first frame is notified: nobody polls yet")
        try device.waitUntil("the first frame sent") { device.usedIndex(queue: 1) == 1 }
        // A receive buffer, and a frame from the host for it: a pass over queue 0 while queue
        // 1 is polled.
        try device.submit(queue: 0, [(frame + 0x1000, 64, true)])
        model.arrive()
        try device.waitUntil("the frame received") { device.usedIndex(queue: 0) == 1 }
        // The transmit queue is still polled: the driver is not asked to notify, and the next
        // frame is taken anyway.
        #expect(try !device.submit(queue: 1, [(frame, 64, false)]), "notified after the receive pass")
        try device.waitUntil("the second frame sent") { device.usedIndex(queue: 1) == 2 }
        device.slot.stop()
        let counts = device.platform.lock.withLock { device.slot.device.queueStatistics[1] }
        #expect(counts.buffers == 2 && counts.notifications == 1 && counts.polledPasses == 1)
    }

    @Test("a poll that ran out long before the next request halves the queue's window")
    func windowShrinksAfterASilence() throws {
        let longest: UInt64 = 1_000_000
        let disk = try PolledDevice(pollNanoseconds: longest)
        disk.bringUp()
        disk.slot.start()
        #expect(disk.platform.lock.withLock { disk.slot.pollWindows[0].current } == longest)
        #expect(try disk.submitFlush())
        try disk.waitUntil("the first completion") { disk.usedIndex == 1 }
        // The worker's poll runs out (nothing comes) ...
        try disk.waitUntil("the poll to run out") { disk.slot.pollMissedAt[0] != nil }
        // ... and the next request comes more than the longest poll after: the driver notifies
        // (notifications are on again), and the window halves.
        usleep(UInt32(2 * longest / 1000))
        #expect(try disk.submitFlush())
        try disk.waitUntil("the second completion") { disk.usedIndex == 2 }
        disk.slot.stop()
        #expect(disk.platform.lock.withLock { disk.slot.pollWindows[0].current } == longest / 2)
        let counts = disk.platform.lock.withLock { disk.slot.device.queueStatistics[0] }
        #expect(counts.buffers == 2 && counts.notifications == 2 && counts.polledPasses == 0)
    }

    @Test("without polling every request is notified")
    func noPollNotifiesEachRequest() throws {
        let disk = try PolledDevice(pollNanoseconds: 0)
        disk.bringUp()
        disk.slot.start()
        for n in 1...3 {
            #expect(try disk.submitFlush())
            try disk.waitUntil("completion \(n)") { disk.usedIndex == UInt16(n) }
        }
        disk.slot.stop()
        let counts = disk.platform.lock.withLock { disk.slot.device.queueStatistics[0] }
        #expect(counts.buffers == 3 && counts.notifications == 3 && counts.polledPasses == 0)
    }
}
