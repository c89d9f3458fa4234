import Synchronization
import Testing
import VisorCore
@testable import VisorVirtio

/// virtio-console driven by the fake driver: its receive queue (0) is FakeDriver's queue at
/// TestLayout's addresses, its transmit queue (1) is set up by `ConsoleTransmitQueue` below.
@Suite struct VirtioConsoleTests {
    /// What the console wrote out, in calls, and the queues its `wake` named.
    final class Recorder: Sendable {
        let chunks = Mutex<[[UInt8]]>([])
        let wakes = Mutex<[Int]>([])
        var bytes: [UInt8] { chunks.withLock { $0.flatMap { $0 } } }
    }

    struct Console {
        let model: VirtioConsole
        let driver: FakeDriver
        let transmit: ConsoleTransmitQueue
        let recorder: Recorder
    }

    func makeConsole(inputCapacity: Int = 4096, transferChunk: UInt64 = 64 << 10) throws -> Console {
        let recorder = Recorder()
        let model = VirtioConsole(queueSize: 8, inputCapacity: inputCapacity, transferChunk: transferChunk) { bytes in
            recorder.chunks.withLock { $0.append(bytes) }
        }
        model.start(wake: { queue in recorder.wakes.withLock { $0.append(queue) } })
        let driver = try FakeDriver(model: model)
        let features = VirtioFeature.version1 | VirtioFeature.indirectDescriptors
        guard driver.negotiate(features) else { throw TestFailure("the console refused \(features)") }
        driver.setUpQueue()
        let transmit = ConsoleTransmitQueue(driver: driver)
        transmit.setUp()
        driver.driverOK()
        guard driver.device.isLive else { throw TestFailure("not live: \(driver.device.brokenReason ?? "?")") }
        return Console(model: model, driver: driver, transmit: transmit, recorder: recorder)
    }

    /// Offers `count` receive buffers of `length` bytes as descriptors 0..<count; their addresses.
    func offerReceiveBuffers(_ driver: FakeDriver, count: Int, length: UInt32) throws -> [UInt64] {
        try (0..<count).map { index in
            let buffer = driver.allocate(UInt64(length))
            try driver.setDescriptor(UInt16(index), address: buffer, length: length, flags: SplitVirtqueue.descriptorWrite)
            try driver.makeAvailable(UInt16(index))
            return buffer
        }
    }

    @Test func isAConsoleWithTwoQueuesAndNoMultiport() throws {
        let console = try makeConsole()
        #expect(console.driver.read(VirtioMMIORegister.deviceID) == 3)
        #expect(console.model.queueCount == 2)
        #expect(console.driver.deviceFeatures & 0b111 == 0, "no F_SIZE, F_MULTIPORT or F_EMERG_WRITE")
        #expect(console.driver.negotiate(VirtioFeature.version1 | 1 << 1) == false, "MULTIPORT is not offered")
    }

    @Test func outputBytesInOrder() throws {
        let console = try makeConsole()
        let transmit = console.transmit
        // A two-buffer chain, then a one-buffer chain, in one notification; then another.
        try transmit.send([Array("hel".utf8), Array("lo, ".utf8)], descriptor: 0)
        try transmit.send([Array("world".utf8)], descriptor: 2)
        transmit.kick()
        try transmit.send([Array("!\n".utf8)], descriptor: 0)
        transmit.kick()
        #expect(String(decoding: console.recorder.bytes, as: UTF8.self) == "hello, world!\n")
        #expect(transmit.usedIndex == 3)
        for n in 0..<3 { #expect(try transmit.usedEntry(UInt16(n)).length == 0, "the device writes nothing into output buffers") }
        #expect(console.driver.device.brokenReason == nil)
        #expect(console.driver.usedIndex == 0, "the receive queue is untouched")
    }

    @Test func largeOutputMovesInChunks() throws {
        let console = try makeConsole(transferChunk: 1000)
        let data = pattern(2500)
        try console.transmit.send([data], descriptor: 0)
        console.transmit.kick()
        #expect(console.recorder.chunks.withLock { $0.map(\.count) } == [1000, 1000, 500])
        #expect(console.recorder.bytes == data)
    }

    @Test func inputIntoBuffers() throws {
        let console = try makeConsole()
        let driver = console.driver
        let buffers = try offerReceiveBuffers(driver, count: 2, length: 64)
        driver.kick()
        #expect(driver.usedIndex == 0, "no input yet: the buffers wait")

        #expect(console.model.receive(Array("ls\n".utf8)) == 3)
        #expect(console.recorder.wakes.withLock { $0 } == [VirtioConsole.receiveQueue], "input wakes the receive queue")
        driver.device.serveSynchronously(queue: VirtioConsole.receiveQueue)
        #expect(driver.usedIndex == 1)
        let entry = try driver.usedEntry(0)
        #expect(entry.id == 0 && entry.length == 3)
        #expect(try driver.memory.read(at: GuestPhysicalAddress(buffers[0]), count: 3) == Array("ls\n".utf8))
        #expect(console.model.pendingInput == 0)
        #expect(driver.lineChanges.first == true, "the used buffer raised the interrupt")
    }

    @Test func inputLargerThanABufferIsSplitAcrossBuffers() throws {
        let console = try makeConsole()
        let driver = console.driver
        let buffers = try offerReceiveBuffers(driver, count: 3, length: 4)
        console.model.receive(Array("0123456789".utf8))
        driver.device.serveSynchronously(queue: VirtioConsole.receiveQueue)
        #expect(driver.usedIndex == 3)
        #expect(try (0..<3).map { try driver.usedEntry(UInt16($0)).length } == [4, 4, 2])
        let received = try zip(buffers, [4, 4, 2]).flatMap { try driver.memory.read(at: GuestPhysicalAddress($0), count: $1) }
        #expect(received == Array("0123456789".utf8))
    }

    @Test func inputWaitsForBuffers() throws {
        let console = try makeConsole()
        let driver = console.driver
        console.model.receive(Array("abcdef".utf8))
        driver.device.serveSynchronously(queue: VirtioConsole.receiveQueue)
        #expect(driver.usedIndex == 0)
        #expect(console.model.pendingInput == 6, "no buffers: the input stays queued")

        // One small buffer takes the start; the rest waits for the next.
        let first = try offerReceiveBuffers(driver, count: 1, length: 4)
        driver.kick()
        #expect(driver.usedIndex == 1)
        #expect(try driver.memory.read(at: GuestPhysicalAddress(first[0]), count: 4) == Array("abcd".utf8))
        #expect(console.model.pendingInput == 2)
        let buffer = driver.allocate(16)
        try driver.setDescriptor(1, address: buffer, length: 16, flags: SplitVirtqueue.descriptorWrite)
        try driver.makeAvailable(1)
        driver.kick()
        #expect(driver.usedIndex == 2)
        #expect(try driver.usedEntry(1).length == 2)
        #expect(try driver.memory.read(at: GuestPhysicalAddress(buffer), count: 2) == Array("ef".utf8))
    }

    @Test func fullInputQueueRefusesTheRest() throws {
        let console = try makeConsole(inputCapacity: 8)
        #expect(console.model.receive(Array("0123456789AB".utf8)) == 8, "back-pressure: the caller keeps the rest")
        #expect(console.model.receive([0x41]) == 0)
        #expect(console.recorder.wakes.withLock { $0.count } == 1, "nothing taken, nothing to wake for")
        _ = try offerReceiveBuffers(console.driver, count: 1, length: 5)
        console.driver.kick()
        #expect(console.model.pendingInput == 3)
        #expect(console.model.receive(Array("89AB".utf8)) == 4, "room again once the guest took some, wrapping in the ring")
        let buffer = console.driver.allocate(16)
        try console.driver.setDescriptor(1, address: buffer, length: 16, flags: SplitVirtqueue.descriptorWrite)
        try console.driver.makeAvailable(1)
        console.driver.kick()
        #expect(try console.driver.memory.read(at: GuestPhysicalAddress(buffer), count: 7) == Array("56789AB".utf8))
    }

    @Test func readableReceiveBufferBreaksTheDevice() throws {
        let console = try makeConsole()
        let driver = console.driver
        let buffer = driver.allocate(16)
        try driver.setDescriptor(0, address: buffer, length: 16)  // device-readable
        try driver.makeAvailable(0)
        console.model.receive(Array("x".utf8))
        driver.device.serveSynchronously(queue: VirtioConsole.receiveQueue)
        #expect(driver.device.read(offset: VirtioMMIORegister.status, size: 4) & UInt64(VirtioStatus.deviceNeedsReset) != 0)
        #expect(driver.device.brokenReason?.contains("receive buffer has 16 device-readable bytes") == true)
        #expect(driver.usedIndex == 0)
        #expect(console.model.pendingInput == 1, "the input was not lost in the broken buffer")
    }

    @Test func writableTransmitBufferBreaksTheDevice() throws {
        let console = try makeConsole()
        let transmit = console.transmit
        let buffer = console.driver.allocate(8)
        try transmit.setDescriptor(0, address: buffer, length: 8, flags: SplitVirtqueue.descriptorWrite)
        try transmit.makeAvailable(0)
        transmit.kick()
        #expect(console.driver.device.brokenReason?.contains("transmit buffer has 8 device-writable bytes") == true)
        #expect(console.recorder.bytes.isEmpty)
    }

    @Test func transmitBufferOutsideRAMBreaksTheDevice() throws {
        let console = try makeConsole()
        let transmit = console.transmit
        try transmit.setDescriptor(0, address: TestLayout.ramSize - 4, length: 8)
        try transmit.makeAvailable(0)
        transmit.kick()
        #expect(console.driver.device.brokenReason?.contains("not inside guest RAM") == true)
        #expect(console.recorder.bytes.isEmpty)
    }
}

/// The fake driver's second queue, virtio-console's transmitq0, at addresses of its own.
final class ConsoleTransmitQueue {
    static let descriptorTable: UInt64 = 0x4000
    static let availableRing: UInt64 = 0x5000
    static let usedRing: UInt64 = 0x6000
    static let index = VirtioConsole.transmitQueue

    let driver: FakeDriver
    private var availableIndex: UInt16 = 0

    init(driver: FakeDriver) { self.driver = driver }

    func setUp() {
        driver.write(VirtioMMIORegister.queueSel, UInt32(Self.index))
        driver.write(VirtioMMIORegister.queueNum, UInt32(driver.queueSize))
        driver.write(VirtioMMIORegister.queueDescLow, UInt32(Self.descriptorTable))
        driver.write(VirtioMMIORegister.queueDescHigh, 0)
        driver.write(VirtioMMIORegister.queueDriverLow, UInt32(Self.availableRing))
        driver.write(VirtioMMIORegister.queueDriverHigh, 0)
        driver.write(VirtioMMIORegister.queueDeviceLow, UInt32(Self.usedRing))
        driver.write(VirtioMMIORegister.queueDeviceHigh, 0)
        driver.write(VirtioMMIORegister.queueReady, 1)
    }

    func setDescriptor(_ index: UInt16, address: UInt64, length: UInt32, flags: UInt16 = 0, next: UInt16 = 0) throws {
        try driver.setDescriptor(index, address: address, length: length, flags: flags, next: next, table: Self.descriptorTable)
    }

    func makeAvailable(_ head: UInt16) throws {
        let index = availableIndex
        availableIndex &+= 1
        let slot = UInt64(index % driver.queueSize)
        try driver.memory.store(head, at: GuestPhysicalAddress(Self.availableRing + 4 + 2 * slot))
        try driver.memory.store(index &+ 1, at: GuestPhysicalAddress(Self.availableRing + 2))
    }

    /// Copies `pieces` into fresh buffers chained from descriptor `descriptor` on, and makes the
    /// chain available.
    func send(_ pieces: [[UInt8]], descriptor: UInt16) throws {
        for (offset, piece) in pieces.enumerated() {
            let buffer = driver.allocate(UInt64(piece.count))
            try driver.memory.write(piece, at: GuestPhysicalAddress(buffer))
            let last = offset == pieces.count - 1
            try setDescriptor(descriptor + UInt16(offset), address: buffer, length: UInt32(piece.count),
                              flags: last ? 0 : SplitVirtqueue.descriptorNext, next: descriptor + UInt16(offset) + 1)
        }
        try makeAvailable(descriptor)
    }

    func kick() {
        driver.write(VirtioMMIORegister.queueNotify, UInt32(Self.index))
        driver.device.serveSynchronously(queue: Self.index)
    }

    var usedIndex: UInt16 { (try? driver.memory.load(UInt16.self, at: GuestPhysicalAddress(Self.usedRing + 2))) ?? 0xdead }

    func usedEntry(_ n: UInt16) throws -> (id: UInt32, length: UInt32) {
        let slot = Self.usedRing + 4 + 8 * UInt64(n % driver.queueSize)
        return (try driver.memory.load(UInt32.self, at: GuestPhysicalAddress(slot)),
                try driver.memory.load(UInt32.self, at: GuestPhysicalAddress(slot + 4)))
    }
}
