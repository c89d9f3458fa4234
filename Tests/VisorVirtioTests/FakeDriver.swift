// A guest driver in Swift for the device-model tests: it programs a VirtioMMIODevice's registers
// the way Linux's virtio_mmio does and lays out a split ring in a GuestMemory.

#if canImport(Glibc)
import Glibc
#endif
import VisorCore
import VisorVirtio

/// Guest-physical layout of the fake driver's queue 0 and buffers.
enum TestLayout {
    static let descriptorTable: UInt64 = 0x1000
    static let availableRing: UInt64 = 0x2000
    static let usedRing: UInt64 = 0x3000
    static let buffers: UInt64 = 0x10000
    static let ramSize: UInt64 = 1 << 20

    /// Queue n's areas: queue 0 at the addresses above, each further queue 12 KiB higher
    /// (below `buffers` for up to four queues).
    static func descriptorTable(queue: Int) -> UInt64 { descriptorTable + 0x3000 * UInt64(queue) }
    static func availableRing(queue: Int) -> UInt64 { availableRing + 0x3000 * UInt64(queue) }
    static func usedRing(queue: Int) -> UInt64 { usedRing + 0x3000 * UInt64(queue) }
}

final class FakeDriver {
    let memory: GuestMemory
    let device: VirtioMMIODevice
    let queueSize: UInt16
    /// Each queue's available index as the driver published it.
    private(set) var availableIndices: [UInt16] = [0, 0, 0, 0]
    var availableIndex: UInt16 { availableIndices[0] }
    private(set) var notifications: [Int] = []
    private(set) var lineChanges: [Bool] = []
    /// Next free byte for `allocate`.
    private var nextBuffer = TestLayout.buffers

    init(model: any VirtioDeviceModel, queueSize: UInt16 = 8) throws {
        memory = try GuestMemory(size: TestLayout.ramSize)
        device = VirtioMMIODevice(model: model, memory: memory)
        self.queueSize = queueSize
        device.onQueueNotify = { [unowned self] in notifications.append($0) }
        device.onInterruptLevel = { [unowned self] in lineChanges.append($0) }
    }

    func read(_ register: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: device.read(offset: register, size: 4)) }
    func write(_ register: UInt64, _ value: UInt32) { device.write(offset: register, size: 4, value: UInt64(value)) }

    var deviceFeatures: UInt64 {
        write(VirtioMMIORegister.deviceFeaturesSel, 0)
        let low = UInt64(read(VirtioMMIORegister.deviceFeatures))
        write(VirtioMMIORegister.deviceFeaturesSel, 1)
        return low | UInt64(read(VirtioMMIORegister.deviceFeatures)) << 32
    }

    /// Negotiates `features`; returns whether the device kept FEATURES_OK.
    @discardableResult
    func negotiate(_ features: UInt64) -> Bool {
        write(VirtioMMIORegister.status, 0)
        write(VirtioMMIORegister.status, VirtioStatus.acknowledge)
        write(VirtioMMIORegister.status, VirtioStatus.acknowledge | VirtioStatus.driver)
        write(VirtioMMIORegister.driverFeaturesSel, 0)
        write(VirtioMMIORegister.driverFeatures, UInt32(truncatingIfNeeded: features))
        write(VirtioMMIORegister.driverFeaturesSel, 1)
        write(VirtioMMIORegister.driverFeatures, UInt32(truncatingIfNeeded: features >> 32))
        write(VirtioMMIORegister.status, VirtioStatus.acknowledge | VirtioStatus.driver | VirtioStatus.featuresOK)
        return read(VirtioMMIORegister.status) & VirtioStatus.featuresOK != 0
    }

    /// Configures queue `queue` (0 unless said) at TestLayout's addresses and marks it ready.
    func setUpQueue(size: UInt16? = nil, descriptorTable: UInt64? = nil, queue: Int = 0) {
        let descriptorTable = descriptorTable ?? TestLayout.descriptorTable(queue: queue)
        write(VirtioMMIORegister.queueSel, UInt32(queue))
        write(VirtioMMIORegister.queueNum, UInt32(size ?? queueSize))
        write(VirtioMMIORegister.queueDescLow, UInt32(truncatingIfNeeded: descriptorTable))
        write(VirtioMMIORegister.queueDescHigh, UInt32(truncatingIfNeeded: descriptorTable >> 32))
        write(VirtioMMIORegister.queueDriverLow, UInt32(TestLayout.availableRing(queue: queue)))
        write(VirtioMMIORegister.queueDriverHigh, 0)
        write(VirtioMMIORegister.queueDeviceLow, UInt32(TestLayout.usedRing(queue: queue)))
        write(VirtioMMIORegister.queueDeviceHigh, 0)
        write(VirtioMMIORegister.queueReady, 1)
    }

    func driverOK() {
        write(VirtioMMIORegister.status, read(VirtioMMIORegister.status) | VirtioStatus.driverOK)
    }

    /// The whole bring-up with the features the tests use by default, every queue of the model.
    func bringUp(extraFeatures: UInt64 = 0) throws {
        let features = VirtioFeature.version1 | VirtioFeature.indirectDescriptors | extraFeatures
        guard negotiate(features) else { throw TestFailure("the device refused \(features)") }
        for queue in 0..<device.model.queueCount { setUpQueue(queue: queue) }
        driverOK()
        guard device.isLive else { throw TestFailure("device not live: \(device.brokenReason ?? "?")") }
    }

    // MARK: Rings

    func setDescriptor(_ index: UInt16, address: UInt64, length: UInt32, flags: UInt16 = 0, next: UInt16 = 0,
                       table: UInt64 = TestLayout.descriptorTable, queue: Int = 0) throws {
        let table = queue == 0 ? table : TestLayout.descriptorTable(queue: queue)
        let entry = GuestPhysicalAddress(table + 16 * UInt64(index))
        try memory.store(address, at: entry)
        try memory.store(length, at: GuestPhysicalAddress(entry.rawValue + 8))
        try memory.store(flags, at: GuestPhysicalAddress(entry.rawValue + 12))
        try memory.store(next, at: GuestPhysicalAddress(entry.rawValue + 14))
    }

    /// Puts `head` on the available ring and publishes the new index.
    func makeAvailable(_ head: UInt16, queue: Int = 0) throws {
        let ring = TestLayout.availableRing(queue: queue)
        let slot = UInt64(availableIndices[queue] % queueSize)
        try memory.store(head, at: GuestPhysicalAddress(ring + 4 + 2 * slot))
        availableIndices[queue] &+= 1
        try memory.store(availableIndices[queue], at: GuestPhysicalAddress(ring + 2))
    }

    /// Writes the available index directly (for a driver that lies about it).
    func setAvailableIndex(_ value: UInt16) throws {
        try memory.store(value, at: GuestPhysicalAddress(TestLayout.availableRing + 2))
    }

    func setUsedEvent(_ value: UInt16) throws {
        try memory.store(value, at: GuestPhysicalAddress(TestLayout.availableRing + 4 + 2 * UInt64(queueSize)))
    }

    func setAvailableFlags(_ value: UInt16) throws {
        try memory.store(value, at: GuestPhysicalAddress(TestLayout.availableRing))
    }

    var usedIndex: UInt16 { usedIndex(queue: 0) }

    func usedIndex(queue: Int) -> UInt16 {
        (try? memory.load(UInt16.self, at: GuestPhysicalAddress(TestLayout.usedRing(queue: queue) + 2))) ?? 0xdead
    }

    var availableEvent: UInt16 {
        (try? memory.load(UInt16.self, at: GuestPhysicalAddress(TestLayout.usedRing + 4 + 8 * UInt64(queueSize)))) ?? 0xdead
    }

    /// The used-ring entry `n` (id, len).
    func usedEntry(_ n: UInt16, queue: Int = 0) throws -> (id: UInt32, length: UInt32) {
        let slot = TestLayout.usedRing(queue: queue) + 4 + 8 * UInt64(n % queueSize)
        return (try memory.load(UInt32.self, at: GuestPhysicalAddress(slot)),
                try memory.load(UInt32.self, at: GuestPhysicalAddress(slot + 4)))
    }

    /// Notifies queue `queue` (0 unless said) and lets the device serve it on this thread.
    func kick(queue: Int = 0) {
        write(VirtioMMIORegister.queueNotify, UInt32(queue))
        device.serveSynchronously(queue: queue)
    }

    /// Guest RAM for a buffer of `length` bytes, 16-byte aligned.
    func allocate(_ length: UInt64) -> UInt64 {
        let address = nextBuffer
        nextBuffer += (length + 15) & ~15
        return address
    }

    // MARK: Block requests

    struct BlockResult { var status: UInt8; var data: [UInt8]; var usedLength: UInt32 }

    /// Builds a block request as Linux does (header, data, status in descriptors 0, 1, 2 — or
    /// 0 and 1 without data), submits it, kicks, and returns what the device answered.
    func blockRequest(type: UInt32, sector: UInt64, writeData: [UInt8]? = nil, readLength: UInt32 = 0) throws -> BlockResult {
        let header = allocate(16)
        try memory.store(type, at: GuestPhysicalAddress(header))
        try memory.store(UInt32(0), at: GuestPhysicalAddress(header + 4))
        try memory.store(sector, at: GuestPhysicalAddress(header + 8))
        let status = allocate(1)
        try memory.store(UInt8(0xff), at: GuestPhysicalAddress(status))
        var data: UInt64 = 0
        if let writeData {
            data = allocate(UInt64(writeData.count))
            try memory.write(writeData, at: GuestPhysicalAddress(data))
            try setDescriptor(0, address: header, length: 16, flags: SplitVirtqueue.descriptorNext, next: 1)
            try setDescriptor(1, address: data, length: UInt32(writeData.count), flags: SplitVirtqueue.descriptorNext, next: 2)
            try setDescriptor(2, address: status, length: 1, flags: SplitVirtqueue.descriptorWrite)
        } else if readLength > 0 {
            data = allocate(UInt64(readLength))
            try setDescriptor(0, address: header, length: 16, flags: SplitVirtqueue.descriptorNext, next: 1)
            try setDescriptor(1, address: data, length: readLength,
                              flags: SplitVirtqueue.descriptorNext | SplitVirtqueue.descriptorWrite, next: 2)
            try setDescriptor(2, address: status, length: 1, flags: SplitVirtqueue.descriptorWrite)
        } else {
            try setDescriptor(0, address: header, length: 16, flags: SplitVirtqueue.descriptorNext, next: 1)
            try setDescriptor(1, address: status, length: 1, flags: SplitVirtqueue.descriptorWrite)
        }
        let before = usedIndex
        try makeAvailable(0)
        kick()
        guard usedIndex == before &+ 1 else {
            throw TestFailure("request not completed: used index \(usedIndex), broken: \(device.brokenReason ?? "no")")
        }
        let entry = try usedEntry(before)
        return BlockResult(status: try memory.load(UInt8.self, at: GuestPhysicalAddress(status)),
                           data: readLength > 0 ? try memory.read(at: GuestPhysicalAddress(data), count: Int(readLength)) : [],
                           usedLength: entry.length)
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A temporary raw image file, removed when the value goes away.
final class TemporaryImage {
    let path: String
    init(bytes: [UInt8]) throws {
        var template = Array("/tmp/visor-virtio-test-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { buffer in buffer.baseAddress.map { mkstemp($0) } ?? -1 }
        guard fd >= 0 else { throw TestFailure("mkstemp failed") }
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        guard written == bytes.count else { throw TestFailure("could not write \(path)") }
    }
    deinit { unlink(path) }

    /// The file's bytes, read through a descriptor of their own.
    func contents() throws -> [UInt8] {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw TestFailure("cannot open \(path)") }
        defer { close(fd) }
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { break }
            result += chunk[0..<n]
        }
        return result
    }
}

/// Bytes 0, 1, 2, ... (mod 251), so a misplaced sector shows.
func pattern(_ count: Int, seed: Int = 0) -> [UInt8] {
    (0..<count).map { UInt8(($0 + seed) % 251) }
}
