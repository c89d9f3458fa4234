// virtio-blk (virtio 1.x §5.2): a disk of 512-byte sectors on one request queue.
//
// A request is one descriptor chain: a 16-byte device-readable header { type u32, reserved u32,
// sector u64 }, the data (device-readable for a write, device-writable for a read), and a
// device-writable status byte at the very end. The device answers in the status byte; a chain
// that cannot carry a request at all (no header, no status byte, data in the wrong direction)
// is malformed, and breaks the device.

import VisorCore

public final class VirtioBlock: VirtioDeviceModel, @unchecked Sendable {
    // @unchecked: every stored property is a `let`; the storage is used only by the device's
    // worker (one request at a time).

    public static let sectorSize: UInt64 = 512
    /// VIRTIO_BLK_ID_BYTES: the length of the GET_ID answer.
    public static let idBytes = 20

    public enum Feature {
        public static let segmentMax: UInt64 = 1 << 2   // VIRTIO_BLK_F_SEG_MAX
        public static let readOnly: UInt64 = 1 << 5     // VIRTIO_BLK_F_RO
        public static let blockSize: UInt64 = 1 << 6    // VIRTIO_BLK_F_BLK_SIZE
        public static let flush: UInt64 = 1 << 9        // VIRTIO_BLK_F_FLUSH
        public static let discard: UInt64 = 1 << 13     // VIRTIO_BLK_F_DISCARD
    }

    public enum RequestType {
        public static let read: UInt32 = 0       // VIRTIO_BLK_T_IN
        public static let write: UInt32 = 1      // VIRTIO_BLK_T_OUT
        public static let flush: UInt32 = 4      // VIRTIO_BLK_T_FLUSH
        public static let getID: UInt32 = 8      // VIRTIO_BLK_T_GET_ID
        public static let discard: UInt32 = 11   // VIRTIO_BLK_T_DISCARD
    }

    public enum Status {
        public static let ok: UInt8 = 0          // VIRTIO_BLK_S_OK
        public static let ioError: UInt8 = 1     // VIRTIO_BLK_S_IOERR
        public static let unsupported: UInt8 = 2 // VIRTIO_BLK_S_UNSUPP
    }

    /// Discard ranges one request may carry (config max_discard_seg).
    public static let maxDiscardSegments: UInt32 = 16
    /// Sectors one discard range may cover (config max_discard_sectors): 2 GiB.
    public static let maxDiscardSectors: UInt32 = 1 << 22

    public let storage: any BlockStorage
    /// The serial number GET_ID returns (at most 20 bytes, not NUL-terminated when full).
    public let serial: [UInt8]
    public let capacitySectors: UInt64
    public let queueSizeMax: UInt16
    public let deviceID = VirtioDeviceID.block
    public let queueCount = 1
    public let deviceFeatures: UInt64
    public let configSpace: [UInt8]
    /// The most bytes one request moves through host memory at a time: a guest's request may
    /// name up to a queue's worth of buffers as large as its RAM, so the data is copied in
    /// pieces of at most this, never all at once.
    public let transferChunk: UInt64

    public init(storage: any BlockStorage, serial: String, queueSize: UInt16 = 256, transferChunk: UInt64 = 1 << 20) {
        self.storage = storage
        self.transferChunk = max(transferChunk, 1)
        self.serial = Array(serial.utf8.prefix(Self.idBytes))
        capacitySectors = storage.byteCount / Self.sectorSize
        queueSizeMax = queueSize
        var features = VirtioFeature.version1 | VirtioFeature.eventIndex | VirtioFeature.indirectDescriptors
            | Feature.segmentMax | Feature.blockSize | Feature.flush
        features |= storage.isReadOnly ? Feature.readOnly : Feature.discard
        deviceFeatures = features
        // struct virtio_blk_config, up to the discard fields (§5.2.4).
        var config = [UInt8](repeating: 0, count: 48)
        func put(_ value: UInt64, at offset: Int, bytes: Int) {
            for index in 0..<bytes { config[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(index))) }
        }
        put(capacitySectors, at: 0, bytes: 8)                       // capacity
        put(UInt64(max(Int(queueSize) - 2, 1)), at: 12, bytes: 4)   // seg_max: the header and status take two
        put(Self.sectorSize, at: 20, bytes: 4)                       // blk_size
        put(UInt64(Self.maxDiscardSectors), at: 36, bytes: 4)        // max_discard_sectors
        put(UInt64(Self.maxDiscardSegments), at: 40, bytes: 4)       // max_discard_seg
        put(8, at: 44, bytes: 4)                                     // discard_sector_alignment: 4 KiB
        configSpace = config
    }

    /// Requests: a guest doing I/O sends the next soon after the last completed.
    public func pollsAvailableRing(queue: Int) -> Bool { true }

    public func serve(_ chain: DescriptorChain, queue: Int, memory: GuestMemory, features: UInt64) throws(VirtqueueError) -> UInt32 {
        let headerSize: UInt64 = 16
        guard chain.readableLength >= headerSize else {
            throw .malformedRequest("block request header is \(chain.readableLength) bytes, not 16")
        }
        let writableLength = chain.writableLength
        guard writableLength >= 1 else { throw .malformedRequest("block request has no device-writable status byte") }
        let header = try chain.read(memory, offset: 0, count: Int(headerSize))
        let type = UInt32(littleEndianBytes: header[0..<4])
        let sector = UInt64(littleEndianBytes: header[8..<16])
        let dataIn = writableLength - 1            // bytes the device may write before the status
        let dataOut = chain.readableLength - headerSize  // bytes the driver gave after the header

        let status: UInt8
        var written: UInt64 = 0
        switch type {
        case RequestType.read:
            guard dataOut == 0 else {
                throw .malformedRequest("block read request has a device-readable data buffer; the device must write its data")
            }
            let result = try readSectors(sector, chain: chain, memory: memory, byteCount: dataIn)
            status = result.status
            written = result.written
        case RequestType.write:
            guard dataIn == 0 else {
                throw .malformedRequest("block write request has a device-writable data buffer; the device must read its data")
            }
            status = storage.isReadOnly ? Status.ioError
                : try writeSectors(sector, chain: chain, memory: memory, offset: headerSize, byteCount: dataOut)
        case RequestType.flush:
            // Acknowledged only once fsync returned: every write completed before is durable.
            status = (try? storage.flush()) == nil ? Status.ioError : Status.ok
        case RequestType.getID:
            let count = min(UInt64(Self.idBytes), dataIn)
            var id = serial + [UInt8](repeating: 0, count: Self.idBytes - serial.count)
            id = Array(id.prefix(Int(count)))
            try chain.write(id, memory, offset: 0)
            written = count
            status = Status.ok
        case RequestType.discard where features & Feature.discard != 0:
            status = storage.isReadOnly ? Status.ioError : try discard(chain: chain, memory: memory, offset: headerSize, byteCount: dataOut)
        default:
            status = Status.unsupported
        }
        try chain.write([status], memory, offset: writableLength - 1)
        return UInt32(truncatingIfNeeded: written + 1)
    }

    /// The byte offset of `sectors` sectors from `sector` on, or nil when the range is not
    /// entirely on the disk. Overflow-safe.
    private func byteRange(sector: UInt64, byteCount: UInt64) -> UInt64? {
        guard byteCount % Self.sectorSize == 0, sector <= capacitySectors,
              byteCount / Self.sectorSize <= capacitySectors - sector else { return nil }
        return sector * Self.sectorSize
    }


    /// IN: the sectors into the chain's writable buffers, a chunk at a time. The status and
    /// the bytes written into the chain (all of them, or those before an I/O error).
    private func readSectors(_ sector: UInt64, chain: DescriptorChain, memory: GuestMemory,
                             byteCount: UInt64) throws(VirtqueueError) -> (status: UInt8, written: UInt64) {
        guard let diskOffset = byteRange(sector: sector, byteCount: byteCount) else { return (Status.ioError, 0) }
        var done: UInt64 = 0
        while done < byteCount {
            let piece = min(transferChunk, byteCount - done)
            guard let bytes = try? storage.read(at: diskOffset + done, count: Int(piece)) else { return (Status.ioError, done) }
            try chain.write(bytes, memory, offset: done)
            done += piece
        }
        return (Status.ok, done)
    }

    /// OUT: the chain's readable data after the header onto the sectors, a chunk at a time.
    private func writeSectors(_ sector: UInt64, chain: DescriptorChain, memory: GuestMemory, offset: UInt64,
                              byteCount: UInt64) throws(VirtqueueError) -> UInt8 {
        guard let diskOffset = byteRange(sector: sector, byteCount: byteCount) else { return Status.ioError }
        var done: UInt64 = 0
        while done < byteCount {
            let piece = min(transferChunk, byteCount - done)
            let bytes = try chain.read(memory, offset: offset + done, count: Int(piece))
            guard (try? storage.write(bytes, at: diskOffset + done)) != nil else { return Status.ioError }
            done += piece
        }
        return Status.ok
    }

    /// DISCARD: the data is an array of { sector u64, num_sectors u32, flags u32 }.
    private func discard(chain: DescriptorChain, memory: GuestMemory, offset: UInt64, byteCount: UInt64) throws(VirtqueueError) -> UInt8 {
        let segmentSize: UInt64 = 16
        guard byteCount > 0, byteCount % segmentSize == 0 else {
            throw .malformedRequest("block discard request data is \(byteCount) bytes, not a non-empty multiple of 16")
        }
        guard byteCount / segmentSize <= UInt64(Self.maxDiscardSegments) else { return Status.ioError }
        let data = try chain.read(memory, offset: offset, count: Int(byteCount))
        var ranges: [(UInt64, UInt64)] = []
        for start in stride(from: 0, to: data.count, by: Int(segmentSize)) {
            let sector = UInt64(littleEndianBytes: data[start..<start + 8])
            let sectors = UInt64(UInt32(littleEndianBytes: data[start + 8..<start + 12]))
            let flags = UInt32(littleEndianBytes: data[start + 12..<start + 16])
            // Only the unmap flag is defined, and only for WRITE_ZEROES.
            guard flags == 0, sectors <= UInt64(Self.maxDiscardSectors),
                  let diskOffset = byteRange(sector: sector, byteCount: sectors * Self.sectorSize)
            else { return Status.ioError }
            ranges.append((diskOffset, sectors * Self.sectorSize))
        }
        for (diskOffset, length) in ranges where length > 0 {
            guard (try? storage.discard(at: diskOffset, count: length)) != nil else { return Status.ioError }
        }
        return Status.ok
    }
}

extension FixedWidthInteger {
    /// The integer stored little-endian in `bytes` (as many bytes as the type has).
    init(littleEndianBytes bytes: ArraySlice<UInt8>) {
        var value: Self = 0
        for (index, byte) in bytes.prefix(MemoryLayout<Self>.size).enumerated() {
            value |= Self(truncatingIfNeeded: byte) << (8 * index)
        }
        self = value
    }
}
