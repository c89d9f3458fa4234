#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Testing
import VisorCore
@testable import VisorVirtio

/// A backend that keeps what the device sends and gives no frames (the tests offer them).
final class FakePacketBackend: PacketBackend, @unchecked Sendable {
    // @unchecked: the mutable state is behind its Mutex.
    let sent = Mutex<[[UInt8]]>([])
    let refuseSends = Mutex(false)
    let interrupts = Atomic<Int>(0)

    func send(_ frame: [UInt8]) throws(PacketBackendError) {
        if refuseSends.withLock({ $0 }) { throw PacketBackendError("refused") }
        sent.withLock { $0.append(frame) }
    }
    func receive(acceptingFrames: Bool) -> PacketReceive { .closed("the fake backend gives no frames") }
    func interrupt() { interrupts.add(1, ordering: .relaxed) }
    func close() {}
}

@Suite struct VirtioNetTests {
    static let mac = MACAddress(bytes: [0x02, 0x11, 0x22, 0x33, 0x44, 0x55])!
    /// A receive buffer as Linux gives without mergeable buffers: the header and a full frame.
    static let receiveBufferSize: UInt32 = 1526

    func makeDriver(receiveBound: Int = 64) throws -> (FakeDriver, VirtioNet, FakePacketBackend) {
        let backend = FakePacketBackend()
        let model = VirtioNet(backend: backend, mac: Self.mac, queueSize: 8, receiveBound: receiveBound)
        let driver = try FakeDriver(model: model)
        try driver.bringUp(extraFeatures: VirtioNet.Feature.mac | VirtioNet.Feature.status)
        return (driver, model, backend)
    }

    /// Gives receive buffer `index` (descriptor `index` of the receive queue) of `length` bytes.
    func giveReceiveBuffer(_ driver: FakeDriver, index: UInt16, length: UInt32 = receiveBufferSize) throws -> UInt64 {
        let buffer = driver.allocate(UInt64(length))
        try driver.setDescriptor(index, address: buffer, length: length, flags: SplitVirtqueue.descriptorWrite,
                                 queue: VirtioNet.receiveQueue)
        try driver.makeAvailable(index, queue: VirtioNet.receiveQueue)
        return buffer
    }

    /// Sends `frame` after a header as two descriptors (header, frame), as Linux does when the
    /// header does not fit in the skb's headroom, and kicks the transmit queue.
    func transmit(_ driver: FakeDriver, _ frame: [UInt8], header: [UInt8] = [UInt8](repeating: 0, count: 12)) throws {
        let headerAddress = driver.allocate(UInt64(header.count))
        try driver.memory.write(header, at: GuestPhysicalAddress(headerAddress))
        let frameAddress = driver.allocate(UInt64(frame.count))
        try driver.memory.write(frame, at: GuestPhysicalAddress(frameAddress))
        let queue = VirtioNet.transmitQueue
        try driver.setDescriptor(0, address: headerAddress, length: UInt32(header.count), flags: SplitVirtqueue.descriptorNext,
                                 next: 1, queue: queue)
        try driver.setDescriptor(1, address: frameAddress, length: UInt32(frame.count), queue: queue)
        try driver.makeAvailable(0, queue: queue)
        driver.kick(queue: queue)
    }

    @Test func identifiesAsANetworkDeviceWithItsAddressAndLinkUp() throws {
        let (driver, _, _) = try makeDriver()
        #expect(driver.read(VirtioMMIORegister.deviceID) == 1)
        let features = driver.deviceFeatures
        #expect(features & VirtioFeature.version1 != 0)
        #expect(features & VirtioNet.Feature.mac != 0 && features & VirtioNet.Feature.status != 0)
        let mac = (0..<6).map { UInt8(driver.device.read(offset: VirtioMMIORegister.config + UInt64($0), size: 1)) }
        #expect(mac == Self.mac.bytes)
        #expect(driver.device.read(offset: VirtioMMIORegister.config + 6, size: 2) == UInt64(VirtioNet.linkUp))
        #expect(driver.device.isLive)
    }

    @Test func transmittedFrameReachesTheBackendWithoutItsHeader() throws {
        let (driver, model, backend) = try makeDriver()
        let frame = pattern(60, seed: 7)
        try transmit(driver, frame, header: [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        #expect(backend.sent.withLock { $0 } == [frame])
        #expect(driver.usedIndex(queue: VirtioNet.transmitQueue) == 1)
        #expect(try driver.usedEntry(0, queue: VirtioNet.transmitQueue).length == 0, "the device wrote nothing")
        #expect(model.counters.sent == 1 && model.counters.sentBytes == 60)
        #expect(driver.device.queueStatistics[VirtioNet.transmitQueue].notifications == 1)
        #expect(driver.device.queueStatistics[VirtioNet.transmitQueue].buffers == 1)

        // The header and frame in one descriptor.
        let both = driver.allocate(12 + 100)
        try driver.memory.write([UInt8](repeating: 0, count: 12) + pattern(100), at: GuestPhysicalAddress(both))
        try driver.setDescriptor(2, address: both, length: 112, queue: VirtioNet.transmitQueue)
        try driver.makeAvailable(2, queue: VirtioNet.transmitQueue)
        driver.kick(queue: VirtioNet.transmitQueue)
        #expect(backend.sent.withLock { $0.last } == pattern(100))
    }

    @Test func aFrameTheBackendRefusesIsCountedNotFatal() throws {
        let (driver, model, backend) = try makeDriver()
        backend.refuseSends.withLock { $0 = true }
        try transmit(driver, pattern(60))
        #expect(model.counters.sendErrors == 1 && model.counters.sent == 0)
        #expect(driver.usedIndex(queue: VirtioNet.transmitQueue) == 1, "the buffer goes back to the driver")
        #expect(driver.device.brokenReason == nil)
    }

    @Test func receivedFrameArrivesAfterAHeaderThatAsksNothing() throws {
        let (driver, model, _) = try makeDriver()
        let buffer = try giveReceiveBuffer(driver, index: 0)
        try driver.memory.write([UInt8](repeating: 0xee, count: 12), at: GuestPhysicalAddress(buffer))
        let frame = pattern(98, seed: 3)
        #expect(model.offer(frame))
        driver.device.serveSynchronously(queue: VirtioNet.receiveQueue)
        #expect(driver.usedIndex(queue: VirtioNet.receiveQueue) == 1)
        let entry = try driver.usedEntry(0, queue: VirtioNet.receiveQueue)
        #expect(entry.id == 0 && entry.length == 12 + 98)
        let written = try driver.memory.read(at: GuestPhysicalAddress(buffer), count: 12 + 98)
        // flags, gso_type, hdr_len, gso_size, csum_start, csum_offset zero; num_buffers 1.
        #expect(Array(written[0..<10]) == [UInt8](repeating: 0, count: 10))
        #expect(Array(written[10..<12]) == [1, 0])
        #expect(Array(written[12...]) == frame)
        #expect(model.counters.received == 1 && model.waitingFrames == 0)
        #expect(driver.device.queueStatistics[VirtioNet.receiveQueue].interrupts == 1)
    }

    @Test func aFrameLargerThanTheBufferIsDroppedAndTheBufferReturnedEmpty() throws {
        let (driver, model, _) = try makeDriver()
        _ = try giveReceiveBuffer(driver, index: 0, length: 12 + 64)
        let second = try giveReceiveBuffer(driver, index: 1)
        model.offer(pattern(65))   // one byte too many for the first buffer
        model.offer(pattern(64, seed: 9))
        driver.device.serveSynchronously(queue: VirtioNet.receiveQueue)
        #expect(driver.usedIndex(queue: VirtioNet.receiveQueue) == 2)
        #expect(try driver.usedEntry(0, queue: VirtioNet.receiveQueue).length == 0)
        #expect(try driver.usedEntry(1, queue: VirtioNet.receiveQueue).length == 12 + 64)
        #expect(try driver.memory.read(at: GuestPhysicalAddress(second + 12), count: 64) == pattern(64, seed: 9))
        #expect(model.counters.receiveTooLarge == 1 && model.counters.received == 1)
        #expect(driver.device.brokenReason == nil)
    }

    @Test func framesWaitForBuffersUpToTheBoundThenAreDroppedAndCounted() throws {
        let (driver, model, backend) = try makeDriver(receiveBound: 4)
        for seed in 0..<4 { #expect(model.offer(pattern(60, seed: seed))) }
        driver.device.serveSynchronously(queue: VirtioNet.receiveQueue)   // no buffers: nothing happens
        #expect(model.waitingFrames == 4)
        #expect(!model.offer(pattern(60, seed: 99)), "the fifth frame finds the queue full")
        #expect(model.counters.receiveDropped == 1)

        var buffers: [UInt64] = []
        for index in 0..<4 { buffers.append(try giveReceiveBuffer(driver, index: UInt16(index))) }
        driver.device.serveSynchronously(queue: VirtioNet.receiveQueue)
        #expect(driver.usedIndex(queue: VirtioNet.receiveQueue) == 4)
        for (seed, buffer) in buffers.enumerated() {
            #expect(try driver.memory.read(at: GuestPhysicalAddress(buffer + 12), count: 60) == pattern(60, seed: seed),
                    "frame \(seed) in order, none lost")
        }
        #expect(backend.interrupts.load(ordering: .relaxed) == 1, "the reader is told once that the full queue has room")
    }

    @Test(arguments: [
        ("a receive buffer the device should read", VirtioNet.receiveQueue, SplitVirtqueue.descriptorNext, UInt32(12)),
        ("a receive buffer shorter than the header", VirtioNet.receiveQueue, SplitVirtqueue.descriptorWrite, UInt32(11)),
        ("a transmit buffer the device should write", VirtioNet.transmitQueue, SplitVirtqueue.descriptorWrite, UInt32(60)),
        ("a transmit buffer shorter than the header", VirtioNet.transmitQueue, UInt16(0), UInt32(11)),
    ])
    func malformedChainsBreakTheDevice(what: String, queue: Int, flags: UInt16, length: UInt32) throws {
        let (driver, model, backend) = try makeDriver()
        let buffer = driver.allocate(2048)
        if flags == SplitVirtqueue.descriptorNext {
            // Readable then writable: the device may not read a receive buffer.
            try driver.setDescriptor(0, address: buffer, length: length, flags: flags, next: 1, queue: queue)
            try driver.setDescriptor(1, address: buffer + 1024, length: 1500, flags: SplitVirtqueue.descriptorWrite, queue: queue)
        } else {
            try driver.setDescriptor(0, address: buffer, length: length, flags: flags, queue: queue)
        }
        try driver.makeAvailable(0, queue: queue)
        model.offer(pattern(60))
        driver.kick(queue: queue)
        #expect(driver.device.brokenReason != nil, "\(what)")
        #expect(driver.device.read(offset: VirtioMMIORegister.status, size: 4) & UInt64(VirtioStatus.deviceNeedsReset) != 0)
        #expect(driver.usedIndex(queue: queue) == 0)
        #expect(backend.sent.withLock { $0.isEmpty })
    }

    /// The reader on a real descriptor (a datagram socket pair standing in for the TAP):
    /// it stops reading at the bound, frames stay in the socket meanwhile, and all arrive once
    /// the guest gives buffers; `stop` ends the reader while it waits in poll.
    @Test func theReaderStopsAtTheBoundAndResumesWhenBuffersComeBack() throws {
        var ends: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0, &ends) == 0)
        _ = fcntl(ends[0], F_SETFL, fcntl(ends[0], F_GETFL) | O_NONBLOCK)
        defer { close(ends[1]) }
        let backend = try PacketDescriptor(fd: ends[0], name: "socketpair")
        let model = VirtioNet(backend: backend, mac: Self.mac, queueSize: 8, receiveBound: 3)
        let driver = try FakeDriver(model: model)
        try driver.bringUp()
        let wakes = Atomic<Int>(0)
        model.start { queue in if queue == VirtioNet.receiveQueue { wakes.add(1, ordering: .relaxed) } }
        defer { model.stop() }

        let frames = (0..<8).map { pattern(60 + $0, seed: $0) }
        for frame in frames {
            #expect(frame.withUnsafeBytes { send(ends[1], $0.baseAddress, $0.count, 0) } == frame.count)
        }
        try waitUntil("the reader filled its queue") { model.waitingFrames == 3 && wakes.load(ordering: .relaxed) == 3 }
        // The rest wait in the socket, not dropped: the reader does not read while the queue is full.
        var pending: Int32 = 0
        _ = ioctl(ends[0], UInt(FIONREAD), &pending)
        #expect(pending > 0)
        #expect(model.counters.receiveDropped == 0)

        // Buffers for all eight: serving the three waiting makes room, the reader reads on.
        let buffers = try (0..<8).map { try giveReceiveBuffer(driver, index: UInt16($0)) }
        try waitUntil("all eight frames delivered") {
            driver.device.serveSynchronously(queue: VirtioNet.receiveQueue)
            return driver.usedIndex(queue: VirtioNet.receiveQueue) == 8
        }
        for (index, frame) in frames.enumerated() {
            #expect(try driver.usedEntry(UInt16(index), queue: VirtioNet.receiveQueue).length == UInt32(12 + frame.count))
            #expect(try driver.memory.read(at: GuestPhysicalAddress(buffers[index] + 12), count: frame.count) == frame)
        }
        #expect(model.counters.receiveDropped == 0 && model.counters.received == 8)
    }

    /// Polls `condition` until it holds (a generous deadline: the reader is another thread on a
    /// busy machine).
    func waitUntil(_ what: String, _ condition: () throws -> Bool) throws {
        for _ in 0..<3000 {
            if try condition() { return }
            usleep(5_000)
        }
        throw TestFailure("timed out waiting: \(what)")
    }

    @Test func macAddressesParseAndDeriveStably() {
        #expect(MACAddress("02:AB:cd:00:01:ff")?.bytes == [0x02, 0xab, 0xcd, 0x00, 0x01, 0xff])
        for bad in ["", "02:ab:cd:00:01", "02:ab:cd:00:01:ff:00", "02-ab-cd-00-01-ff", "2:ab:cd:00:01:ff", "02:ab:cd:00:01:gg"] {
            #expect(MACAddress(bad) == nil, "\(bad)")
        }
        let one = MACAddress.derived(from: "web/0")
        #expect(one == MACAddress.derived(from: "web/0"))
        #expect(one != MACAddress.derived(from: "web/1"))
        #expect(one.bytes[0] & 0x03 == 0x02, "locally administered, unicast")
        #expect(one.description.count == 17)
    }
}

@Suite struct TapDeviceTests {
    static let canMakeTaps = geteuid() == 0 && access("/dev/net/tun", F_OK) == 0

    @Test func interfaceNamesAreChecked() {
        #expect(TapDevice.nameProblem("tap0") == nil)
        #expect(TapDevice.nameProblem("") != nil)
        #expect(TapDevice.nameProblem("a-name-of-16-byt")?.contains("at most 15") == true)
        #expect(TapDevice.nameProblem("a/b") != nil && TapDevice.nameProblem("a b") != nil && TapDevice.nameProblem("a:b") != nil)
        #expect(TapDevice.nameProblem("vif%d.0") != nil)
        #expect(TapDevice.nameProblem("vif%d.0", allowingPattern: true) == nil)
        #expect(TapDevice.nameProblem("vif%d%d", allowingPattern: true) != nil)
        #expect(TapDevice.openProblem("t", errno: ENOENT).contains("/dev/net/tun does not exist"))
        #expect(TapDevice.openProblem("t", errno: EPERM).contains("CAP_NET_ADMIN"))
        #expect(TapDevice.openProblem("t", errno: EBUSY).contains("busy"))
    }

    @Test(.enabled(if: canMakeTaps, "needs root and /dev/net/tun"))
    func opensATapAndRefusesItTwiceOrANonTap() throws {
        let (tap, name) = try TapDevice.open("vtest%d")
        #expect(name.hasPrefix("vtest") && !name.contains("%"))
        #expect(tap.fd >= 0)
        #expect(throws: PacketBackendError.self) { try TapDevice.open(name) }
        do {
            _ = try TapDevice.open(name)
        } catch {
            #expect(error.description.contains("busy"), "\(error)")
        }
        do {
            _ = try TapDevice.open("lo")
            Issue.record("lo opened as a TAP")
        } catch {
            #expect(error.description.contains("not a TAP"), "\(error)")
        }
        // Closed, it can be opened again at once (a restarted domain does that).
        tap.close()
        let (again, againName) = try TapDevice.open(name)
        #expect(againName == name && again.fd >= 0)
        try TapDevice.bringUp(name)
        do {
            try TapDevice.addToBridge(name, bridge: "nobridge0")
            Issue.record("added to a bridge that does not exist")
        } catch {
            #expect(error.description.contains("no bridge named 'nobridge0'"), "\(error)")
        }
    }
}

/// A backend whose frames carry virtio-net headers (as a TAP with IFF_VNET_HDR does), which
/// records the offloads it is told of.
final class HeaderPacketBackend: PacketBackend, @unchecked Sendable {
    // @unchecked: the mutable state is behind its Mutexes.
    let sent = Mutex<[[UInt8]]>([])
    let offloads = Mutex<[PacketOffloads]>([])
    var carriesVirtioHeader: Bool { true }
    func setOffloads(_ o: PacketOffloads) { offloads.withLock { $0.append(o) } }
    func send(_ frame: [UInt8]) throws(PacketBackendError) { sent.withLock { $0.append(frame) } }
    func receive(acceptingFrames: Bool) -> PacketReceive { .closed("the fake backend gives no frames") }
    func interrupt() {}
    func close() {}
}

@Suite struct VirtioNetOffloadTests {
    func makeDriver(extraFeatures: UInt64) throws -> (FakeDriver, VirtioNet, HeaderPacketBackend) {
        let backend = HeaderPacketBackend()
        let model = VirtioNet(backend: backend, mac: VirtioNetTests.mac, queueSize: 8)
        let driver = try FakeDriver(model: model)
        try driver.bringUp(extraFeatures: VirtioNet.Feature.mac | extraFeatures)
        return (driver, model, backend)
    }

    @Test func offloadsAreOfferedOnlyWithABackendThatCarriesHeaders() throws {
        let (plain, _, _) = try VirtioNetTests().makeDriver()
        #expect(plain.deviceFeatures & VirtioNet.Feature.offloads == 0)
        let (withHeaders, _, _) = try makeDriver(extraFeatures: 0)
        #expect(withHeaders.deviceFeatures & VirtioNet.Feature.offloads == VirtioNet.Feature.offloads)
    }

    @Test func theGuestsHeaderGoesToTheBackendWithTheFrame() throws {
        let (driver, _, backend) = try makeDriver(extraFeatures: VirtioNet.Feature.checksum | VirtioNet.Feature.hostTSO4)
        let header: [UInt8] = [1, 1, 54, 0, 0xa8, 0x05, 34, 0, 16, 0, 0, 0]  // partial checksum, TSO4
        let frame = pattern(3000, seed: 5)
        try VirtioNetTests().transmit(driver, frame, header: header)
        #expect(backend.sent.withLock { $0 } == [header + frame])
    }

    @Test func aHostFrameKeepsItsOffloadsOnlyWhenTheDriverAcceptedThem() throws {
        // A TSO4 segment with a partial checksum, as a TAP hands one over.
        let tso: [UInt8] = [1, 1, 54, 0, 0xa8, 0x05, 34, 0, 16, 0, 0, 0]
        let frame = pattern(4000, seed: 9)
        let accepted = VirtioNet.Feature.guestChecksum | VirtioNet.Feature.guestTSO4
        let (driver, model, backend) = try makeDriver(extraFeatures: accepted)
        let buffer = try VirtioNetTests().giveReceiveBuffer(driver, index: 0, length: 12 + 4096)
        #expect(model.offer(tso + frame))
        driver.device.serveSynchronously(queue: VirtioNet.receiveQueue)
        let written = try driver.memory.read(at: GuestPhysicalAddress(buffer), count: 12 + 4000)
        #expect(Array(written[0..<10]) == Array(tso[0..<10]))
        #expect(Array(written[10..<12]) == [1, 0], "num_buffers 1")
        #expect(Array(written[12...]) == frame)
        #expect(backend.offloads.withLock { $0 } == [PacketOffloads(checksum: true, tso4: true, tso6: false)])

        // A driver that took no offloads never gets such a frame; a plain one arrives with a
        // header that asks nothing.
        let (plain, plainModel, plainBackend) = try makeDriver(extraFeatures: 0)
        _ = try VirtioNetTests().giveReceiveBuffer(plain, index: 0, length: 12 + 4096)
        #expect(plainModel.offer(tso + frame))
        plain.device.serveSynchronously(queue: VirtioNet.receiveQueue)
        #expect(plainModel.counters.receiveDropped == 1 && plainModel.counters.received == 0)
        #expect(plainBackend.offloads.withLock { $0 } == [PacketOffloads()])
        let small = [UInt8](repeating: 0, count: 12) + pattern(60)
        let second = try VirtioNetTests().giveReceiveBuffer(plain, index: 1)
        #expect(plainModel.offer(small))
        plain.device.serveSynchronously(queue: VirtioNet.receiveQueue)
        let got = try plain.memory.read(at: GuestPhysicalAddress(second), count: 12 + 60)
        #expect(Array(got[0..<10]) == [UInt8](repeating: 0, count: 10))
        #expect(Array(got[12...]) == pattern(60))
    }

    @Test func guestHeaderTable() {
        let csum = VirtioNet.Feature.guestChecksum
        let tso4 = csum | VirtioNet.Feature.guestTSO4
        func header(_ flags: UInt8, _ gso: UInt8) -> ArraySlice<UInt8> { ([flags, gso] + [UInt8](repeating: 7, count: 10))[...] }
        #expect(VirtioNet.guestHeader(nil, features: 0) == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0])
        #expect(VirtioNet.guestHeader(header(0, 0), features: 0)?[0..<10].allSatisfy { $0 == 0 } == true)
        #expect(VirtioNet.guestHeader(header(1, 0), features: 0) == nil, "a partial checksum needs GUEST_CSUM")
        #expect(VirtioNet.guestHeader(header(1, 0), features: csum)?[0] == 1)
        #expect(VirtioNet.guestHeader(header(1, 1), features: csum) == nil, "TSO4 needs GUEST_TSO4")
        #expect(VirtioNet.guestHeader(header(1, 1), features: tso4)?[1] == 1)
        #expect(VirtioNet.guestHeader(header(1, 4), features: tso4) == nil, "TSO6 needs GUEST_TSO6")
        #expect(VirtioNet.guestHeader(header(1, 3), features: tso4 | VirtioNet.Feature.guestTSO6) == nil, "UDP fragmentation is never offered")
    }
}
