// Fuzz target `virtio`: a virtio-mmio block device (`VirtioMMIODevice` + `VirtioBlock`) driven by
// a hostile driver (`VirtioFuzzDriver`, FuzzSupport: register accesses of every size, random
// rings in random guest memory, the device serving its queue).
//
// Input: a header byte (bits 0-1: RAM 16, 32, 64 or 128 KiB; bit 2: a read-only disk; bits
// 3-5: disk size 0-7 × 4 KiB), then the driver's operations (VirtioFuzzDriver.swift; one queue,
// so no queue bytes). Beyond the driver's invariants: the storage is never asked for bytes past
// its end, nor a read-only one for a write.

import FuzzSupport
import VisorCore
import VisorVirtio

/// A disk in memory that checks every access against its size.
final class FuzzStorage: BlockStorage, @unchecked Sendable {
    var bytes: [UInt8]
    let isReadOnly: Bool
    var byteCount: UInt64 { UInt64(bytes.count) }
    init(size: Int, readOnly: Bool) {
        bytes = [UInt8](repeating: 0xa5, count: size)
        isReadOnly = readOnly
    }
    func check(_ offset: UInt64, _ count: UInt64) {
        require(offset <= byteCount && count <= byteCount - offset,
                "storage access of \(count) bytes at \(offset) past the end (\(byteCount))")
    }
    func read(at offset: UInt64, count: Int) throws(DiskImageError) -> [UInt8] {
        check(offset, UInt64(count))
        return Array(bytes[Int(offset)..<Int(offset) + count])
    }
    func write(_ data: [UInt8], at offset: UInt64) throws(DiskImageError) {
        require(!isReadOnly, "a write reached a read-only disk")
        check(offset, UInt64(data.count))
        bytes.replaceSubrange(Int(offset)..<Int(offset) + data.count, with: data)
    }
    func flush() throws(DiskImageError) {}
    func discard(at offset: UInt64, count: UInt64) throws(DiskImageError) {
        require(!isReadOnly, "a discard reached a read-only disk")
        check(offset, count)
        for index in Int(offset)..<Int(offset + count) { bytes[index] = 0 }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzVirtio(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    var input = FuzzInput(data, count)
    let header = input.byte()
    let ramSize = UInt64(16 << 10) << UInt64(header & 3)
    guard let memory = try? GuestMemory(size: ramSize) else { return 0 }
    let storage = FuzzStorage(size: Int((header >> 3) & 7) * 4096, readOnly: header & 4 != 0)
    VirtioFuzzDriver.run(model: VirtioBlock(storage: storage, serial: "fuzz", queueSize: 16), memory: memory, input: &input)
    return 0
}
