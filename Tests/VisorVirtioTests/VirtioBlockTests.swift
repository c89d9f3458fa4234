#if canImport(Glibc)
import Glibc
#endif
import Testing
import VisorCore
@testable import VisorVirtio

/// virtio-blk requests through a real split ring in guest RAM, served from a raw image file.
@Suite struct VirtioBlockTests {
    let image: TemporaryImage
    let driver: FakeDriver

    init() throws {
        image = try TemporaryImage(bytes: pattern(64 * 512))
        let block = VirtioBlock(storage: try RawDiskImage(path: image.path, readOnly: false), serial: "visor-disk-0")
        driver = try FakeDriver(model: block)
        try driver.bringUp(extraFeatures: VirtioBlock.Feature.flush | VirtioBlock.Feature.discard)
    }

    @Test func readsSectors() throws {
        let result = try driver.blockRequest(type: VirtioBlock.RequestType.read, sector: 3, readLength: 1024)
        #expect(result.status == VirtioBlock.Status.ok)
        #expect(result.data == Array(pattern(64 * 512)[1536..<2560]))
        #expect(result.usedLength == 1025)  // the data and the status byte
        #expect(driver.read(VirtioMMIORegister.interruptStatus) == VirtioInterrupt.usedBuffer)
    }

    @Test func writesSectors() throws {
        let data = pattern(512, seed: 77)
        let result = try driver.blockRequest(type: VirtioBlock.RequestType.write, sector: 5, writeData: data)
        #expect(result.status == VirtioBlock.Status.ok)
        #expect(result.usedLength == 1)
        #expect(Array(try image.contents()[2560..<3072]) == data)
        let back = try driver.blockRequest(type: VirtioBlock.RequestType.read, sector: 5, readLength: 512)
        #expect(back.data == data)
    }

    /// The durability contract: a write the device acknowledged, followed by an acknowledged
    /// FLUSH, is in the file as another reader of it sees it.
    @Test func flushedWriteIsInTheFile() throws {
        let data = pattern(4096, seed: 9)
        #expect(try driver.blockRequest(type: VirtioBlock.RequestType.write, sector: 16, writeData: data).status == 0)
        #expect(try driver.blockRequest(type: VirtioBlock.RequestType.flush, sector: 0).status == VirtioBlock.Status.ok)
        #expect(Array(try image.contents()[8192..<12288]) == data)
    }

    /// FLUSH answers from fsync's result: a storage whose flush fails gets IOERR, one that
    /// succeeds OK only after its flush ran.
    @Test func flushAnswersFromTheStorage() throws {
        for fails in [false, true] {
            let storage = RecordingStorage(flushFails: fails)
            let driver = try FakeDriver(model: VirtioBlock(storage: storage, serial: "x"))
            try driver.bringUp(extraFeatures: VirtioBlock.Feature.flush)
            let result = try driver.blockRequest(type: VirtioBlock.RequestType.flush, sector: 0)
            #expect(storage.flushes == 1)
            #expect(result.status == (fails ? VirtioBlock.Status.ioError : VirtioBlock.Status.ok))
        }
    }

    /// A request larger than the transfer chunk (here 1000 bytes, not even a sector) moves in
    /// pieces and lands whole, across several descriptors.
    @Test func largeRequestsMoveInChunks() throws {
        let image = try TemporaryImage(bytes: pattern(64 * 512))
        let storage = RecordingStorage(flushFails: false, backing: try RawDiskImage(path: image.path, readOnly: false))
        let driver = try FakeDriver(model: VirtioBlock(storage: storage, serial: "c", transferChunk: 1000))
        try driver.bringUp()
        let data = pattern(8 * 512, seed: 5)
        #expect(try driver.blockRequest(type: VirtioBlock.RequestType.write, sector: 10, writeData: data).status == 0)
        #expect(storage.largestTransfer == 1000)
        let back = try driver.blockRequest(type: VirtioBlock.RequestType.read, sector: 10, readLength: 4096)
        #expect(back.status == 0 && back.data == data && back.usedLength == 4097)
        #expect(Array(try image.contents()[5120..<9216]) == data)
    }

    @Test func getID() throws {
        let result = try driver.blockRequest(type: VirtioBlock.RequestType.getID, sector: 0, readLength: 20)
        #expect(result.status == VirtioBlock.Status.ok)
        #expect(result.data == Array("visor-disk-0".utf8) + [UInt8](repeating: 0, count: 8))
        #expect(result.usedLength == 21)
    }

    @Test func discardZeroesTheRange() throws {
        let segment = driver.allocate(16)
        try driver.memory.store(UInt64(8), at: GuestPhysicalAddress(segment))
        try driver.memory.store(UInt32(8), at: GuestPhysicalAddress(segment + 8))
        try driver.memory.store(UInt32(0), at: GuestPhysicalAddress(segment + 12))
        let bytes = try driver.memory.read(at: GuestPhysicalAddress(segment), count: 16)
        let result = try driver.blockRequest(type: VirtioBlock.RequestType.discard, sector: 0, writeData: bytes)
        #expect(result.status == VirtioBlock.Status.ok)
        let contents = try image.contents()
        #expect(contents.count == 64 * 512)  // the file keeps its size
        #expect(contents[4096..<8192].allSatisfy { $0 == 0 })
        #expect(Array(contents[0..<4096]) == Array(pattern(64 * 512)[0..<4096]))
        #expect(Array(contents[8192..<8704]) == Array(pattern(64 * 512)[8192..<8704]))
    }

    @Test func outOfRangeSectorsAreIOErrors() throws {
        // The last sector reads; one past it, or a range running over the end, does not.
        #expect(try driver.blockRequest(type: VirtioBlock.RequestType.read, sector: 63, readLength: 512).status == 0)
        #expect(try driver.blockRequest(type: VirtioBlock.RequestType.read, sector: 64, readLength: 512).status == 1)
        #expect(try driver.blockRequest(type: VirtioBlock.RequestType.read, sector: 63, readLength: 1024).status == 1)
        #expect(try driver.blockRequest(type: VirtioBlock.RequestType.write, sector: UInt64.max, writeData: pattern(512)).status == 1)
        // Not a whole number of sectors.
        #expect(try driver.blockRequest(type: VirtioBlock.RequestType.read, sector: 0, readLength: 100).status == 1)
        #expect(driver.device.isLive)
        #expect(try image.contents() == pattern(64 * 512))
    }

    @Test func unknownRequestTypeIsUnsupported() throws {
        #expect(try driver.blockRequest(type: 99, sector: 0).status == VirtioBlock.Status.unsupported)
    }

    @Test func readOnlyDiskRefusesWrites() throws {
        let image = try TemporaryImage(bytes: pattern(8 * 512))
        let driver = try FakeDriver(model: VirtioBlock(storage: try RawDiskImage(path: image.path, readOnly: true), serial: "ro"))
        try driver.bringUp(extraFeatures: VirtioBlock.Feature.readOnly)
        #expect(try driver.blockRequest(type: VirtioBlock.RequestType.write, sector: 0, writeData: pattern(512, seed: 3)).status
                == VirtioBlock.Status.ioError)
        #expect(try driver.blockRequest(type: VirtioBlock.RequestType.read, sector: 1, readLength: 512).status == 0)
        #expect(try image.contents() == pattern(8 * 512))
    }

    @Test func openErrorsNameTheProblem() throws {
        #expect(throws: DiskImageError.missing(path: "/nonexistent/disk.img")) {
            try RawDiskImage(path: "/nonexistent/disk.img", readOnly: false)
        }
        #expect(throws: DiskImageError.isDirectory(path: "/tmp")) { try RawDiskImage(path: "/tmp", readOnly: true) }
        #expect(DiskImageError.cannotOpen(path: "d.img", readOnly: true, errno: EACCES).description
                == "cannot open disk image d.img for reading: Permission denied")
    }

    @Test(.enabled(if: geteuid() != 0, "root may open any file")) func unreadableImage() throws {
        let image = try TemporaryImage(bytes: [0])
        chmod(image.path, 0)
        #expect(throws: DiskImageError.cannotOpen(path: image.path, readOnly: true, errno: EACCES)) {
            try RawDiskImage(path: image.path, readOnly: true)
        }
    }
}

/// Storage that records flushes (and can fail them) and the largest transfer, passing reads
/// and writes to `backing` when it has one.
final class RecordingStorage: BlockStorage, @unchecked Sendable {
    let backing: (any BlockStorage)?
    var byteCount: UInt64 { backing?.byteCount ?? 4096 }
    let isReadOnly = false
    let flushFails: Bool
    var flushes = 0
    var largestTransfer = 0
    init(flushFails: Bool, backing: (any BlockStorage)? = nil) { self.flushFails = flushFails; self.backing = backing }
    func read(at offset: UInt64, count: Int) throws(DiskImageError) -> [UInt8] {
        largestTransfer = max(largestTransfer, count)
        return try backing?.read(at: offset, count: count) ?? [UInt8](repeating: 0, count: count)
    }
    func write(_ bytes: [UInt8], at offset: UInt64) throws(DiskImageError) {
        largestTransfer = max(largestTransfer, bytes.count)
        try backing?.write(bytes, at: offset)
    }
    func flush() throws(DiskImageError) {
        flushes += 1
        if flushFails { throw .ioFailed(path: "recording", operation: "fsync", errno: EIO) }
    }
    func discard(at offset: UInt64, count: UInt64) throws(DiskImageError) {}
}
