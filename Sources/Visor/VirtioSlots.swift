// The domain's virtio-mmio devices in the running platform: where each sits in the guest's
// physical map, which interrupt line it drives, and the worker thread that serves its queues.
//
//   vCPU thread, MMIO exit (platform lock) ── register access ──▶ VirtioMMIODevice
//                                              QueueNotify ──▶ wakes the worker (nothing else)
//   worker thread ── beginService (lock) ─▶ walk rings, do the I/O (no lock) ─▶ finishService
//                    (lock): used ring, InterruptStatus ─▶ ISA IRQ line ─▶ PIC / I/O APIC
//                    ─▶ poll the available ring, notifications suppressed (no lock), a while
//
// The slow part of a request (pread, pwrite, fsync) runs without the platform lock, so vCPUs
// keep running while the disk works. After a pass over a queue whose model asks for it
// (`pollsAvailableRing`: a disk's requests, a network's transmit queue), the worker polls the
// available ring for the queue's `PollWindow` (at most `pollNanoseconds`) with the driver asked
// not to notify, as vhost's busy-poll does: a guest doing I/O sends its next request soon, and the worker takes it without the
// notification's exit and without being woken (on this PVM host, waking a thread on another CPU
// costs the waker an IPI, over 10 µs). See ARCHITECTURE.md, "Virtio".

#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import VisorCore
import VisorVirtio

/// Where virtio-mmio devices go and how Linux learns of them.
public enum VirtioPlacement {
    /// The first device's window. In the 32-bit hole between the end of low RAM (at most
    /// 3 GiB, `GuestMemory.lowMemoryLimit`) and the I/O APIC (0xFEC00000), where nothing else
    /// is: the e820 map leaves the hole out, the ACPI tables live below 1 MiB, the HPET
    /// (0xFED00000), local APIC (0xFEE00000) and KVM's TSS (0xFFFBD000) are above it.
    public static let firstBase: UInt64 = 0xd000_0000
    /// Each device's window: the registers and config space use 0x200 of it; a page each keeps
    /// windows apart for engines that map by page.
    public static let stride: UInt64 = VirtioMMIODevice.windowSize
    /// ISA IRQs no device of the platform drives (the PIT, 8042, COM1, RTC and SCI use 0, 1, 4,
    /// 8, 9, 12), one per device: the MADT leaves them ISA-default (edge, active high), which
    /// Linux's cmdline virtio-mmio devices use, and the device's level (InterruptStatus ≠ 0)
    /// rises again for each new batch the driver has not acknowledged.
    public static let irqs = [5, 6, 7, 10, 11]
    public static var maximumDevices: Int { irqs.count }

    public static func base(ofDevice index: Int) -> UInt64 { firstBase + UInt64(index) * stride }

    /// The kernel parameter announcing device `index` to Linux's virtio_mmio driver.
    public static func linuxParameter(device index: Int) -> String {
        "virtio_mmio.device=4K@0x\(String(base(ofDevice: index), radix: 16)):\(irqs[index])"
    }
}

/// One disk as the domain's configuration names it.
public struct DiskConfiguration: Sendable, Equatable {
    public var path: String
    public var readOnly: Bool
    /// xl.cfg's vdev (kept to show the configuration back; Linux names the disks vda, vdb, ...
    /// in order whatever it says). Nil for `--disk`.
    public var vdev: String?
    public init(path: String, readOnly: Bool, vdev: String? = nil) {
        self.path = path; self.readOnly = readOnly; self.vdev = vdev
    }
}

/// A virtio-mmio device placed in the platform, and its worker.
final class VirtioSlot: @unchecked Sendable {
    // Unchecked Sendable: `device`, `pendingQueues`, `stopping` and `reportedBreak` are guarded
    // by the platform lock; the rest are `let`s.
    let device: VirtioMMIODevice
    let base: UInt64
    let irq: Int
    let name: String
    private unowned let platform: DevicePlatform
    private let memory: GuestMemory
    private let notice: @Sendable (String) -> Void
    /// Queues notified and not yet served, one bit each. Platform lock.
    private var pendingQueues: UInt64 = 0
    private var stopping = false
    private var reportedBreak = false
    private let wakeup = HostCondition()
    private var thread: HostThread?
    /// The longest the worker polls a queue's available ring after a pass (0: never polls).
    let pollNanoseconds: UInt64
    /// Each queue's poll length, adapted to when the driver's requests come (`PollWindow`), and
    /// when its last poll ran out without finding any (nil: it found some, or a notification
    /// came since). Platform lock.
    private(set) var pollWindows: [PollWindow]
    private(set) var pollMissedAt: [UInt64?]
    /// Set with `pendingQueues` (or `stopping`), so a polling worker, which holds no lock, stops
    /// polling to look at them.
    private let attention = Atomic<Bool>(false)

    /// The longest poll: longer than a Linux guest on `bt` takes from one 4 KiB request's
    /// completion to its next (about 200 µs, BENCHMARKS.md), so a single-threaded stream of
    /// requests is taken without notifications; and short enough that the worker gives its
    /// host CPU back within half a millisecond.
    static let defaultPollNanoseconds: UInt64 = 400_000
    /// The shortest a window shrinks to: a guest whose requests come further apart than the
    /// longest poll costs this much of the worker's CPU after each pass, and a faster stream is
    /// noticed again (a notification soon after such a poll grows the window).
    static let minimumPollNanoseconds: UInt64 = 20_000

    init(model: any VirtioDeviceModel, name: String, index: Int, platform: DevicePlatform, memory: GuestMemory,
         pollNanoseconds: UInt64 = VirtioSlot.defaultPollNanoseconds, notice: @escaping @Sendable (String) -> Void) {
        self.pollNanoseconds = pollNanoseconds
        pollWindows = Array(repeating: PollWindow(minimum: min(Self.minimumPollNanoseconds, pollNanoseconds), maximum: pollNanoseconds),
                            count: model.queueCount)
        pollMissedAt = Array(repeating: nil, count: model.queueCount)
        pollDeadlines = Array(repeating: nil, count: model.queueCount)
        device = VirtioMMIODevice(model: model, memory: memory)
        base = VirtioPlacement.base(ofDevice: index)
        irq = VirtioPlacement.irqs[index]
        self.name = name
        self.platform = platform
        self.memory = memory
        self.notice = notice
        let irq = irq
        device.onInterruptLevel = { [unowned platform] high in platform.setISAIRQ(irq, level: high) }
        device.onQueueNotify = { [unowned self] queue in
            if pollMissedAt.indices.contains(queue), let missed = pollMissedAt[queue] {
                pollWindows[queue].missed(by: MonotonicClock.hostNanoseconds() &- missed)
                pollMissedAt[queue] = nil
            }
            pendingQueues |= 1 << UInt64(queue & 63)
            attention.store(true, ordering: .releasing)
            wakeup.signal()
        }
    }

    /// The offset into this device's window, if `address` falls in it.
    func offset(of address: GuestPhysicalAddress) -> UInt64? {
        let a = address.rawValue
        guard a >= base, a - base < VirtioMMIODevice.windowSize else { return nil }
        return a - base
    }

    /// Starts the worker thread, and the model's host side, whose data wakes the worker.
    func start() {
        thread = HostThread { [self] in serveLoop() }
        device.model.start(wake: { [unowned self] queue in
            platform.lock.withLock {
                pendingQueues |= 1 << UInt64(queue & 63)
                attention.store(true, ordering: .releasing)
                wakeup.signal()
            }
        })
    }

    /// Stops the worker and waits for it (a request in progress completes first).
    func stop() {
        device.model.stop()  // first: its threads may be waiting to wake this worker
        platform.lock.withLock {
            stopping = true
            attention.store(true, ordering: .releasing)
            wakeup.signal()
        }
        thread?.join()
        thread = nil
        // A network device's TAP goes back now, not when the domain object goes away: a domain
        // restarted by the toolstack opens the same TAP at once (a second open is EBUSY).
        if let network = device.model as? VirtioNet { network.backend.close() }
    }

    private func serveLoop() {
        platform.lock.lock()
        defer {
            for queue in pollDeadlines.indices where pollDeadlines[queue] != nil { _ = device.endPolling(queue: queue, found: false) }
            platform.lock.unlock()
        }
        while true {
            while pendingQueues == 0 && !stopping {
                if pollDeadlines.contains(where: { $0 != nil }) {
                    pollQueues()
                } else {
                    wakeup.wait(platform.lock, untilHostNanoseconds: nil)
                }
            }
            if stopping { return }
            attention.store(false, ordering: .relaxed)  // what it flagged is in pendingQueues
            let queue = pendingQueues.trailingZeroBitCount
            pendingQueues &= ~(1 << UInt64(queue))
            guard var service = device.beginService(queue: queue) else { continue }
            platform.lock.unlock()
            service.run(model: device.model, memory: memory)
            platform.lock.lock()
            platform.actingVCPU = nil  // from outside the vCPUs: an interrupt kicks its vCPU
            if device.finishService(service) {
                pendingQueues |= 1 << UInt64(queue)
            } else {
                beginPolling(queue)
            }
            if let reason = device.brokenReason {
                if !reportedBreak { notice("\(name): the guest's driver broke the device: \(reason)") }
                reportedBreak = true
            } else {
                reportedBreak = false
            }
        }
    }

    /// When each queue's poll ends (host nanoseconds), for the queues being polled, their driver
    /// asked not to notify. A poll outlives passes over the device's other queues: a network's
    /// transmit queue keeps being polled across the passes that take the receive side's frames
    /// (the acknowledgments of what it sends), which would otherwise end each poll early and
    /// leave the next frame to a notification. Platform lock.
    private var pollDeadlines: [UInt64?]

    /// After a pass left queue `queue` empty: starts a poll of its available ring for the
    /// queue's window, if its model asks for one.
    private func beginPolling(_ queue: Int) {
        guard pollNanoseconds > 0, pollWindows.indices.contains(queue), device.model.pollsAvailableRing(queue: queue),
              device.pollTarget(queue: queue) != nil, device.beginPolling(queue: queue) else { return }
        pollDeadlines[queue] = MonotonicClock.hostNanoseconds() &+ pollWindows[queue].current
        pollMissedAt[queue] = nil
    }

    /// Polls the available rings of the queues being polled until one has buffers (marked
    /// pending), a poll's window passes (notifications back on), or something else wants the
    /// worker (`attention`). Platform lock held on entry and return, released while polling.
    private func pollQueues() {
        var polled: [(queue: Int, deadline: UInt64, target: SplitVirtqueue)] = []
        for queue in pollDeadlines.indices {
            guard let deadline = pollDeadlines[queue] else { continue }
            if let target = device.pollTarget(queue: queue) {
                polled.append((queue, deadline, target))
            } else {
                pollDeadlines[queue] = nil  // reset meanwhile: nothing to look at
            }
        }
        guard !polled.isEmpty else { return }
        // Set under this lock only with work pending or the worker stopping; neither holds here.
        attention.store(false, ordering: .relaxed)
        platform.lock.unlock()
        var found: Int?, ranOut: Int?
        scan: while !attention.load(ordering: .acquiring) {
            let now = MonotonicClock.hostNanoseconds()
            for (queue, deadline, target) in polled {
                // Reads the driver's available index only; a broken ring reads as nothing new,
                // and the pass after the poll reports it.
                if (try? target.hasAvailable(memory)) == true { found = queue; break scan }
                if now >= deadline { ranOut = queue; break scan }
            }
            sched_yield()  // a loaded host's other threads get this CPU if they want it
        }
        platform.lock.lock()
        if let queue = found {
            pollDeadlines[queue] = nil
            if device.endPolling(queue: queue, found: true) { pendingQueues |= 1 << UInt64(queue) }
        } else if let queue = ranOut {
            pollDeadlines[queue] = nil
            if device.endPolling(queue: queue, found: false) {
                pendingQueues |= 1 << UInt64(queue)
            } else {
                // Ran out with nothing: the next notification tells how much longer it should
                // have been.
                pollMissedAt[queue] = MonotonicClock.hostNanoseconds()
            }
        }
    }
}
