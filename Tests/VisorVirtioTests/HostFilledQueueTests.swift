import Synchronization
import Testing
import VisorCore
@testable import VisorVirtio

/// A queue the device fills from the host side (a network's receive queue, a console's input):
/// the driver's buffers wait on the available ring until the host has data for them.
@Suite struct HostFilledQueueTests {
    /// A device with one queue that writes host-side messages, one per buffer.
    final class MessageDevice: VirtioDeviceModel, @unchecked Sendable {
        // @unchecked: `waiting` is behind its Mutex; the rest are `let`s.
        let deviceID: UInt32 = 3
        let deviceFeatures = VirtioFeature.version1 | VirtioFeature.indirectDescriptors
        let queueCount = 1
        let queueSizeMax: UInt16 = 8
        let configSpace: [UInt8] = []
        let waiting = Mutex<[[UInt8]]>([])

        func hasWork(queue: Int) -> Bool { waiting.withLock { !$0.isEmpty } }

        func serve(_ chain: DescriptorChain, queue: Int, memory: GuestMemory, features: UInt64) throws(VirtqueueError) -> UInt32 {
            guard let message = waiting.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) else {
                throw .malformedRequest("served with nothing waiting: hasWork was not asked")
            }
            let count = min(UInt64(message.count), chain.writableLength)
            try chain.write(Array(message.prefix(Int(count))), memory, offset: 0)
            return UInt32(count)
        }
    }

    @Test func buffersWaitForHostData() throws {
        let model = MessageDevice()
        let driver = try FakeDriver(model: model)
        try driver.bringUp()
        let buffers = [driver.allocate(64), driver.allocate(64)]
        for (index, buffer) in buffers.enumerated() {
            try driver.setDescriptor(UInt16(index), address: buffer, length: 64, flags: SplitVirtqueue.descriptorWrite)
            try driver.makeAvailable(UInt16(index))
        }
        // The driver's notification finds nothing to send: both buffers stay available.
        driver.kick()
        #expect(driver.usedIndex == 0)
        #expect(driver.device.brokenReason == nil)
        #expect(driver.device.finishService(try #require(driver.device.beginService(queue: 0))) == false,
                "a queue with buffers but no host data is not served again until the model wakes it")

        // Host data for one buffer: one used entry, the other buffer still waits.
        model.waiting.withLock { $0.append(Array("hello".utf8)) }
        driver.device.serveSynchronously(queue: 0)
        #expect(driver.usedIndex == 1)
        let first = try driver.usedEntry(0)
        #expect(first.id == 0 && first.length == 5)
        #expect(try driver.memory.read(at: GuestPhysicalAddress(buffers[0]), count: 5) == Array("hello".utf8))

        model.waiting.withLock { $0.append(Array("again".utf8)); $0.append(Array("more".utf8)) }
        driver.device.serveSynchronously(queue: 0)
        #expect(driver.usedIndex == 2, "one buffer left for two messages")
        #expect(model.waiting.withLock { $0.count } == 1, "the second message waits for the next buffer")
    }
}
