// The virtio-mmio transport (virtio 1.x §4.2, the "version 2" register layout): the register file
// a driver programs, as a pure state machine, and the bookkeeping between it and whoever serves
// the queues.
//
// Lifecycle (§3.1): the driver resets the device (Status = 0), sets ACKNOWLEDGE and DRIVER, reads
// DeviceFeatures, writes the subset it accepts to DriverFeatures, sets FEATURES_OK and reads it
// back (the device refuses a subset it did not offer, or one without VIRTIO_F_VERSION_1, by
// leaving the bit clear), configures each queue (QueueSel, QueueNum, the three area addresses,
// QueueReady = 1) and sets DRIVER_OK. Then QueueNotify writes say "buffers are available".
//
// Not thread-safe: the owner serialises every call (Visor holds its platform lock). Serving a
// queue is split so the slow part runs without that lock, on the device's worker thread:
// `beginService` (locked) hands out a copy of the queue, `VirtqueueService.run` (unlocked) walks
// the rings and does the device's work, `finishService` (locked) publishes the used entries and
// raises the interrupt. A reset in between bumps `generation`, and the stale completions are
// dropped: the rings they belong to no longer exist.

import Synchronization
import VisorCore

/// What a virtio device type (block, network, console) provides to the transport.
public protocol VirtioDeviceModel: AnyObject, Sendable {
    /// The device type (`VirtioDeviceID`).
    var deviceID: UInt32 { get }
    /// Every feature bit the device offers, transport bits included.
    var deviceFeatures: UInt64 { get }
    /// How many virtqueues the device has.
    var queueCount: Int { get }
    /// The largest size the driver may give each queue.
    var queueSizeMax: UInt16 { get }
    /// The device-specific configuration space (read at offset 0x100 of the MMIO window).
    var configSpace: [UInt8] { get }
    /// Serves one request on queue `queue`; returns how many bytes it wrote into the chain's
    /// device-writable buffers. Runs off the vCPU thread. Throws for a malformed request, which
    /// breaks the device; a failure of the request itself is an answer in the chain (a status).
    func serve(_ chain: DescriptorChain, queue: Int, memory: GuestMemory, features: UInt64) throws(VirtqueueError) -> UInt32

    /// Whether the device has something to put in queue `queue`'s buffers now. A queue the driver
    /// fills for the device (a disk's requests, a network's transmit queue) always has: its
    /// buffers are the work. A queue the device fills from the host side (a network's receive
    /// queue, a console's input) has work only while that side has data waiting; its buffers
    /// stay available until then, and the model calls `wake` when data arrives. Default: true.
    func hasWork(queue: Int) -> Bool

    /// Starts the model's host side (a TAP reader, console input), which calls `wake(queue)`
    /// from any thread when data for `queue` arrives. `wake` takes the platform lock: call it
    /// holding none of the model's own locks (the worker calls `hasWork` under the platform
    /// lock). Default: nothing to start.
    func start(wake: @escaping @Sendable (Int) -> Void)
    /// Stops the host side started by `start`, and waits for its threads. Default: nothing.
    func stop()

    /// Whether a worker should poll queue `queue`'s available ring for a while after serving it,
    /// with notifications suppressed (`VirtioMMIODevice.beginPolling`): worth it where the
    /// driver's buffers are the work and the next often follows soon (a disk's requests, a
    /// network's transmit queue), not where work comes from the host side (a receive queue) or
    /// rarely (a console's output). Default: false.
    func pollsAvailableRing(queue: Int) -> Bool
}

extension VirtioDeviceModel {
    public func hasWork(queue: Int) -> Bool { true }
    public func start(wake: @escaping @Sendable (Int) -> Void) {}
    public func stop() {}
    public func pollsAvailableRing(queue: Int) -> Bool { false }
}

/// One pass over a queue, from `beginService` to `finishService`.
public struct VirtqueueService: Sendable {
    public let queueIndex: Int
    let generation: UInt64
    let features: UInt64
    /// The queue as the device left it last time; `run` advances it.
    public private(set) var queue: SplitVirtqueue
    /// Finished chains: head and bytes written.
    public private(set) var completions: [(head: UInt16, length: UInt32)] = []
    /// Set when the ring was malformed: the device must be marked broken.
    public private(set) var failure: VirtqueueError?

    init(queueIndex: Int, generation: UInt64, features: UInt64, queue: SplitVirtqueue) {
        self.queueIndex = queueIndex; self.generation = generation; self.features = features; self.queue = queue
    }

    /// Takes available chains (at most one queue's worth, so completions are published and
    /// interrupts raised without waiting for a driver that keeps adding) and serves each.
    /// No lock needed: it touches only guest RAM and the model's own state.
    public mutating func run(model: any VirtioDeviceModel, memory: GuestMemory) {
        do {
            for _ in 0..<Int(queue.layout.size) {
                guard model.hasWork(queue: queueIndex), let chain = try queue.popAvailable(memory) else { return }
                let written = try model.serve(chain, queue: queueIndex, memory: memory, features: features)
                completions.append((chain.head, written))
            }
        } catch {
            failure = error
        }
    }
}

/// Counts of one queue's traffic.
public struct VirtqueueStatistics: Sendable, Equatable {
    /// QueueNotify writes by the driver (each an exit).
    public var notifications: UInt64 = 0
    /// Buffers (descriptor chains) the device used.
    public var buffers: UInt64 = 0
    /// Times the device asked for a used-buffer interrupt after a pass over the queue.
    public var interrupts: UInt64 = 0
    /// Passes over the queue begun because the device, polling the available ring with
    /// notifications suppressed, found buffers there: work taken without a notification.
    public var polledPasses: UInt64 = 0
    public init() {}
}

/// The register file of one virtio-mmio device.
public final class VirtioMMIODevice: @unchecked Sendable {
    /// "virt" in little-endian ASCII.
    public static let magic: UInt32 = 0x7472_6976
    /// The virtio 1.x (non-legacy) register layout.
    public static let version: UInt32 = 2
    /// "VISR": who made the device, for the driver's curiosity only.
    public static let vendor: UInt32 = 0x5253_4956
    /// Bytes of the MMIO window each device occupies (registers and config space).
    public static let windowSize: UInt64 = 0x1000

    public let model: any VirtioDeviceModel
    /// Called with the new level of the interrupt line: high while InterruptStatus is non-zero.
    public var onInterruptLevel: (Bool) -> Void = { _ in }
    /// Called when the driver notifies queue `index` of new buffers (only while the device is live).
    public var onQueueNotify: (Int) -> Void = { _ in }

    public private(set) var status: UInt32 = 0
    public private(set) var interruptStatus: UInt32 = 0
    public private(set) var driverFeatures: UInt64 = 0
    /// Why the device set DEVICE_NEEDS_RESET, until the driver resets it.
    public private(set) var brokenReason: String?
    /// Bumped by every reset, so a service begun before it is dropped.
    public private(set) var generation: UInt64 = 0
    public private(set) var configGeneration: UInt32 = 0
    /// Per queue, what crossed between driver and device (kept across resets), for `--stats`
    /// and benchmarks: buffers per notification and per interrupt show how well they batch.
    public private(set) var queueStatistics: [VirtqueueStatistics]

    private var deviceFeaturesSel: UInt32 = 0
    private var driverFeaturesSel: UInt32 = 0
    private var queueSel: UInt32 = 0
    private var queues: [QueueRegisters]
    private var lineHigh = false
    private let memory: GuestMemory

    /// A queue's registers and, once ready, the device's position in its rings.
    private struct QueueRegisters {
        var size: UInt16 = 0
        var ready = false
        var descriptorTable: UInt64 = 0
        var availableRing: UInt64 = 0
        var usedRing: UInt64 = 0
        var live: SplitVirtqueue?
    }

    public init(model: any VirtioDeviceModel, memory: GuestMemory) {
        self.model = model
        self.memory = memory
        queues = Array(repeating: QueueRegisters(), count: model.queueCount)
        queueStatistics = Array(repeating: VirtqueueStatistics(), count: model.queueCount)
    }

    /// True when the driver finished initialisation and the device is not broken.
    public var isLive: Bool {
        status & VirtioStatus.driverOK != 0 && status & VirtioStatus.deviceNeedsReset == 0
    }

    // MARK: Register access

    /// A read of `size` bytes at `offset` into the window. Registers are 32-bit: other widths
    /// and unaligned offsets read 0, as do reserved offsets.
    public func read(offset: UInt64, size: Int) -> UInt64 {
        if offset >= VirtioMMIORegister.config { return readConfig(offset - VirtioMMIORegister.config, size: size) }
        guard size == 4, offset % 4 == 0 else { return 0 }
        let queue = selectedQueue
        switch offset {
        case VirtioMMIORegister.magicValue: return UInt64(Self.magic)
        case VirtioMMIORegister.version: return UInt64(Self.version)
        case VirtioMMIORegister.deviceID: return UInt64(model.deviceID)
        case VirtioMMIORegister.vendorID: return UInt64(Self.vendor)
        case VirtioMMIORegister.deviceFeatures:
            switch deviceFeaturesSel {
            case 0: return model.deviceFeatures & 0xffff_ffff
            case 1: return model.deviceFeatures >> 32
            default: return 0
            }
        case VirtioMMIORegister.queueNumMax: return queue == nil ? 0 : UInt64(model.queueSizeMax)
        case VirtioMMIORegister.queueReady: return (queue.map { queues[$0].ready } ?? false) ? 1 : 0
        case VirtioMMIORegister.interruptStatus: return UInt64(interruptStatus)
        case VirtioMMIORegister.status: return UInt64(status)
        case VirtioMMIORegister.configGeneration: return UInt64(configGeneration)
        default: return 0  // write-only and reserved registers
        }
    }

    /// A write of `size` bytes at `offset`. Registers take 32-bit aligned writes only; the
    /// configuration space of the device types Visor has is read-only.
    public func write(offset: UInt64, size: Int, value: UInt64) {
        guard offset < VirtioMMIORegister.config, size == 4, offset % 4 == 0 else { return }
        let value32 = UInt32(truncatingIfNeeded: value)
        switch offset {
        case VirtioMMIORegister.deviceFeaturesSel: deviceFeaturesSel = value32
        case VirtioMMIORegister.driverFeaturesSel: driverFeaturesSel = value32
        case VirtioMMIORegister.driverFeatures:
            // Features are fixed once FEATURES_OK is set (§3.1.1).
            guard status & VirtioStatus.featuresOK == 0 else { return }
            switch driverFeaturesSel {
            case 0: driverFeatures = driverFeatures & ~0xffff_ffff | UInt64(value32)
            case 1: driverFeatures = driverFeatures & 0xffff_ffff | UInt64(value32) << 32
            default: break
            }
        case VirtioMMIORegister.queueSel: queueSel = value32
        case VirtioMMIORegister.queueNum: updateQueue { $0.size = UInt16(truncatingIfNeeded: value32) }
        case VirtioMMIORegister.queueDescLow: updateQueue { $0.descriptorTable.setLow(value32) }
        case VirtioMMIORegister.queueDescHigh: updateQueue { $0.descriptorTable.setHigh(value32) }
        case VirtioMMIORegister.queueDriverLow: updateQueue { $0.availableRing.setLow(value32) }
        case VirtioMMIORegister.queueDriverHigh: updateQueue { $0.availableRing.setHigh(value32) }
        case VirtioMMIORegister.queueDeviceLow: updateQueue { $0.usedRing.setLow(value32) }
        case VirtioMMIORegister.queueDeviceHigh: updateQueue { $0.usedRing.setHigh(value32) }
        case VirtioMMIORegister.queueReady: setQueueReady(value32 & 1 != 0)
        case VirtioMMIORegister.queueNotify:
            let index = Int(value32 & 0xffff)  // the high half is notification data, not negotiated
            if isLive, queues.indices.contains(index), queues[index].ready {
                queueStatistics[index].notifications &+= 1
                onQueueNotify(index)
            }
        case VirtioMMIORegister.interruptACK:
            interruptStatus &= ~value32
            updateLine()
        case VirtioMMIORegister.status: writeStatus(value32)
        default: break  // read-only and reserved registers
        }
    }

    private var selectedQueue: Int? { queues.indices.contains(Int(queueSel)) ? Int(queueSel) : nil }

    /// Changes the selected queue's configuration, which the driver may do only while the queue
    /// is not ready (§4.2.2.2); other writes are ignored.
    private func updateQueue(_ change: (inout QueueRegisters) -> Void) {
        guard let index = selectedQueue, !queues[index].ready else { return }
        change(&queues[index])
    }

    private func setQueueReady(_ ready: Bool) {
        guard let index = selectedQueue else { return }
        guard ready else {
            queues[index].ready = false
            queues[index].live = nil
            return
        }
        guard !queues[index].ready else { return }
        let registers = queues[index]
        let layout = VirtqueueLayout(size: registers.size, descriptorTable: registers.descriptorTable,
                                     availableRing: registers.availableRing, usedRing: registers.usedRing)
        if let problem = layout.problem(maximumSize: model.queueSizeMax, memory: memory) {
            markBroken("queue \(index): \(problem)")
            return
        }
        queues[index].ready = true
        queues[index].live = SplitVirtqueue(
            layout: layout, eventIndex: driverFeatures & VirtioFeature.eventIndex != 0,
            indirectDescriptors: driverFeatures & VirtioFeature.indirectDescriptors != 0)
    }

    /// The status register: 0 resets; otherwise the driver adds bits in the §3.1 order. FEATURES_OK
    /// sticks only for an acceptable feature subset, DRIVER_OK only after FEATURES_OK, and
    /// DEVICE_NEEDS_RESET belongs to the device.
    private func writeStatus(_ value: UInt32) {
        guard value != 0 else { reset(); return }
        var new = value & 0xff & ~VirtioStatus.deviceNeedsReset
        if new & VirtioStatus.featuresOK != 0, status & VirtioStatus.featuresOK == 0, !featuresAcceptable {
            new &= ~VirtioStatus.featuresOK
        }
        if new & VirtioStatus.driverOK != 0, new & VirtioStatus.featuresOK == 0 { new &= ~VirtioStatus.driverOK }
        status = new | status & VirtioStatus.deviceNeedsReset
    }

    /// The driver's subset is one the device offered, and includes VIRTIO_F_VERSION_1 (the
    /// version 2 layout has no legacy mode).
    private var featuresAcceptable: Bool {
        driverFeatures & ~model.deviceFeatures == 0 && driverFeatures & VirtioFeature.version1 != 0
    }

    /// Back to the state after power-on: nothing negotiated, no queues, no interrupt.
    public func reset() {
        status = 0
        driverFeatures = 0
        deviceFeaturesSel = 0
        driverFeaturesSel = 0
        queueSel = 0
        queues = Array(repeating: QueueRegisters(), count: model.queueCount)
        interruptStatus = 0
        brokenReason = nil
        generation &+= 1
        updateLine()
    }

    private func readConfig(_ offset: UInt64, size: Int) -> UInt64 {
        let config = model.configSpace
        guard [1, 2, 4, 8].contains(size), offset < UInt64(config.count), UInt64(size) <= UInt64(config.count) - offset
        else { return 0 }
        var value: UInt64 = 0
        for index in (0..<size).reversed() { value = value << 8 | UInt64(config[Int(offset) + index]) }
        return value
    }

    // MARK: Serving queues

    /// Sets DEVICE_NEEDS_RESET (§2.1.2) with the reason, and tells a live driver through a
    /// configuration-change interrupt. The device serves nothing more until reset.
    public func markBroken(_ reason: String) {
        guard status & VirtioStatus.deviceNeedsReset == 0 else { return }
        brokenReason = reason
        status |= VirtioStatus.deviceNeedsReset
        if status & VirtioStatus.driverOK != 0 {
            interruptStatus |= VirtioInterrupt.configurationChange
            updateLine()
        }
    }

    /// A copy of queue `index` to serve, or nil when the device is not live or the queue not ready.
    public func beginService(queue index: Int) -> VirtqueueService? {
        guard isLive, queues.indices.contains(index), let queue = queues[index].live else { return nil }
        return VirtqueueService(queueIndex: index, generation: generation, features: driverFeatures, queue: queue)
    }

    /// Publishes a service's completions on the used ring and raises the interrupt if the driver
    /// wants one, or marks the device broken if the ring was malformed. Returns true when more
    /// buffers are available (the caller serves again).
    @discardableResult
    public func finishService(_ service: VirtqueueService) -> Bool {
        guard service.generation == generation, isLive, queues.indices.contains(service.queueIndex),
              queues[service.queueIndex].live != nil
        else { return false }  // reset (or stopped) meanwhile: those rings are gone
        let index = service.queueIndex
        var queue = service.queue
        do {
            let oldUsed = queue.nextUsed
            // The used entries go in after their buffers were written, with the index last.
            for completion in service.completions {
                try queue.pushUsed(memory, head: completion.head, writtenLength: completion.length)
            }
            queues[index].live = queue
            queueStatistics[index].buffers &+= UInt64(service.completions.count)
            if let failure = service.failure {
                markBroken("queue \(index): \(failure)")
                return false
            }
            try queue.enableNotifications(memory)
            if try queue.needsInterrupt(memory, since: oldUsed) {
                queueStatistics[index].interrupts &+= 1
                interruptStatus |= VirtioInterrupt.usedBuffer
                updateLine()
            }
            // After avail_event is published, buffers added meanwhile may not be notified. A
            // queue whose device has nothing for it waits for the model's `wake` instead.
            return try availableAfterEnabling(queue) && model.hasWork(queue: index)
        } catch {
            markBroken("queue \(index): \(error)")
            return false
        }
    }

    /// Whether buffers wait in `queue` once notifications are enabled. The driver publishes its
    /// available index and then reads avail_event (or the NO_NOTIFY flag) to decide whether to
    /// notify; the device wrote that and now reads the index: the full fence between keeps each
    /// side's store before its load, so one of them sees the other's (§2.7.10, the driver's
    /// memory barrier is the other half).
    private func availableAfterEnabling(_ queue: SplitVirtqueue) throws(VirtqueueError) -> Bool {
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        return try queue.hasAvailable(memory)
    }

    // MARK: Polling (vhost's busy-poll)

    /// Asks the driver not to notify queue `index` while the caller polls its available ring
    /// (`pollTarget`, then `finishPolling`). False when there is nothing to poll (not live, not
    /// ready, or the ring is unusable, which breaks the device).
    public func beginPolling(queue index: Int) -> Bool {
        guard isLive, queues.indices.contains(index), let queue = queues[index].live else { return false }
        do {
            try queue.suppressNotifications(memory)
            return true
        } catch {
            markBroken("queue \(index): \(error)")
            return false
        }
    }

    /// What a poller looks at without the lock: the queue as the device is now. Its
    /// `hasAvailable` reads only the driver's available index (bounds-checked); a reset
    /// meanwhile makes the answer stale, never unsafe, and `beginService` looks again.
    public func pollTarget(queue index: Int) -> SplitVirtqueue? {
        guard isLive, queues.indices.contains(index) else { return nil }
        return queues[index].live
    }

    /// Ends a poll of queue `index`; returns whether buffers wait (the caller serves them).
    /// `found`: the poll saw buffers, and the pass it leads to is counted as work taken without
    /// a notification; notifications stay suppressed through that pass (the driver may add more
    /// meanwhile), and `finishService` asks for them again. Otherwise the poll timed out:
    /// notifications back on, and one more look, for buffers added just before.
    public func endPolling(queue index: Int, found: Bool) -> Bool {
        guard isLive, queues.indices.contains(index), let queue = queues[index].live else { return false }
        if found {
            queueStatistics[index].polledPasses &+= 1
            return true
        }
        do {
            try queue.enableNotifications(memory)
            return try availableAfterEnabling(queue) && model.hasWork(queue: index)
        } catch {
            markBroken("queue \(index): \(error)")
            return false
        }
    }

    /// Serves queue `index` until it is empty, all on the caller's thread: for tests and for
    /// owners without a worker.
    public func serveSynchronously(queue index: Int) {
        while var service = beginService(queue: index) {
            service.run(model: model, memory: memory)
            guard finishService(service) else { return }
        }
    }

    private func updateLine() {
        let high = interruptStatus != 0
        guard high != lineHigh else { return }
        lineHigh = high
        onInterruptLevel(high)
    }
}

extension UInt64 {
    fileprivate mutating func setLow(_ value: UInt32) { self = self & ~0xffff_ffff | UInt64(value) }
    fileprivate mutating func setHigh(_ value: UInt32) { self = self & 0xffff_ffff | UInt64(value) << 32 }
}
