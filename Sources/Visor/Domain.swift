// A domain and how it runs: one host thread per vCPU running its exit loop, a timer thread that
// kicks running vCPUs at their timer deadlines, and stopping it all from outside.
//
// A vCPU is in one of four activities (`VCPURunner.Activity`). Running: between exits its
// thread advances its timers, injects an interrupt if one is pending and the guest can take
// it (else asks the engine for an interrupt window), publishes its next timer deadline for the
// timer thread, and enters the guest. Halted (HLT with interrupts enabled): the thread sleeps on
// its condition variable until its next timer deadline or a signal, so a halted guest costs no
// host CPU. Halted with interrupts disabled, or waiting for a start-up IPI: it sleeps until
// INIT or SIPI. When every vCPU is in one of the last two, nothing can ever wake the domain and
// its run ends as `halted`.

import Foundation
import Synchronization
import VisorABI
import VisorBoot
import VisorCore
import VisorDevices
import VisorSched
import VisorVirtio

/// A created domain, ready to run once.
public final class Domain: @unchecked Sendable {
    // Unchecked Sendable: the mutable state lives in `platform` and the runners and is guarded
    // by the platform lock; `vcpus` are driven each by its own thread.
    public let configuration: DomainConfiguration
    let machine: any VirtualMachine
    let platform: DevicePlatform
    let clock: DomainClock
    /// The PV ABI's state: hypercall page, shared info, event channels, PV timers. Platform lock.
    let pv: PVState
    /// Its RAM (the engine and the PV state hold it too).
    package let memory: GuestMemory
    private let consoleOutput: @Sendable (UInt8) -> Void
    private let runners: [VCPURunner]
    /// The virtio-mmio devices (disks, then the console), each with its worker thread once started.
    let virtioSlots: [VirtioSlot]
    /// The virtio console (`ConsoleDevice.virtio`): its slot, and the model its input goes to.
    private let virtioConsole: (slot: VirtioSlot, model: VirtioConsole)?
    /// How the run ended; the first outcome wins. Guarded by the platform lock.
    private var outcome: DomainOutcome?
    /// Signalled when a running vCPU publishes a deadline earlier than the timer thread's wait.
    private let timerCondition = HostCondition()
    /// The domain-clock time the timer thread sleeps until (nil: no deadline). Platform lock.
    private var timerWaitTarget: UInt64?
    private let statistics = Mutex(ExitStatistics())
    /// Set with `outcome`, readable without the platform lock (the pool's waits check it).
    private let ended = Atomic<Bool>(false)
    /// A stop request from outside, seen by the vCPU threads before `outcome` is set (see
    /// `requestStop`), and its first reason.
    private let stopRequested = Atomic<Bool>(false)
    private let stopReason = Mutex<String?>(nil)
    /// `pause` asked every vCPU to park until `unpause` (as Xen's domain_pause). Read without
    /// the platform lock by the pool's waits; changed under it.
    private let pauseRequested = Atomic<Bool>(false)
    /// vCPUs parked by a pause: off the pool's runqueues, asleep on their condition. Platform lock.
    private var parkedCount = 0
    /// Broadcast when a vCPU parks or the domain ends (`pause` waits on it). Platform lock.
    private let parkedChanged = HostCondition()
    // Set once by `start`, before any thread of the domain runs; read by those threads.
    private var pool: CPUPool?
    private(set) var domainID: DomainID?
    private var startTime: UInt64 = 0
    private var timerThread: HostThread?
    private var vcpuThreads: [HostThread] = []

    /// Where the domain's notices for the user go (a vCPU found stalled, `Exit.stalled`).
    private let notice: @Sendable (String) -> Void

    /// The most vCPUs a domain may have (APIC IDs are 8 bits; 0xff is the broadcast ID).
    public static let maximumVCPUs = 64

    /// Creates the domain: allocates RAM, loads the kernel and modules, creates the machine and
    /// its vCPUs on the engine, and sets vCPU 0's state for the image's boot protocol (the
    /// others wait for a start-up IPI). `consoleOutput` receives every byte the guest writes to
    /// its serial port (and to its virtio console, from that device's worker thread); `notice`,
    /// what the user should hear of while it runs (a stalled vCPU).
    /// `extraDevices` are attached to the I/O bus beside the standard ones
    /// (benchmarks and tests use this).
    public init(configuration: DomainConfiguration, extraDevices: [ExtraPortDevice] = [],
                consoleOutput: @escaping @Sendable (UInt8) -> Void,
                notice: @escaping @Sendable (String) -> Void = { _ in }) throws {
        self.configuration = configuration
        self.notice = notice
        let vcpuCount = configuration.vcpuCount
        guard (1...Self.maximumVCPUs).contains(vcpuCount) else {
            throw DomainError.invalidVCPUCount(vcpuCount)
        }
        guard configuration.virtioDeviceCount <= VirtioPlacement.maximumDevices else {
            throw DomainError.tooManyVirtioDevices(configuration.virtioDeviceCount)
        }
        let disks: [RawDiskImage]
        do {
            disks = try configuration.disks.map { disk throws(DiskImageError) in try RawDiskImage(path: disk.path, readOnly: disk.readOnly) }
        } catch {
            throw DomainError.disk(error)
        }
        let networks: [(backend: PacketDescriptor, tap: String)]
        do {
            networks = try configuration.networks.enumerated().map { index, network throws(PacketBackendError) in
                try network.openTap(index: index)
            }
        } catch {
            throw DomainError.network(error)
        }
        let memory = try GuestMemory(size: configuration.memoryBytes)
        self.memory = memory
        let image = try BootLoader.load(kernel: configuration.kernel, commandLine: Self.commandLine(for: configuration),
                                        modules: configuration.modules, initrd: configuration.initrd,
                                        firmware: DevicePlatform.firmwareTables(vcpuCount: vcpuCount,
                                                                                         virtioDevices: configuration.virtioDeviceCount),
                                        into: memory)
        let clock = DomainClock()
        self.clock = clock
        let apicTimerFrequency: UInt64 = 1_000_000_000
        machine = try configuration.engine.makeMachine(
            memory: memory,
            options: MachineOptions(vcpuCount: vcpuCount, clock: clock, apicTimerFrequency: apicTimerFrequency))
        var vcpus: [any VirtualCPU] = []
        for index in 0..<vcpuCount { vcpus.append(try machine.makeVCPU(index: index)) }
        try vcpus[0].setState(image.initialState)
        let platform = try DevicePlatform(vcpuCount: vcpuCount, clock: clock,
                                          tscFrequency: UInt64(configuration.engine.timeStampCounterFrequency()),
                                          apicTimerFrequency: apicTimerFrequency, consoleOutput: consoleOutput)
        self.platform = platform
        for extra in extraDevices {
            try platform.bus.attach(extra.device, base: extra.base, count: extra.count)
        }
        pv = PVState(memory: memory, vcpuCount: vcpuCount,
                     tscFrequency: UInt64(configuration.engine.timeStampCounterFrequency()))
        self.consoleOutput = consoleOutput
        runners = vcpus.map { VCPURunner(vcpu: $0) }
        runners[0].activity = .running
        let diskSlots = disks.enumerated().map { index, disk in
            // The serial (GET_ID, /sys/block/vdX/serial) says which file it is.
            let serial = String(disk.path.split(separator: "/").last ?? "disk")
            return VirtioSlot(model: VirtioBlock(storage: disk, serial: serial),
                              name: "virtio-blk \(index) (\(disk.path))", index: index, platform: platform,
                              memory: memory, notice: notice)
        } + networks.enumerated().map { index, network in
            let slot = disks.count + index
            let mac = configuration.networks[index].address(domainName: configuration.name, index: index)
            return VirtioSlot(model: VirtioNet(backend: network.backend, mac: mac),
                              name: "virtio-net \(index) (TAP \(network.tap), \(mac))", index: slot, platform: platform,
                              memory: memory, notice: notice)
        }
        if configuration.console == .virtio {
            let model = VirtioConsole { bytes in for byte in bytes { consoleOutput(byte) } }
            let slot = VirtioSlot(model: model, name: "virtio-console", index: disks.count + networks.count, platform: platform,
                                  memory: memory, notice: notice)
            virtioConsole = (slot, model)
            virtioSlots = diskSlots + [slot]
        } else {
            virtioConsole = nil
            virtioSlots = diskSlots
        }
        platform.setSignalHandler { [unowned self] index, signal in self.deliver(signal, to: index) }
    }

    /// Offers one byte of console input to the guest's console: the virtio console once its
    /// driver is live, else the PV input queue once the guest reads its input through PV
    /// (`PVState.consoleInputClaimed`), else COM1's receive FIFO. False when that console is
    /// full; nothing was queued then, so the caller may offer the byte again. (Offering it to
    /// several consoles would queue it in one while another refused it, and each retry would
    /// queue it again.)
    public func sendConsoleInput(_ byte: UInt8) -> Bool {
        // The model's `receive` wakes its worker, which takes the platform lock: not held here.
        if let virtioConsole, platform.lock.withLock({ virtioConsole.slot.device.isLive }) {
            return virtioConsole.model.receive(CollectionOfOne(byte)) == 1
        }
        return platform.lock.withLock {
            platform.actingVCPU = nil
            guard pv.consoleInputClaimed else { return platform.receive(byte) }
            let (accepted, wake) = pv.receiveConsoleInput(CollectionOfOne(byte))
            for index in wake { deliver(.interrupt, to: index) }
            return accepted == 1
        }
    }

    /// Asks the guest to power off or reboot itself, the way it listens: through PV when it has
    /// bound VIRQ_SHUTDOWN_REQUEST (the event raised, the reason kept for `sched_op
    /// shutdown_request`), else, for `.powerOff`, by pressing the ACPI power button if the guest
    /// enabled it (PWRBTN_EN; the SCI on ISA IRQ 9). ACPI has no reboot button: `.reboot`
    /// without PV is `.none`. `.none` changes nothing, and is also the answer once the domain
    /// has ended. The vCPU the event is for is woken or kicked out of the guest to see it; a
    /// paused domain sees it when unpaused. What the guest then does is up to it: the caller
    /// waits for the outcome (with a time limit, after which `requestStop` is the way). Any thread.
    public func requestShutdown(_ request: ShutdownRequest) -> ShutdownDelivery {
        platform.lock.withLock {
            platform.actingVCPU = nil  // from outside: every signal kicks its vCPU
            guard outcome == nil else { return .none }
            if let woken = pv.requestShutdown(request == .powerOff ? .poweroff : .reboot) {
                for index in woken { deliver(.interrupt, to: index) }
                return .paravirtual
            }
            if request == .powerOff && platform.pressPowerButtonIfEnabled() { return .acpiPowerButton }
            return .none
        }
    }

    /// Asks the running guest to stop soon. Safe from any thread; the first reason is reported.
    public func requestStop(reason: String) {
        // First without the platform lock: a vCPU thread in an exit or hypercall storm takes it
        // thousands of times a second, and the mutex is not fair, so on a busy host a waiter can
        // wait long for it. The flag and the kicks make every vCPU thread come to
        // `prepareEntry`, which ends the run itself; taking the lock below then only confirms.
        let first = stopReason.withLock { pending -> String in
            if pending == nil { pending = reason }
            return pending ?? reason
        }
        stopRequested.store(true, ordering: .releasing)
        for runner in runners { runner.vcpu.requestStop() }
        platform.lock.withLock { end(.stopped(reason: first)) }
    }

    /// Parks every vCPU of the domain, as `xl pause`: each leaves the guest at its next exit (it
    /// is kicked), gives its pCPU back and sleeps until `unpause`; the domain's CPU time stops
    /// growing. Returns once every vCPU has parked or the domain has ended. Any thread.
    public func pause() {
        pauseRequested.store(true, ordering: .releasing)
        platform.lock.withLock {
            for runner in runners {
                runner.wakeup.signal()
                runner.vcpu.requestStop()
                if let scheduled = runner.scheduled { pool?.interruptWait(scheduled) }
            }
            while outcome == nil, pauseRequested.load(ordering: .acquiring), parkedCount < runners.count {
                parkedChanged.wait(platform.lock, untilHostNanoseconds: nil)
            }
        }
    }

    /// Lets the vCPUs of a paused domain run again. Any thread.
    public func unpause() {
        platform.lock.withLock {
            pauseRequested.store(false, ordering: .releasing)
            for runner in runners { runner.wakeup.signal() }
        }
    }

    /// Whether `pause` holds the domain.
    public var isPaused: Bool { pauseRequested.load(ordering: .acquiring) }

    /// Each vCPU's place in the pool now (empty before `start`).
    var vcpuSnapshots: [CPUPool.VCPUSnapshot] {
        guard let pool else { return [] }
        return runners.compactMap { $0.scheduled.map { pool.snapshot($0) } }
    }

    /// `xl vcpu-pin` for vCPU `index`.
    func setAffinity(vcpu index: Int, _ affinity: Affinity) throws(SchedError) {
        guard let pool, runners.indices.contains(index), let scheduled = runners[index].scheduled else {
            throw .unknownVCPU(VCPUID(domain: domainID ?? DomainID(0), index: index))
        }
        try pool.setAffinity(scheduled, affinity)
    }

    /// Whether some vCPU of the domain holds a pCPU now (`xl list`'s `r` state).
    var isRunningOnAPCPU: Bool {
        guard let pool else { return false }
        return runners.contains { $0.scheduled.map { pool.holdsPCPU($0) } ?? false }
    }

    /// The exit statistics so far (complete once `run` has returned).
    public var exitStatistics: ExitStatistics { statistics.withLock { $0 } }

    /// Runs the guest on its own pool of `pcpus` pCPUs (default: the host's CPU count)
    /// scheduled by `scheduler`, until it ends, and says how it ended.
    public func run(pcpus: Int = HostCPU.count, scheduler: SchedulerKind = .credit2) -> DomainOutcome {
        let pool: CPUPool
        do {
            pool = try CPUPool(kind: scheduler, pcpuCount: pcpus)
            try start(in: pool, id: DomainID(1), affinities: [], parameters: DomainSchedParams())
        } catch {
            return .crashed(reason: "could not schedule the domain: \(error)", registers: "")
        }
        pool.start()
        let outcome = wait()
        pool.stop()
        return outcome
    }

    /// Registers the domain's vCPUs with `pool` as domain `id` and starts its threads: one per
    /// vCPU and the timer thread. The pool's pCPUs must be started too (`CPUPool.start`).
    package func start(in pool: CPUPool, id: DomainID, affinities: [Affinity], parameters: DomainSchedParams) throws {
        try pool.add(domain: id, name: configuration.name, vcpus: runners, affinities: affinities,
                     parameters: parameters)
        self.pool = pool
        self.domainID = id
        startTime = monotonicNanoseconds()
        timerThread = HostThread { [self] in timerLoop() }
        for slot in virtioSlots { slot.start() }
        vcpuThreads = runners.indices.map { index in
            HostThread { [self] in
                if let result = vcpuLoop(index) {
                    platform.lock.withLock { end(result) }
                }
                if let scheduled = runners[index].scheduled { pool.retire(scheduled) }
            }
        }
    }

    /// Waits for a started domain to end and says how it ended.
    package func wait() -> DomainOutcome {
        for thread in vcpuThreads { thread.join() }
        platform.lock.withLock { end(.crashed(reason: "every vCPU thread ended without an outcome", registers: "")) }
        timerThread?.join()
        for slot in virtioSlots { slot.stop() }
        if let pool, let domainID { pool.remove(domain: domainID, vcpuCount: runners.count) }
        var total = ExitStatistics()
        for runner in runners { total.merge(runner.statistics) }
        // The vCPU threads have ended (joined above): their engines' counts are final.
        for case let counting as any SensitiveInstructionCounting in runners.map(\.vcpu) {
            total.sensitiveInstructions = (total.sensitiveInstructions ?? SensitiveInstructionCounts())
            total.sensitiveInstructions?.merge(counting.sensitiveInstructionCounts)
        }
        total.wallNanoseconds = monotonicNanoseconds() &- startTime
        total.collectTranslation(from: runners.map(\.vcpu), engine: configuration.engine.name)  // threads joined
        platform.lock.withLock {
            total.paravirtual = pv.statistics
            total.virtioDevices = virtioSlots.map { $0.statistics() }
            total.unbacked = .init(portReads: platform.bus.unbackedReads, portWrites: platform.bus.unbackedWrites,
                                   mmioReads: platform.unbackedMMIOReads, mmioWrites: platform.unbackedMMIOWrites)
        }
        let final = total
        statistics.withLock { $0 = final }
        return platform.lock.withLock { outcome } ?? .crashed(reason: "the domain ended without an outcome", registers: "")
    }

    /// Host nanoseconds the domain's vCPUs have held a pCPU so far.
    package var cpuNanoseconds: UInt64 {
        guard let pool else { return 0 }
        return runners.reduce(0) { total, runner in total &+ (runner.scheduled.map { pool.cpuNanoseconds($0) } ?? 0) }
    }

    /// Whether the domain has an outcome (its threads are finishing or done).
    package var hasEnded: Bool { ended.load(ordering: .acquiring) }

    // MARK: Ending

    /// Records the outcome (the first one wins) and makes every thread of the domain finish:
    /// wherever a vCPU thread is, it sees the outcome within one step. Asleep on its condition
    /// (halted, PV-blocked, waiting for SIPI): signalled. Waiting for a pCPU: its pool wait is
    /// interrupted. In the guest or about to enter it: the engine's stop request, which stays
    /// set until `run` returns `.stopped`. Handling an exit: it holds the platform lock, so this
    /// runs after it, and its next `prepareEntry` sees the outcome. Every later request kicks
    /// them all again, so a stop can never be lost to a wake-up that came too early. Platform
    /// lock held.
    private func end(_ result: DomainOutcome) {
        if outcome == nil {
            outcome = result
            ended.store(true, ordering: .releasing)
        }
        parkedChanged.broadcast()
        for runner in runners {
            runner.wakeup.signal()
            runner.vcpu.requestStop()
            if let scheduled = runner.scheduled { pool?.interruptWait(scheduled) }
        }
        timerCondition.signal()
    }

    /// Ends the run as `halted` when no vCPU can ever be woken. Platform lock held.
    private func endIfNothingCanWake() {
        guard runners.allSatisfy({ $0.activity == .haltedForever || $0.activity == .waitingForStartup }) else { return }
        let parked = runners.firstIndex { !$0.lastRegisters.isEmpty } ?? 0
        end(.halted(registers: runners[parked].lastRegisters))
    }

    /// Puts vCPU thread `runner` to sleep until it is signalled or `deadline` (host ns; nil:
    /// none) passes, unless the domain already has an outcome: `end` may have run on this very
    /// thread (`endIfNothingCanWake`), and its signal came before anyone waited. The caller
    /// loops back to `prepareEntry`, which re-examines everything. Platform lock held.
    private func sleep(_ runner: VCPURunner, untilHostNanoseconds deadline: UInt64?) -> EntryDecision {
        if outcome == nil { runner.wakeup.wait(platform.lock, untilHostNanoseconds: deadline) }
        return .wait
    }

    // MARK: Signals (platform lock held)

    private func deliver(_ signal: VCPUSignal, to index: Int) {
        guard runners.indices.contains(index) else { return }
        let runner = runners[index]
        switch signal {
        case .interrupt: break
        case .initialize:
            runner.pendingInitialization = true
            platform.timerGeneration &+= 1  // the INIT resets its APIC timer
        case .startup(let vector):
            guard runner.activity == .waitingForStartup || runner.pendingInitialization else { return }
            runner.pendingStartup = vector
        }
        runner.wakeup.signal()
        // A vCPU signalling itself (its own ICR write, its own device access) looks at its
        // state before it next enters the guest: no kick needed.
        if runner.inGuest && platform.actingVCPU != index { runner.vcpu.requestStop() }
    }

    // MARK: The timer thread

    /// Kicks running vCPUs out of the guest when their next timer deadline passes, so their
    /// threads advance the timers and inject. Halted vCPUs time their own sleep.
    private func timerLoop() {
        platform.lock.lock()
        defer { platform.lock.unlock() }
        while outcome == nil {
            let now = clock.nanoseconds
            var earliest: UInt64?
            for runner in runners where runner.inGuest {
                guard let deadline = runner.timerDeadline else { continue }
                if deadline <= now {
                    runner.timerDeadline = nil
                    runner.vcpu.requestStop()
                } else {
                    earliest = min(earliest ?? deadline, deadline)
                }
            }
            timerWaitTarget = earliest
            timerCondition.wait(platform.lock, untilHostNanoseconds: earliest.map { clock.hostNanoseconds(at: $0) })
        }
    }

    // MARK: The vCPU threads

    /// vCPU `index`'s exit loop: returns the outcome it ends the domain with, or nil when the
    /// domain ended for another reason.
    private func vcpuLoop(_ index: Int) -> DomainOutcome? {
        let runner = runners[index]
        while true {
            switch prepareEntry(runner, index) {
            case .enter: break
            case .wait: continue
            case .finish: return nil
            case .end(let result): return result
            }
            if let pool, let scheduled = runner.scheduled {
                guard pool.acquire(scheduled, cancelled: {
                    ended.load(ordering: .acquiring) || stopRequested.load(ordering: .acquiring)
                        || pauseRequested.load(ordering: .acquiring)
                }) else { continue }
            }
            let entered = monotonicNanoseconds()
            let exit: Exit
            do {
                exit = try runner.vcpu.run()
            } catch {
                return .crashed(reason: "vCPU \(index): the engine failed: \(error)", registers: runner.registerDump())
            }
            let exited = monotonicNanoseconds()
            runner.statistics.recordRun(nanoseconds: exited &- entered)
            let result = platform.lock.withLock { () -> DomainOutcome? in
                runner.inGuest = false
                runner.timerDeadline = nil
                platform.actingVCPU = index
                defer { platform.actingVCPU = nil }
                return handle(exit, runner, index)
            }
            runner.statistics.record(exit, handlingNanoseconds: monotonicNanoseconds() &- exited)
            if let pool, let scheduled = runner.scheduled { pool.afterExit(scheduled) }
            if let result { return result }
        }
    }

    private enum EntryDecision {
        case enter, wait, finish
        case end(DomainOutcome)
    }

    /// Everything between two guest entries that needs the platform: INIT and SIPI, sleeping
    /// while halted, timers, interrupt injection, and the deadline for the timer thread.
    private func prepareEntry(_ runner: VCPURunner, _ index: Int) -> EntryDecision {
        platform.lock.lock()
        defer { platform.lock.unlock() }
        if outcome == nil, stopRequested.load(ordering: .acquiring), let reason = stopReason.withLock({ $0 }) {
            end(.stopped(reason: reason))
        }
        guard outcome == nil else { return .finish }
        if pauseRequested.load(ordering: .acquiring) {
            // Paused: off the runqueues with the pCPU given back, asleep until `unpause` (or
            // the end) signals. Its activity is kept, so the halted check ignores the pause.
            if !runner.parked {
                runner.parked = true
                parkedCount += 1
                block(runner)
                parkedChanged.broadcast()
            }
            return sleep(runner, untilHostNanoseconds: nil)
        }
        if runner.parked {
            runner.parked = false
            parkedCount -= 1
        }
        platform.actingVCPU = index
        defer { platform.actingVCPU = nil }

        if runner.pendingInitialization {
            runner.pendingInitialization = false
            _ = platform.takeNMI(for: index)  // an NMI latched before the INIT is lost with it
            runner.activity = .waitingForStartup
            runner.lastRegisters = runner.registerDump()  // where INIT stopped it, for `halted`
            platform.apics[index].reset()
        }
        if runner.activity == .waitingForStartup {
            if runner.pendingResume {
                // vcpu_op up after the vCPU took itself down: it continues where it stopped.
                runner.pendingResume = false
                runner.lastRegisters = ""
                runner.activity = .running
            } else {
                let start: X86State
                if let state = runner.pendingStartState {
                    start = state  // vcpu_op initialise + up: straight into 64-bit mode
                } else if let vector = runner.pendingStartup {
                    start = .startup(vector: vector)
                } else {
                    // Waiting for SIPI, a processor does not take NMIs.
                    _ = platform.takeNMI(for: index)
                    block(runner)
                    endIfNothingCanWake()
                    return sleep(runner, untilHostNanoseconds: nil)
                }
                runner.pendingStartup = nil
                runner.pendingStartState = nil
                runner.lastRegisters = ""
                do {
                    try runner.vcpu.setState(start)
                } catch {
                    return .end(.crashed(reason: "vCPU \(index): could not start it: \(error)", registers: ""))
                }
                runner.activity = .running
            }
            pv.setOnline(vcpu: index, true)
        }

        // The timers need work only when one is due or the guest reprogrammed one; most exits
        // (port I/O to other devices) skip the arithmetic.
        if runner.timerGeneration != platform.timerGeneration
            || runner.timerEvent.map({ clock.nanoseconds >= $0 }) ?? false {
            platform.advanceTimers(for: index)
            for other in pv.fireTimers(vcpu: index, now: clock.nanoseconds) where other != index {
                deliver(.interrupt, to: other)
            }
            runner.timerEvent = [platform.nextTimerEvent(for: index), pv.nextTimerDeadline(vcpu: index)]
                .compactMap { $0 }.min()
            runner.timerGeneration = platform.timerGeneration
        }
        if pv.isBlocked(vcpu: index) {
            // sched_op block or poll: asleep until an event, its timer or its poll timeout.
            block(runner)
            return sleep(runner, untilHostNanoseconds: runner.timerEvent.map { clock.hostNanoseconds(at: $0) })
        }
        let pending = platform.hasPendingInterrupt(for: index) || pv.upcallVector(for: index) != nil
        // An NMI wakes a halted vCPU whatever IF says.
        let nmi = platform.hasPendingNMI(for: index)
        switch runner.activity {
        case .halted where !pending && !nmi:
            block(runner)
            return sleep(runner, untilHostNanoseconds: runner.timerEvent.map { clock.hostNanoseconds(at: $0) })
        case .haltedForever where !nmi:
            block(runner)
            endIfNothingCanWake()
            return sleep(runner, untilHostNanoseconds: nil)
        default:
            runner.activity = .running
        }

        if pv.timeUpdateNeeded(vcpu: index, now: clock.nanoseconds),
           let time = try? PVState.sampleTime(clock: { clock.nanoseconds }, tsc: { try runner.vcpu.timeStampCounter() }) {
            pv.updateTime(vcpu: index, tsc: time.tsc, now: time.now)
        }
        if platform.takeNMI(for: index) {
            // The engine delivers it when NMIs are not blocked (until the guest's IRET of the
            // last one) and holds one more meanwhile.
            do {
                try runner.vcpu.injectNMI()
            } catch {
                return .end(.crashed(reason: "vCPU \(index): could not inject an NMI: \(error)",
                                     registers: runner.registerDump()))
            }
            runner.statistics.injectedInterrupts &+= 1
        }
        if pending {
            if runner.vcpu.interruptWindowOpen, let vector = takeInterrupt(for: index) {
                do {
                    try runner.vcpu.injectInterrupt(vector: vector)
                } catch {
                    return .end(.crashed(reason: "vCPU \(index): could not inject vector \(vector): \(error)",
                                         registers: runner.registerDump()))
                }
                runner.statistics.injectedInterrupts &+= 1
            }
            runner.setWindowRequest(platform.hasPendingInterrupt(for: index) || pv.upcallVector(for: index) != nil)
        } else {
            runner.setWindowRequest(false)
        }

        if let pool, let scheduled = runner.scheduled { pool.wake(scheduled) }
        let deadline = runner.timerEvent
        runner.timerDeadline = deadline
        runner.inGuest = true
        if let deadline, timerWaitTarget.map({ deadline < $0 }) ?? true {
            timerWaitTarget = deadline
            timerCondition.signal()
        }
        return .enter
    }

    /// The INTA cycle for vCPU `index`: its APIC's vector first, then the PV upcall (level:
    /// while the guest leaves `upcall_pending` set and unmasked), then the PIC's. Platform lock.
    private func takeInterrupt(for index: Int) -> UInt8? {
        if platform.apics.indices.contains(index), platform.apics[index].pendingVector() != nil {
            return platform.acknowledgeInterrupt(for: index)
        }
        if let vector = pv.upcallVector(for: index) {
            pv.noteUpcallInjected(vcpu: index)
            return vector
        }
        return platform.acknowledgeInterrupt(for: index)
    }

    /// The vCPU cannot run until something wakes it: out of the pool's runqueues, its pCPU back.
    private func block(_ runner: VCPURunner) {
        if let pool, let scheduled = runner.scheduled { pool.block(scheduled) }
    }

    /// Handles one exit of vCPU `index`; returns an outcome when the domain's run is over.
    /// Platform lock held.
    private func handle(_ exit: Exit, _ runner: VCPURunner, _ index: Int) -> DomainOutcome? {
        let vcpu = runner.vcpu
        switch exit {
        case .portRead(PVDiscovery.trapPort, 4):
            return hypercall(runner, index)
        case .portRead(let port, let size):
            platform.noteAccess(port: port)
            vcpu.completeRead(UInt64(platform.bus.read(port: port, size: size)))
            return nil
        case .portWrite(let port, let size, let value):
            platform.noteAccess(port: port)
            platform.bus.write(port: port, size: size, value: value)
            return platform.takeRequestedOutcome()
        case .mmioRead(let address, let size):
            if let offset = localAPICOffset(address), apicAnswers(runner) {
                platform.timerGeneration &+= 1
                vcpu.completeRead(platform.apics[index].read(offset: offset, size: size))
            } else if let offset = platform.ioapicOffset(address) {
                vcpu.completeRead(platform.ioapic.read(offset: offset, size: size))
            } else if let offset = platform.hpetOffset(address) {
                vcpu.completeRead(platform.hpet.read(offset: offset, size: size))
            } else if let (slot, offset) = virtioSlot(at: address) {
                vcpu.completeRead(slot.device.read(offset: offset, size: Int(size)))
            } else {
                // Like an unclaimed bus cycle, reads float high.
                platform.unbackedMMIOReads &+= 1
                vcpu.completeRead(size >= 8 ? UInt64.max : (UInt64(1) << (UInt64(size) * 8)) &- 1)
            }
            return nil
        case .mmioWrite(let address, let size, let value):
            if let offset = localAPICOffset(address), apicAnswers(runner) {
                platform.timerGeneration &+= 1
                platform.apics[index].write(offset: offset, size: size, value: value)
            } else if let offset = platform.ioapicOffset(address) {
                platform.ioapic.write(offset: offset, size: size, value: value)
            } else if let offset = platform.hpetOffset(address) {
                platform.timerGeneration &+= 1
                let due = platform.hpet.nextEventTime(after: clock.nanoseconds)
                platform.hpet.write(offset: offset, size: size, value: value)
                // The HPET is vCPU 0's timer work: when another vCPU moved its next event, vCPU 0
                // must look again (it may be asleep until the old one, or running towards it).
                if index != 0, platform.hpet.nextEventTime(after: clock.nanoseconds) != due {
                    deliver(.interrupt, to: 0)
                }
            } else if let (slot, offset) = virtioSlot(at: address) {
                slot.device.write(offset: offset, size: Int(size), value: value)
            } else {
                platform.unbackedMMIOWrites &+= 1
            }
            return nil
        case .msrRead(let msr):
            vcpu.completeRead(msr == PlatformMSR.tscDeadline ? platform.apics[index].tscDeadline : pv.readMSR(msr) ?? 0)
            return nil
        case .msrWrite(let msr, let value):
            guard msr == PlatformMSR.tscDeadline else {
                // A refused PV install (bad address or vector) leaves the old setting; the
                // guest sees it when it reads the MSR back.
                _ = pv.writeMSR(msr, value: value)
                platform.timerGeneration &+= 1
                return nil
            }
            platform.timerGeneration &+= 1
            do {
                platform.apics[index].writeTSCDeadline(value, timeStampCounter: try vcpu.timeStampCounter())
            } catch {
                return .crashed(reason: "vCPU \(index): could not read the guest TSC: \(error)", registers: "")
            }
            return nil
        case .halt:
            // With IF clear only INIT, SIPI or an NMI can wake the vCPU.
            runner.activity = vcpu.interruptWindowOpen ? .halted : .haltedForever
            if runner.activity == .haltedForever { runner.lastRegisters = runner.registerDump() }
            return nil
        case .interruptWindow:
            return nil  // the next entry injects
        case .instructionEmulated:
            return nil  // done in the engine; the guest runs on
        case .stalled(let report):
            notice(report)  // the guest runs on; the user is told where it is stuck
            return nil
        case .shutdown:
            return .crashed(reason: "vCPU \(index): triple fault (the vCPU shut down)", registers: runner.registerDump())
        case .failedEntry(let reason):
            return .crashed(reason: "vCPU \(index): the engine could not enter the guest (hardware reason 0x\(String(reason, radix: 16)))",
                            registers: runner.registerDump())
        case .internalError(let message):
            return .crashed(reason: "vCPU \(index): \(message)", registers: runner.registerDump())
        case .stopped:
            return nil  // a kick (timer, interrupt, INIT) or the end of the domain: the next entry sees which
        }
    }

    /// A hypercall: the stub's port read. Reads the arguments, dispatches, answers the read with
    /// the result and carries out what the call asks of the runtime. Platform lock held.
    private func hypercall(_ runner: VCPURunner, _ index: Int) -> DomainOutcome? {
        let state: X86State
        do {
            state = try runner.vcpu.state()
        } catch {
            return .crashed(reason: "vCPU \(index): could not read the hypercall's registers: \(error)", registers: "")
        }
        platform.timerGeneration &+= 1  // a hypercall may arm or cancel PV timers
        let outcome = pv.dispatch(vcpu: index, registers: HypercallRegisters(state),
                                  context: RuntimePVContext(now: clock.nanoseconds, output: consoleOutput))
        runner.vcpu.completeRead(outcome.portValue)
        for action in outcome.actions {
            switch action {
            case .yield:
                if let pool, let scheduled = runner.scheduled { pool.yield(scheduled) }
            case .block:
                break  // prepareEntry sees pv.isBlocked and sleeps
            case .shutdown(let reason):
                switch reason {
                case .poweroff: return .poweredOff
                case .crash, .watchdog:
                    return .crashed(reason: "vCPU \(index): the guest reported a \(reason) (sched_op shutdown)",
                                    registers: runner.registerDump())
                case .reboot:
                    return .rebooted(how: "sched_op shutdown")
                case .suspend:
                    return .stopped(reason: "the guest asked to suspend, which Visor does not do")
                }
            case .startVCPU(let target, let start):
                guard runners.indices.contains(target) else { continue }
                runners[target].pendingStartState = start
                deliver(.interrupt, to: target)
            case .resumeVCPU(let target):
                guard runners.indices.contains(target) else { continue }
                runners[target].pendingResume = true
                deliver(.interrupt, to: target)
            case .stopVCPU:
                runner.activity = .waitingForStartup
                runner.lastRegisters = runner.registerDump()
                pv.setOnline(vcpu: index, false)
            case .kick(let target):
                deliver(.interrupt, to: target)
            }
        }
        return nil
    }

    /// The virtio device whose window holds `address`, and the offset into it.
    private func virtioSlot(at address: GuestPhysicalAddress) -> (VirtioSlot, UInt64)? {
        for slot in virtioSlots { if let offset = slot.offset(of: address) { return (slot, offset) } }
        return nil
    }

    /// The kernel command line the guest gets: the configuration's, and for a Linux kernel
    /// (the bzImage or PVH protocol) `console=hvc0` with a virtio console (unless the line
    /// names an hvc console itself) and one `virtio_mmio.device=` per virtio device, which is how
    /// Linux finds virtio-mmio devices without a device tree or ACPI entries for them.
    package static func commandLine(for configuration: DomainConfiguration) -> String {
        let kernel = configuration.kernel
        let isLinux = LinuxSetupHeader.isPresent(in: kernel) || ((try? PVHLoader.hasEntryNote(kernel)) ?? false)
        guard isLinux else { return configuration.commandLine }
        var parameters = (0..<configuration.virtioDeviceCount).map { VirtioPlacement.linuxParameter(device: $0) }
        if let console = configuration.console.linuxParameter, !configuration.commandLine.contains("console=hvc") {
            parameters.insert(console, at: 0)
        }
        return ([configuration.commandLine] + parameters).filter { !$0.isEmpty }.joined(separator: " ")
    }

    /// Whether vCPU `runner`'s local APIC answers at its page: not when the guest disabled it
    /// in IA32_APIC_BASE (the page is then unclaimed: reads float high, writes go nowhere).
    /// Should the engine fail to say, the APIC answers, as it did before the question.
    private func apicAnswers(_ runner: VCPURunner) -> Bool {
        (try? runner.vcpu.localAPICEnabled()) ?? true
    }

    /// The offset into the local APIC's register page, if `address` falls in it.
    private func localAPICOffset(_ address: GuestPhysicalAddress) -> UInt64? {
        let a = address.rawValue
        guard a >= LocalAPIC.defaultBase, a - LocalAPIC.defaultBase < LocalAPIC.pageSize else { return nil }
        return a - LocalAPIC.defaultBase
    }
}

/// The host's processors.
public enum HostCPU {
    /// Online CPUs (at least 1): the default number of pCPUs.
    public static var count: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
}

/// What a hypercall may use of the runtime.
struct RuntimePVContext: PVContext {
    let now: UInt64
    let output: @Sendable (UInt8) -> Void
    func consoleWrite(_ bytes: [UInt8]) { for byte in bytes { output(byte) } }
}

extension X86State {
    /// An application processor after a start-up IPI: real mode at `vector << 12`, CS = vector
    /// << 8, IP 0, everything else as after INIT.
    static func startup(vector: UInt8) -> X86State {
        var state = X86State()
        state.cs = SegmentRegister(selector: UInt16(vector) << 8, base: UInt64(vector) << 12, type: 0xb)
        state.rip = 0
        state.cr0 = X86.cr0ExtensionType
        return state
    }
}

/// A device to attach to a domain's I/O bus at `[base, base + count)`.
public struct ExtraPortDevice: @unchecked Sendable {
    // Unchecked: the device is handed over to the domain and used under its platform lock only.
    public let device: any PortDevice
    public let base: UInt16
    public let count: UInt16
    public init(_ device: any PortDevice, base: UInt16, count: UInt16) {
        self.device = device; self.base = base; self.count = count
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the vDSO makes this a few nanoseconds, cheap enough per exit.
@inline(__always)
package func monotonicNanoseconds() -> UInt64 { MonotonicClock.hostNanoseconds() }
