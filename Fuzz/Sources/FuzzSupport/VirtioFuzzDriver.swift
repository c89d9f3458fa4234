// A hostile virtio driver for the virtio fuzz targets (`virtio`, `virtio-net`, `virtio-console`):
// register accesses of every size, random rings in random guest memory, the device serving its
// queues on this thread, and, for devices with a host side, host data arriving in between.
//
// Operations, each an opcode byte (modulo 8, or 9 when the device has a host side) and its
// operands, until the input ends. Q is a queue byte, present only for devices with more than
// one queue (the queue is Q modulo their count; one-queue devices always use queue 0):
//   0 register write: offset (a register, or any offset when the byte is ≥ 0xf0), size, u64 value
//   1 register read: offset as above, size
//   2 guest RAM write: u32 address (wrapped into RAM), length byte, the bytes
//   3 a descriptor: table base (u32, wrapped into RAM), index byte, u64 address, u32 length,
//     flags byte, u16 next
//   4 bring-up: [Q: bit 7 set keeps the negotiated state and only adds the queue] driver features
//     u64, queue size u16, three u32 area addresses; then (unless kept) reset, ACKNOWLEDGE,
//     DRIVER, FEATURES_OK, and the queue's registers, QueueReady, DRIVER_OK
//   5 make available: [Q] head u16 into the entry before the new available index u16 (as given)
//   6 the device serves the queue [Q] (as its worker would)
//   7 InterruptACK of what InterruptStatus says
//   8 host data: the target's `hostInput` reads what it needs and gives it to the model
// Invariants checked after every operation: the interrupt line is high exactly while
// InterruptStatus is non-zero; DEVICE_NEEDS_RESET is set exactly when a reason is recorded; a
// broken device offers no service; one serve uses at most a queue's worth of chains.
// AddressSanitizer sees any host access outside guest RAM.

import VisorCore
import VisorVirtio

public enum VirtioFuzzDriver {
    static let registers: [UInt64] = [
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

    /// Drives `model` behind a virtio-mmio register file over `memory` with the rest of `input`.
    public static func run(model: any VirtioDeviceModel, memory: GuestMemory, input: inout FuzzInput,
                           hostInput: ((inout FuzzInput) -> Void)? = nil, check: () -> Void = {}) {
        let device = VirtioMMIODevice(model: model, memory: memory)
        let line = FuzzLine()
        device.onInterruptLevel = { line.setLevel($0) }
        let ramSize = memory.size
        let sizes = [1, 2, 4, 8]
        let queueCount = model.queueCount

        func offset(_ input: inout FuzzInput) -> UInt64 {
            let pick = input.byte()
            return pick >= 0xf0 ? UInt64(input.u16() % 0x1000) : registers[Int(pick) % registers.count]
        }
        func inRAM(_ value: UInt32) -> UInt64 { UInt64(value) % ramSize }
        func write32(_ register: UInt64, _ value: UInt64) { device.write(offset: register, size: 4, value: value) }
        func queueByte(_ input: inout FuzzInput) -> UInt8 { queueCount > 1 ? input.byte() : 0 }

        while !input.isAtEnd {
            switch Int(input.byte()) % (hostInput == nil ? 8 : 9) {
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
                let choice = queueByte(&input)
                let queue = Int(choice) % queueCount
                let features = input.u64()
                let size = input.u16()
                let areas = (inRAM(input.u32()), inRAM(input.u32()), inRAM(input.u32()))
                if choice & 0x80 == 0 {
                    write32(VirtioMMIORegister.status, 0)
                    write32(VirtioMMIORegister.status, UInt64(VirtioStatus.acknowledge | VirtioStatus.driver))
                    write32(VirtioMMIORegister.driverFeaturesSel, 0)
                    write32(VirtioMMIORegister.driverFeatures, features & 0xffff_ffff)
                    write32(VirtioMMIORegister.driverFeaturesSel, 1)
                    write32(VirtioMMIORegister.driverFeatures, features >> 32)
                    write32(VirtioMMIORegister.status, UInt64(VirtioStatus.acknowledge | VirtioStatus.driver | VirtioStatus.featuresOK))
                }
                write32(VirtioMMIORegister.queueSel, UInt64(queue))
                write32(VirtioMMIORegister.queueNum, UInt64(size))
                write32(VirtioMMIORegister.queueDescLow, areas.0)
                write32(VirtioMMIORegister.queueDriverLow, areas.1)
                write32(VirtioMMIORegister.queueDeviceLow, areas.2)
                write32(VirtioMMIORegister.queueReady, 1)
                write32(VirtioMMIORegister.status, device.read(offset: VirtioMMIORegister.status, size: 4) | UInt64(VirtioStatus.driverOK))
            case 5:
                let queue = Int(queueByte(&input)) % queueCount
                let head = input.u16()
                let index = input.u16()
                if let service = device.beginService(queue: queue) {
                    let layout = service.queue.layout
                    // Entry index - 1 is the one the new index publishes.
                    let slot = GuestPhysicalAddress(layout.availableRing + 4 + 2 * UInt64((index &- 1) % max(layout.size, 1)))
                    _ = try? memory.store(head, at: slot)
                    _ = try? memory.store(index, at: GuestPhysicalAddress(layout.availableRing + 2))
                }
            case 6:
                let queue = Int(queueByte(&input)) % queueCount
                let before = device.beginService(queue: queue)?.queue
                device.serveSynchronously(queue: queue)
                // The driver cannot make more than a queue's worth available at once (the device
                // refuses an available index further ahead), so one serve uses at most that many.
                if let before, let after = device.beginService(queue: queue)?.queue {
                    let served = after.nextUsed &- before.nextUsed
                    require(served <= before.layout.size, "served \(served) chains from a queue of \(before.layout.size)")
                }
            case 7:
                let status = device.read(offset: VirtioMMIORegister.interruptStatus, size: 4)
                write32(VirtioMMIORegister.interruptACK, status)
            default:
                hostInput?(&input)
            }
            require(line.isHigh == (device.interruptStatus != 0),
                    "line \(line.isHigh) with InterruptStatus \(device.interruptStatus)")
            require((device.status & VirtioStatus.deviceNeedsReset != 0) == (device.brokenReason != nil),
                    "DEVICE_NEEDS_RESET \(device.status & VirtioStatus.deviceNeedsReset != 0), reason \(device.brokenReason ?? "none")")
            if device.brokenReason != nil {
                for queue in 0..<queueCount { require(device.beginService(queue: queue) == nil, "a broken device offers service") }
            }
            check()
        }
    }
}
