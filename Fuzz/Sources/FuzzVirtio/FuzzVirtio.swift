// Fuzz target `virtio`: a virtio-mmio block device (`VirtioMMIODevice` + `VirtioBlock`) driven by
// a hostile driver: register accesses of every size, random rings in random guest memory, and
// the device serving its queue.
//
// Input: a header byte (bits 0-1: RAM 16, 32, 64 or 128 KiB; bit 2: a read-only disk; bits
// 3-5: disk size 0-7 × 4 KiB), then operations until the input ends, each an opcode byte and
// its operands:
//   0 register write: offset (a register, or any offset when the byte is ≥ 0xf0), size, u64 value
//   1 register read: offset as above, size
//   2 guest RAM write: u32 address (wrapped into RAM), length byte, the bytes
//   3 a descriptor: table base (u32, wrapped into RAM), index byte, u64 address, u32 length,
//     flags byte, u16 next
//   4 bring-up: driver features u64, queue size u16, three u32 area addresses, then
//     ACKNOWLEDGE, DRIVER, FEATURES_OK, the queue registers, QueueReady, DRIVER_OK
//   5 make available: head u16 into the entry before the new available index u16 (as given)
//   6 the device serves queue 0 (as its worker would, all on this thread)
//   7 InterruptACK of what InterruptStatus says
// Invariants, beyond "never traps and never touches memory outside guest RAM" (AddressSanitizer
// would see a host access outside the RAM allocation): the interrupt line is high exactly while
// InterruptStatus is non-zero; DEVICE_NEEDS_RESET is set exactly when a reason is recorded; a
// broken device offers no service; the storage is never asked for bytes past its end, nor a
// read-only one for a write; one serve uses at most a queue's worth of chains.

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

private let registers: [UInt64] = [
    VirtioMMIORegister.magicValue, VirtioMMIORegister.version, VirtioMMIORegister.deviceID,
    VirtioMMIORegister.vendorID, VirtioMMIORegister.deviceFeatures, VirtioMMIORegister.deviceFeaturesSel,
    VirtioMMIORegister.driverFeatures, VirtioMMIORegister.driverFeaturesSel, VirtioMMIORegister.queueSel,
    VirtioMMIORegister.queueNumMax, VirtioMMIORegister.queueNum, VirtioMMIORegister.queueReady,
    VirtioMMIORegister.queueNotify, VirtioMMIORegister.interruptStatus, VirtioMMIORegister.interruptACK,
    VirtioMMIORegister.status, VirtioMMIORegister.queueDescLow, VirtioMMIORegister.queueDescHigh,
    VirtioMMIORegister.queueDriverLow, VirtioMMIORegister.queueDriverHigh, VirtioMMIORegister.queueDeviceLow,
    VirtioMMIORegister.queueDeviceHigh, VirtioMMIORegister.configGeneration, VirtioMMIORegister.config,
    VirtioMMIORegister.config + 8, VirtioMMIORegister.config + 40,
]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzVirtio(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    var input = FuzzInput(data, count)
    let header = input.byte()
    let ramSize = UInt64(16 << 10) << UInt64(header & 3)
    guard let memory = try? GuestMemory(size: ramSize) else { return 0 }
    let storage = FuzzStorage(size: Int((header >> 3) & 7) * 4096, readOnly: header & 4 != 0)
    let device = VirtioMMIODevice(model: VirtioBlock(storage: storage, serial: "fuzz", queueSize: 16), memory: memory)
    let line = FuzzLine()
    device.onInterruptLevel = { line.setLevel($0) }
    let sizes = [1, 2, 4, 8]

    func offset(_ input: inout FuzzInput) -> UInt64 {
        let pick = input.byte()
        return pick >= 0xf0 ? UInt64(input.u16() % 0x1000) : registers[Int(pick) % registers.count]
    }
    func inRAM(_ value: UInt32) -> UInt64 { UInt64(value) % ramSize }
    func write32(_ register: UInt64, _ value: UInt64) { device.write(offset: register, size: 4, value: value) }

    while !input.isAtEnd {
        switch input.byte() % 8 {
        case 0: device.write(offset: offset(&input), size: sizes[input.below(4)], value: input.u64())
        case 1: _ = device.read(offset: offset(&input), size: sizes[input.below(4)])
        case 2:
            let address = inRAM(input.u32())
            let bytes = input.take(Int(input.byte()))
            _ = try? memory.write(bytes, at: GuestPhysicalAddress(address))
        case 3:
            let table = inRAM(input.u32())
            let entry = GuestPhysicalAddress(table + 16 * UInt64(input.byte()))
            let (address, length, flags, next) = (input.u64(), input.u32(), UInt16(input.byte() & 7), input.u16())
            _ = try? memory.store(address, at: entry)
            if let at = entry.advanced(by: 8) { _ = try? memory.store(length, at: at) }
            if let at = entry.advanced(by: 12) { _ = try? memory.store(flags, at: at) }
            if let at = entry.advanced(by: 14) { _ = try? memory.store(next, at: at) }
        case 4:
            let features = input.u64()
            let size = input.u16()
            let areas = (inRAM(input.u32()), inRAM(input.u32()), inRAM(input.u32()))
            write32(VirtioMMIORegister.status, 0)
            write32(VirtioMMIORegister.status, UInt64(VirtioStatus.acknowledge | VirtioStatus.driver))
            write32(VirtioMMIORegister.driverFeaturesSel, 0)
            write32(VirtioMMIORegister.driverFeatures, features & 0xffff_ffff)
            write32(VirtioMMIORegister.driverFeaturesSel, 1)
            write32(VirtioMMIORegister.driverFeatures, features >> 32)
            write32(VirtioMMIORegister.status, UInt64(VirtioStatus.acknowledge | VirtioStatus.driver | VirtioStatus.featuresOK))
            write32(VirtioMMIORegister.queueSel, 0)
            write32(VirtioMMIORegister.queueNum, UInt64(size))
            write32(VirtioMMIORegister.queueDescLow, areas.0)
            write32(VirtioMMIORegister.queueDriverLow, areas.1)
            write32(VirtioMMIORegister.queueDeviceLow, areas.2)
            write32(VirtioMMIORegister.queueReady, 1)
            write32(VirtioMMIORegister.status, device.read(offset: VirtioMMIORegister.status, size: 4) | UInt64(VirtioStatus.driverOK))
        case 5:
            let head = input.u16()
            let index = input.u16()
            if let service = device.beginService(queue: 0) {
                let layout = service.queue.layout
                // Entry index - 1 is the one the new index publishes.
                let slot = GuestPhysicalAddress(layout.availableRing + 4 + 2 * UInt64((index &- 1) % max(layout.size, 1)))
                _ = try? memory.store(head, at: slot)
                _ = try? memory.store(index, at: GuestPhysicalAddress(layout.availableRing + 2))
            }
        case 6:
            let before = device.beginService(queue: 0)?.queue
            device.serveSynchronously(queue: 0)
            // The driver cannot make more than a queue's worth available at once (the device
            // refuses an available index further ahead), so one serve uses at most that many.
            if let before, let after = device.beginService(queue: 0)?.queue {
                let served = after.nextUsed &- before.nextUsed
                require(served <= before.layout.size, "served \(served) chains from a queue of \(before.layout.size)")
            }
        default:
            let status = device.read(offset: VirtioMMIORegister.interruptStatus, size: 4)
            write32(VirtioMMIORegister.interruptACK, status)
        }
        require(line.isHigh == (device.interruptStatus != 0),
                "line \(line.isHigh) with InterruptStatus \(device.interruptStatus)")
        require((device.status & VirtioStatus.deviceNeedsReset != 0) == (device.brokenReason != nil),
                "DEVICE_NEEDS_RESET \(device.status & VirtioStatus.deviceNeedsReset != 0), reason \(device.brokenReason ?? "none")")
        if device.brokenReason != nil { require(device.beginService(queue: 0) == nil, "a broken device offers service") }
    }
    return 0
}
