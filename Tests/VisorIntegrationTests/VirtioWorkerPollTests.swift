// The virtio worker's poll of the available ring (vhost's busy-poll), on its real thread: after
// serving a request it polls with the driver asked not to notify, and takes the next request,
// which the driver made available without notifying, with no notification at all.

import Foundation
import Testing
import VisorCore
import VisorDevices
import VisorVirtio
@testable import Visor

/// A virtio-blk slot on a platform, driven from the test thread as Linux's virtio_mmio driver
/// drives it (register writes under the platform lock, the split ring in guest RAM).
private final class PolledDisk {
    static let queueSize: UInt16 = 8
    static let descriptors: UInt64 = 0x1000, available: UInt64 = 0x2000, used: UInt64 = 0x3000, buffers: UInt64 = 0x10000
    let imagePath = NSTemporaryDirectory() + "visor-poll-test-\(UUID().uuidString).img"
    let platform: DevicePlatform
    let memory: GuestMemory
    let slot: VirtioSlot
    private var availableIndex: UInt16 = 0

    private final class Clock: TimeSource { var nanoseconds: UInt64 { 0 } }

    init(pollNanoseconds: UInt64) throws {
        guard FileManager.default.createFile(atPath: imagePath, contents: Data(count: 64 * 512)) else {
            throw PollTestFailure(what: "cannot create \(imagePath)")
        }
        platform = try DevicePlatform(vcpuCount: 1, clock: Clock(), tscFrequency: 1_000_000_000,
                                      apicTimerFrequency: 1_000_000_000, consoleOutput: { _ in })
        platform.setSignalHandler { _, _ in }
        memory = try GuestMemory(size: 1 << 20)
        let model = VirtioBlock(storage: try RawDiskImage(path: imagePath, readOnly: false), serial: "poll")
        slot = VirtioSlot(model: model, name: "virtio-blk test", index: 0, platform: platform, memory: memory,
                          pollNanoseconds: pollNanoseconds, notice: { _ in })
    }

    deinit { unlink(imagePath) }

    func write(_ register: UInt64, _ value: UInt64) {
        platform.lock.withLock { slot.device.write(offset: register, size: 4, value: value) }
    }

    /// Feature negotiation (VERSION_1 and EVENT_IDX), queue 0 at the addresses above, DRIVER_OK.
    func bringUp() {
        let features = VirtioFeature.version1 | VirtioFeature.eventIndex
        write(VirtioMMIORegister.status, 0)
        write(VirtioMMIORegister.status, UInt64(VirtioStatus.acknowledge | VirtioStatus.driver))
        write(VirtioMMIORegister.driverFeaturesSel, 0)
        write(VirtioMMIORegister.driverFeatures, features & 0xffff_ffff)
        write(VirtioMMIORegister.driverFeaturesSel, 1)
        write(VirtioMMIORegister.driverFeatures, features >> 32)
        write(VirtioMMIORegister.status, UInt64(VirtioStatus.acknowledge | VirtioStatus.driver | VirtioStatus.featuresOK))
        write(VirtioMMIORegister.queueSel, 0)
        write(VirtioMMIORegister.queueNum, UInt64(Self.queueSize))
        write(VirtioMMIORegister.queueDescLow, Self.descriptors)
        write(VirtioMMIORegister.queueDriverLow, Self.available)
        write(VirtioMMIORegister.queueDeviceLow, Self.used)
        write(VirtioMMIORegister.queueReady, 1)
        write(VirtioMMIORegister.status, UInt64(VirtioStatus.acknowledge | VirtioStatus.driver | VirtioStatus.featuresOK
                                                | VirtioStatus.driverOK))
    }

    var usedIndex: UInt16 { (try? memory.load(UInt16.self, at: GuestPhysicalAddress(Self.used + 2))) ?? 0 }
    var availableEvent: UInt16 {
        (try? memory.load(UInt16.self, at: GuestPhysicalAddress(Self.used + 4 + 8 * UInt64(Self.queueSize)))) ?? 0
    }

    /// A FLUSH request (header in descriptor 0, status in 1), made available; notifies only when
    /// the new index passes avail_event, as virtqueue_kick_prepare decides. Returns whether it did.
    @discardableResult
    func submitFlush() throws -> Bool {
        let header = Self.buffers, status = Self.buffers + 16
        try memory.store(VirtioBlock.RequestType.flush, at: GuestPhysicalAddress(header))
        try memory.store(header, at: GuestPhysicalAddress(Self.descriptors))
        try memory.store(UInt32(16), at: GuestPhysicalAddress(Self.descriptors + 8))
        try memory.store(SplitVirtqueue.descriptorNext, at: GuestPhysicalAddress(Self.descriptors + 12))
        try memory.store(UInt16(1), at: GuestPhysicalAddress(Self.descriptors + 14))
        try memory.store(status, at: GuestPhysicalAddress(Self.descriptors + 16))
        try memory.store(UInt32(1), at: GuestPhysicalAddress(Self.descriptors + 24))
        try memory.store(SplitVirtqueue.descriptorWrite, at: GuestPhysicalAddress(Self.descriptors + 28))
        let old = availableIndex
        try memory.store(UInt16(0), at: GuestPhysicalAddress(Self.available + 4 + 2 * UInt64(old % Self.queueSize)))
        availableIndex &+= 1
        try memory.store(availableIndex, at: GuestPhysicalAddress(Self.available + 2))
        guard SplitVirtqueue.needsEvent(eventIndex: availableEvent, new: availableIndex, old: old) else { return false }
        write(VirtioMMIORegister.queueNotify, 0)
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

@Suite("Virtio worker polling")
struct VirtioWorkerPollTests {
    @Test("the worker's poll takes a request the driver made available without notifying, and counts it")
    func pollTakesRequestWithoutNotification() throws {
        // A poll far longer than the test: only the request or the stop ends it.
        let disk = try PolledDisk(pollNanoseconds: 600_000_000_000)
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

    @Test("a poll that ran out long before the next request halves the queue's window")
    func windowShrinksAfterASilence() throws {
        let longest: UInt64 = 1_000_000
        let disk = try PolledDisk(pollNanoseconds: longest)
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
        let disk = try PolledDisk(pollNanoseconds: 0)
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
