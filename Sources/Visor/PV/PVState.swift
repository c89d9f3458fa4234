// One domain's paravirtualization state: the hypercall page and shared-info page it installed,
// its event channels, each vCPU's PV timers and blocking, the console input queue, the host's
// pending shutdown request, and the statistics. Pure logic: no locks, no threads, no host clock. The runtime calls every method
// with its platform lock held and is told, in return values, which vCPUs to wake or kick.
//
// Event delivery follows Xen's two-level ABI (`evtchn_2l_set_pending`): the port's pending bit
// is set; if it was clear and the port is not masked, the word's bit in the target vCPU's
// pending selector is set; if that was clear, the vCPU's `upcall_pending` is set; if that was
// clear, the vCPU is woken (if blocked) or kicked so the runtime injects the upcall vector.
// Spec: docs/pv-abi.md.

import VisorABI
import VisorCore

/// One event channel's binding.
enum EventChannel: Equatable, Sendable {
    case closed
    /// Allocated with `alloc_unbound` (loopback within the domain). `vcpu` is the vCPU it
    /// notifies: the allocator at first, then whichever vCPU last sent on it.
    case unbound(vcpu: Int)
    case virq(UInt32, vcpu: Int)
    case ipi(vcpu: Int)

    /// `EVTCHNSTAT_*`.
    var status: UInt32 {
        switch self {
        case .closed: return EventChannelStatus.closed
        case .unbound: return EventChannelStatus.unbound
        case .virq: return EventChannelStatus.virq
        case .ipi: return EventChannelStatus.ipi
        }
    }

    /// The vCPU an event on this channel is delivered to.
    var vcpu: Int? {
        switch self {
        case .closed: return nil
        case .unbound(let v), .virq(_, let v), .ipi(let v): return v
        }
    }
}

/// A vCPU's PV state.
struct PVVCPUState: Equatable, Sendable {
    /// Running (not taken down with `vcpu_op down`, and started).
    var online = false
    /// Has run at some point, so `up` after `down` resumes it where it stopped.
    var hasRun = false
    /// The start state from `vcpu_op initialise` not yet used by `up`.
    var initialContext: X86State?
    /// `set_timer_op` / `set_singleshot_timer`: fire VIRQ_TIMER at this system time.
    var singleShotDeadline: UInt64?
    /// `set_periodic_timer`: the period, and when it next fires.
    var periodicPeriod: UInt64?
    var periodicNext: UInt64 = 0
    /// In `sched_op block`: until an upcall is pending for it.
    var blockedForEvent = false
    /// In `sched_op poll`: the ports it waits for, and the absolute timeout (nil: none).
    var pollPorts: [UInt32]?
    var pollTimeout: UInt64?
    /// Its pvclock record needs rewriting (new shared-info page).
    var timeStale = true
    /// When its pvclock record was last written (system time).
    var lastTimeUpdate: UInt64 = 0
}

/// What the runtime should do after a guest write to one of the PV MSRs.
enum PVMSRWriteResult: Equatable, Sendable {
    /// The MSR is not one of Visor's PV MSRs.
    case notPV
    /// Done (the page installed or events turned off).
    case accepted
    /// The value is invalid (page not RAM, misaligned, reserved bits, vector below 32). The
    /// runtime should raise #GP(0) where its engine can, else ignore the write; nothing changed.
    case refused
}

/// One domain's PV state. Guarded by the caller's lock (the platform lock): `@unchecked
/// Sendable` under that discipline.
final class PVState: @unchecked Sendable {
    let memory: GuestMemory
    let vcpuCount: Int
    /// The domain's own ID, accepted beside DOMID_SELF in `alloc_unbound`.
    let domainID: UInt16
    /// The pvclock scale for the guest TSC's rate.
    let clockScale: PVClockScale
    /// Whether the guest TSC is synchronised across vCPUs (`PVClock.tscStableFlag`).
    let tscStable: Bool

    /// Where the hypercall page was installed, if it was.
    private(set) var hypercallPageAddress: UInt64?
    /// The shared-info page, once installed.
    private(set) var sharedInfo: SharedInfoPage?
    /// The upcall vector given with the shared-info page.
    private(set) var upcallVectorNumber: UInt8 = 0

    /// Event channels by port; port 0 is never valid.
    private(set) var channels: [EventChannel]
    /// Port of each vCPU's VIRQ_TIMER binding.
    private var timerPorts: [UInt32?]
    /// Port of the (global) VIRQ_CONSOLE binding.
    private var consolePort: UInt32?
    /// Port of the (global) VIRQ_SHUTDOWN_REQUEST binding (Visor's VIRQ 32).
    private var shutdownPort: UInt32?
    /// The host's shutdown request the guest has not taken yet with `sched_op
    /// shutdown_request` (the latest one wins).
    private(set) var pendingShutdownRequest: PVShutdownReason?
    private(set) var vcpus: [PVVCPUState]

    /// Console input not yet read with `console_io read`.
    private var consoleInput: [UInt8] = []
    private var consoleHead = 0
    /// The guest takes its console input through PV: it bound VIRQ_CONSOLE or read with
    /// `console_io`. From then on the runtime queues input here instead of in COM1's FIFO.
    private(set) var consoleInputClaimed = false
    /// The most console input Visor holds for the guest.
    static let consoleInputCapacity = 4096

    var statistics = PVStatistics()

    /// How often a vCPU's pvclock record is rewritten even when nothing changed (ns), so the
    /// guest's extrapolation from an estimated TSC rate never drifts far from the domain clock.
    static let timeRefreshInterval: UInt64 = 1_000_000_000

    /// - Parameters:
    ///   - tscFrequency: the guest TSC's rate in Hz (`Engine.timeStampCounterFrequency()`).
    ///   - tscStable: the TSC is the same on every vCPU (true for `interp`; for `kvm`, the host's).
    init(memory: GuestMemory, vcpuCount: Int, tscFrequency: UInt64, tscStable: Bool = true, domainID: UInt16 = 0) {
        self.memory = memory
        self.vcpuCount = max(vcpuCount, 1)
        self.domainID = domainID
        self.clockScale = PVClockScale(frequency: tscFrequency)
        self.tscStable = tscStable
        channels = Array(repeating: .closed, count: Int(SharedInfo.maximumPorts))
        timerPorts = Array(repeating: nil, count: self.vcpuCount)
        vcpus = Array(repeating: PVVCPUState(), count: self.vcpuCount)
        vcpus[0].online = true
        vcpus[0].hasRun = true
    }

    // MARK: MSRs

    /// The MSRs the runtime must hand to `writeMSR` / `readMSR` (engines forward them).
    static let msrs: [UInt32] = [PVDiscovery.hypercallPageMSR, PVDiscovery.sharedInfoMSR]

    /// A guest WRMSR. Installing the hypercall page writes its stubs; installing the shared-info
    /// page zeroes it and marks every vCPU's pvclock record for `updateTime`.
    func writeMSR(_ msr: UInt32, value: UInt64) -> PVMSRWriteResult {
        switch msr {
        case PVDiscovery.hypercallPageMSR:
            guard value % GuestMemory.pageSize == 0,
                  memory.contains(GuestPhysicalAddress(value), length: GuestMemory.pageSize),
                  (try? memory.write(HypercallPage.bytes, at: GuestPhysicalAddress(value))) != nil
            else { return .refused }
            hypercallPageAddress = value
            return .accepted
        case PVDiscovery.sharedInfoMSR:
            if value == 0 {
                sharedInfo = nil
                upcallVectorNumber = 0
                return .accepted
            }
            let vector = value & PVDiscovery.sharedInfoVectorMask
            let address = value & ~(GuestMemory.pageSize - 1)
            guard value & 0xf00 == 0, vector >= PVDiscovery.minimumUpcallVector,
                  let page = SharedInfoPage(memory: memory, address: address),
                  (try? memory.fill(0, at: GuestPhysicalAddress(address), count: GuestMemory.pageSize)) != nil
            else { return .refused }
            sharedInfo = page
            upcallVectorNumber = UInt8(truncatingIfNeeded: vector)
            for v in vcpus.indices { vcpus[v].timeStale = true }
            return .accepted
        default:
            return .notPV
        }
    }

    /// A guest RDMSR of a PV MSR: what was installed (0 if nothing); nil if not a PV MSR.
    func readMSR(_ msr: UInt32) -> UInt64? {
        switch msr {
        case PVDiscovery.hypercallPageMSR: return hypercallPageAddress ?? 0
        case PVDiscovery.sharedInfoMSR: return sharedInfo.map { $0.address | UInt64(upcallVectorNumber) } ?? 0
        default: return nil
        }
    }

    // MARK: Upcalls and blocking (for the runtime)

    /// The vector to inject into `vcpu` now: set while its `upcall_pending` is set and its
    /// `upcall_mask` clear (read from guest memory). Level-triggered: the guest's handler clears
    /// `upcall_pending`; no EOI is involved. The runtime injects it when the window is open.
    func upcallVector(for vcpu: Int) -> UInt8? {
        guard let page = sharedInfo, vcpus.indices.contains(vcpu),
              page.upcallPending(vcpu: vcpu), !page.upcallMasked(vcpu: vcpu) else { return nil }
        return upcallVectorNumber
    }

    /// The runtime injected the upcall vector into `vcpu` (for the statistics).
    func noteUpcallInjected(vcpu: Int) {
        statistics.upcallsInjected &+= 1
    }

    /// True while `vcpu` is blocked in `sched_op block` or `poll`: the runtime must not enter
    /// it until this turns false (an event, a timer through `fireTimers`, or its poll timeout).
    func isBlocked(vcpu: Int) -> Bool {
        guard vcpus.indices.contains(vcpu) else { return false }
        return vcpus[vcpu].blockedForEvent || vcpus[vcpu].pollPorts != nil
    }

    /// Whether `vcpu` is online as far as PV knows (`vcpu_op is_up`).
    func isOnline(vcpu: Int) -> Bool {
        vcpus.indices.contains(vcpu) && vcpus[vcpu].online
    }

    /// Tells PV that `vcpu` started or stopped by other means (a start-up IPI, INIT).
    func setOnline(vcpu: Int, _ online: Bool) {
        guard vcpus.indices.contains(vcpu) else { return }
        vcpus[vcpu].online = online
        if online { vcpus[vcpu].hasRun = true }
    }

    // MARK: Timers (for the runtime)

    /// When `vcpu` next needs `fireTimers`: its single-shot and periodic timers and its poll
    /// timeout, on the domain clock (ns). nil: nothing armed.
    func nextTimerDeadline(vcpu: Int) -> UInt64? {
        guard vcpus.indices.contains(vcpu) else { return nil }
        let state = vcpus[vcpu]
        var next = state.singleShotDeadline
        if state.periodicPeriod != nil { next = min(next ?? state.periodicNext, state.periodicNext) }
        if state.pollPorts != nil, let timeout = state.pollTimeout { next = min(next ?? timeout, timeout) }
        return next
    }

    /// Fires `vcpu`'s timers that are due at `now` (VIRQ_TIMER pending on it) and ends its
    /// poll if its timeout passed. Returns the vCPUs to wake or kick (blocked ones woken, or an
    /// upcall newly pending).
    func fireTimers(vcpu: Int, now: UInt64) -> [Int] {
        guard vcpus.indices.contains(vcpu) else { return [] }
        var due = false
        if let deadline = vcpus[vcpu].singleShotDeadline, deadline <= now {
            vcpus[vcpu].singleShotDeadline = nil
            due = true
        }
        if let period = vcpus[vcpu].periodicPeriod, vcpus[vcpu].periodicNext <= now {
            vcpus[vcpu].periodicNext = PVState.saturatingSum(now, period)
            due = true
        }
        var woken: [Int] = []
        if due { woken = raiseTimer(vcpu: vcpu) }
        if vcpus[vcpu].pollPorts != nil, let timeout = vcpus[vcpu].pollTimeout, timeout <= now {
            endPoll(vcpu)
            if !woken.contains(vcpu) { woken.append(vcpu) }
        }
        return woken
    }

    /// Marks `vcpu`'s VIRQ_TIMER pending (if bound).
    func raiseTimer(vcpu: Int) -> [Int] {
        statistics.timerEvents &+= 1
        guard timerPorts.indices.contains(vcpu), let port = timerPorts[vcpu] else { return [] }
        return setPending(port: port, vcpu: vcpu)
    }

    // MARK: Time

    /// Whether `vcpu`'s pvclock record should be rewritten (with `updateTime`) before it runs:
    /// the shared-info page is new, or the last update is `timeRefreshInterval` old.
    func timeUpdateNeeded(vcpu: Int, now: UInt64) -> Bool {
        guard sharedInfo != nil, vcpu >= 0, vcpu < min(vcpus.count, SharedInfo.maximumVCPUs) else { return false }
        return vcpus[vcpu].timeStale || now &- vcpus[vcpu].lastTimeUpdate >= Self.timeRefreshInterval
    }

    /// Reads the guest TSC and the system time as one pair for `updateTime`: the TSC between two
    /// clock reads, the time the second one, so the guest's clock runs at most the window ahead
    /// of the domain clock and never behind it (a guest timer never looks early to the guest).
    /// A thread the host preempts between two plain reads would stamp the record with a pair
    /// milliseconds apart; the guest's clock would be off by that much until the next update,
    /// which could then move it backwards (and a guest trusts the clock of a stable TSC to be
    /// monotonic). Of up to `attempts` tries, the one with the shortest window wins; a window
    /// under `goodEnough` ns ends the search.
    static func sampleTime(clock: () -> UInt64, tsc: () throws -> UInt64, attempts: Int = 4,
                           goodEnough: UInt64 = 20_000) rethrows -> (tsc: UInt64, now: UInt64) {
        func sample() throws -> (tsc: UInt64, now: UInt64, window: UInt64) {
            let before = clock()
            let counter = try tsc()
            let after = clock()
            return (counter, after, after &- before)
        }
        var best = try sample()
        var tries = 1
        while best.window >= goodEnough && tries < attempts {
            let next = try sample()
            if next.window < best.window { best = next }
            tries += 1
        }
        return (best.tsc, best.now)
    }

    /// Writes `vcpu`'s pvclock record: at guest TSC `tsc` the system time was `now` (ns).
    /// Version odd during the update, even after.
    func updateTime(vcpu: Int, tsc: UInt64, now: UInt64) {
        guard let page = sharedInfo, vcpus.indices.contains(vcpu) else { return }
        page.writeTime(vcpu: vcpu, tscTimestamp: tsc, systemTime: now, scale: clockScale,
                       flags: tscStable ? PVClock.tscStableFlag : 0)
        vcpus[vcpu].timeStale = false
        vcpus[vcpu].lastTimeUpdate = now
    }

    // MARK: Console input

    /// Queues console input for `console_io read` and fires VIRQ_CONSOLE (if bound). Returns
    /// how many bytes fit and the vCPUs to wake or kick.
    func receiveConsoleInput(_ bytes: some Collection<UInt8>) -> (accepted: Int, wake: [Int]) {
        if consoleHead > 0 && consoleHead * 2 >= consoleInput.count {
            consoleInput.removeFirst(consoleHead)
            consoleHead = 0
        }
        let room = Self.consoleInputCapacity - (consoleInput.count - consoleHead)
        let accepted = min(room, bytes.count)
        guard accepted > 0 else { return (0, []) }
        consoleInput.append(contentsOf: bytes.prefix(accepted))
        statistics.consoleBytesIn &+= UInt64(accepted)
        guard let port = consolePort, let target = channels[Int(port)].vcpu else { return (accepted, []) }
        return (accepted, setPending(port: port, vcpu: target))
    }

    /// Bytes of console input waiting.
    var consoleInputCount: Int { consoleInput.count - consoleHead }

    /// Takes up to `count` bytes of console input (`console_io read`), which claims the input
    /// for PV.
    func takeConsoleInput(_ count: Int) -> [UInt8] {
        consoleInputClaimed = true
        let n = min(max(count, 0), consoleInputCount)
        let bytes = Array(consoleInput[consoleHead..<consoleHead + n])
        consoleHead += n
        if consoleHead == consoleInput.count {
            consoleInput.removeAll(keepingCapacity: true)
            consoleHead = 0
        }
        return bytes
    }

    // MARK: Shutdown requests

    /// Whether a shutdown request can reach the guest through PV: it bound
    /// VIRQ_SHUTDOWN_REQUEST and has a shared-info page to record the event in.
    var listensForShutdownRequests: Bool { shutdownPort != nil && sharedInfo != nil }

    /// The host asks the guest to shut down for `reason` (poweroff or reboot): the request is
    /// kept for `sched_op shutdown_request` (replacing one not yet taken) and
    /// VIRQ_SHUTDOWN_REQUEST raised. Returns the vCPUs to wake or kick, or nil, changing nothing,
    /// when the guest does not listen (`listensForShutdownRequests`).
    func requestShutdown(_ reason: PVShutdownReason) -> [Int]? {
        guard listensForShutdownRequests, let port = shutdownPort, let target = channels[Int(port)].vcpu else { return nil }
        pendingShutdownRequest = reason
        return setPending(port: port, vcpu: target)
    }

    /// Takes the pending shutdown request (`sched_op shutdown_request`), if any.
    func takeShutdownRequest() -> PVShutdownReason? {
        defer { pendingShutdownRequest = nil }
        return pendingShutdownRequest
    }

    // MARK: Events

    /// Whether `port` is a port number Visor gives out.
    static func isValidPort(_ port: UInt32) -> Bool { port >= 1 && port < SharedInfo.maximumPorts }

    /// Marks `port` pending for `vcpu` (Xen's `evtchn_2l_set_pending`) and wakes vCPUs polling
    /// it. Returns the vCPUs to wake or kick. Without a shared-info page the event is dropped.
    func setPending(port: UInt32, vcpu: Int) -> [Int] {
        guard let page = sharedInfo, Self.isValidPort(port) else {
            statistics.eventsDropped &+= 1
            return []
        }
        if page.testAndSetPending(port) { return [] }
        statistics.eventsDelivered &+= 1
        var woken: [Int] = []
        if vcpus.indices.contains(vcpu), !page.isMasked(port),
           !page.testAndSetSelector(vcpu: vcpu, word: port / 64),
           !page.testAndSetUpcallPending(vcpu: vcpu) {
            vcpus[vcpu].blockedForEvent = false
            woken.append(vcpu)
        }
        for v in vcpus.indices where vcpus[v].pollPorts?.contains(port) == true {
            endPoll(v)
            if !woken.contains(v) { woken.append(v) }
        }
        return woken
    }

    /// Marks `vcpu`'s upcall pending if `port` is pending on it (Xen's `evtchn_2l_unmask`
    /// after the mask bit was cleared).
    func reraise(port: UInt32, vcpu: Int) -> [Int] {
        guard let page = sharedInfo, vcpus.indices.contains(vcpu), page.isPending(port),
              !page.testAndSetSelector(vcpu: vcpu, word: port / 64),
              !page.testAndSetUpcallPending(vcpu: vcpu) else { return [] }
        vcpus[vcpu].blockedForEvent = false
        return [vcpu]
    }

    func endPoll(_ vcpu: Int) {
        vcpus[vcpu].pollPorts = nil
        vcpus[vcpu].pollTimeout = nil
    }

    /// The lowest closed port, if any.
    func freePort() -> UInt32? {
        for port in 1..<channels.count where channels[port] == .closed { return UInt32(port) }
        return nil
    }

    /// Binds `port`.
    func bind(_ port: UInt32, _ channel: EventChannel) {
        channels[Int(port)] = channel
        switch channel {
        case .virq(VIRQ.timer, let v): timerPorts[v] = port
        case .virq(VIRQ.console, _):
            consolePort = port
            consoleInputClaimed = true
        case .virq(VIRQ.shutdownRequest, _): shutdownPort = port
        default: break
        }
    }

    /// Closes `port`: its VIRQ binding released, its pending bit cleared.
    func close(_ port: UInt32) {
        guard Self.isValidPort(port) else { return }
        if case .virq(let virq, let v) = channels[Int(port)] {
            if virq == VIRQ.timer, timerPorts.indices.contains(v) { timerPorts[v] = nil }
            if virq == VIRQ.console { consolePort = nil }
            if virq == VIRQ.shutdownRequest { shutdownPort = nil }
        }
        channels[Int(port)] = .closed
        sharedInfo?.clearPending(port)
    }

    /// The port `virq` is bound to for `vcpu` (the global VIRQ_CONSOLE and
    /// VIRQ_SHUTDOWN_REQUEST: for the domain), if any.
    func virqPort(_ virq: UInt32, vcpu: Int) -> UInt32? {
        switch virq {
        case VIRQ.timer: return timerPorts.indices.contains(vcpu) ? timerPorts[vcpu] : nil
        case VIRQ.console: return consolePort
        case VIRQ.shutdownRequest: return shutdownPort
        default: return nil
        }
    }

    /// Sets the notify vCPU of an unbound (loopback) port.
    func renotify(_ port: UInt32, vcpu: Int) {
        guard Self.isValidPort(port), case .unbound = channels[Int(port)] else { return }
        channels[Int(port)] = .unbound(vcpu: vcpu)
    }

    // MARK: vCPU state (for the dispatcher)

    func update(_ vcpu: Int, _ body: (inout PVVCPUState) -> Void) {
        guard vcpus.indices.contains(vcpu) else { return }
        body(&vcpus[vcpu])
    }
}

extension PVState {
    /// `a + b`, or `UInt64.max` when that overflows.
    static func saturatingSum(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? .max : sum
    }
}
