// The scheduling runtime: physical CPUs shared among the vCPUs of every domain, as a
// `VisorSched.Scheduler` decides.
//
// A pCPU here is a right to run guest code, held by at most one vCPU at a time. Each pCPU has a
// host thread (`pcpuLoop`) that does what Xen's `schedule()` does on a real CPU: run the
// policy's timers, call `doSchedule`, and if it chose another vCPU, take the pCPU back from the
// current one (kick it out of the guest, wait until its thread lets go) and grant it to the
// chosen one; then sleep until the slice ends, a timer is due or the policy asks this pCPU to
// reschedule (a "tickle").
//
// The guest code itself still runs on each vCPU's own thread, which enters the guest only while
// it holds a grant: KVM wants a vCPU driven by one thread, and the software engine is driven the
// same way so that both engines are scheduled identically. A vCPU thread reports what the
// scheduler must know: it became runnable (`wake`), it halted or waits for a start-up IPI
// (`block`, which also gives the pCPU back), and it noticed a revoke after an exit (`release`).
//
// A vCPU is charged the CPU time its thread got while it held a pCPU, not the wall time: before
// each policy call that may burn credit or budget, the pool reads the running vCPUs' thread CPU
// clocks, adds what each ran to its account and refunds the rest to the policy (`RunMeter`,
// `Scheduler.refund`). Those calls are `doSchedule`, `runTimers`, `wake` (credit2 burns the
// vCPUs a wake-up could preempt) and `adjust`; `sleep`, `yield` and `remove` burn nothing in
// any policy here, and the `doSchedule` they ask for charges first.
//
// Everything here is guarded by the pool lock. Lock order: a domain's platform lock, then the
// pool lock; code holding the pool lock never takes a platform lock.

import CVisorHost
import Foundation
import VisorCore
import VisorSched

/// Binding pCPUs to host CPUs (`--pin-pcpus`): pCPU i is the i-th host CPU this process may run on.
public enum HostCPUBinding {
    /// The host CPUs this process may run on (its affinity), at least 1.
    public static var usableCount: Int { max(1, Int(cvisorhost_usable_cpus())) }
}

/// The pCPUs and their scheduler.
package final class CPUPool: @unchecked Sendable {
    let lock = HostMutex()
    let scheduler: any Scheduler
    let pcpuCount: Int
    /// `--pin-pcpus`: pCPU i is the i-th host CPU the process may use (`HostCPUBinding`). Its
    /// thread is bound there, and so is a vCPU's thread while it holds pCPU i, so `cpus=` and
    /// `vcpu-pin` name real processors.
    let pinsHostCPUs: Bool
    private let origin = MonotonicClock.hostNanoseconds()
    private var pcpus: [PhysicalCPU]
    private var vcpus: [VCPUID: ScheduledVCPU] = [:]
    private var trace: SchedTrace?
    private var threads: [HostThread] = []
    private var stopping = false
    /// Broadcast whenever a vCPU lets go of a pCPU (a pCPU granting a migrating vCPU waits on it).
    private let released = HostCondition()

    /// A pool of `pcpuCount` pCPUs scheduled by `kind`, writing decisions to `tracePath` if given;
    /// with `pinHostCPUs`, pCPU i runs on host CPU i (the caller checks the host has them).
    package init(kind: SchedulerKind, pcpuCount: Int, tracePath: String? = nil, pinHostCPUs: Bool = false) throws {
        pinsHostCPUs = pinHostCPUs
        let origin = self.origin
        let clock = ClosureClock { SchedTime(nanoseconds: Int64(clamping: MonotonicClock.hostNanoseconds() &- origin)) }
        scheduler = try makeScheduler(kind, pcpuCount: pcpuCount, clock: clock)
        self.pcpuCount = pcpuCount
        pcpus = (0..<pcpuCount).map { PhysicalCPU(id: PCPUID($0)) }
        if let tracePath {
            let trace = try SchedTrace(path: tracePath)
            trace.describe(pcpuCount: pcpuCount)
            self.trace = trace
        }
    }

    /// The name a vCPU's thread takes when it first asks for a pCPU (`ps -L`, `top -H`).
    package static func threadName(of vcpu: VCPUID) -> String { "vcpu-d\(vcpu.domain.rawValue)v\(vcpu.index)" }

    /// Nanoseconds since the pool was made.
    var now: UInt64 { MonotonicClock.hostNanoseconds() &- origin }

    // MARK: Domains

    /// Registers a domain's vCPUs (asleep until they `wake`) and applies its parameters.
    func add(domain: DomainID, name: String, vcpus runners: [VCPURunner], affinities: [Affinity],
             parameters: DomainSchedParams) throws(SchedError) {
        lock.lock()
        defer { lock.unlock() }
        try scheduler.addDomain(domain)
        for (index, runner) in runners.enumerated() {
            let id = VCPUID(domain: domain, index: index)
            let affinity = index < affinities.count ? affinities[index] : .any
            try scheduler.insert(id, affinity: affinity)
            let scheduled = ScheduledVCPU(id: id, label: "\(name) v\(index)", runner: runner)
            scheduled.affinity = affinity
            vcpus[id] = scheduled
            runner.scheduled = scheduled
        }
        if parameters != DomainSchedParams() { try scheduler.adjust(domain: domain, parameters) }
    }

    /// A domain's scheduling parameters as the policy holds them.
    func parameters(of domain: DomainID) throws(SchedError) -> DomainSchedParams {
        lock.lock()
        defer { lock.unlock() }
        return try scheduler.domainParameters(domain)
    }

    /// Changes a running domain's parameters (the policy validates them, as libxl's set calls
    /// do) and lets the pCPUs it asks to reschedule act on them.
    func adjust(domain: DomainID, _ parameters: DomainSchedParams) throws(SchedError) {
        lock.lock()
        defer { lock.unlock() }
        chargeRunningLocked()
        try scheduler.adjust(domain: domain, parameters)
        serveTickles()
    }

    /// One vCPU's parameters as the policy holds them (RTDS keeps them per vCPU).
    func parameters(of vcpu: VCPUID) throws(SchedError) -> DomainSchedParams {
        lock.lock()
        defer { lock.unlock() }
        return try scheduler.vcpuParameters(vcpu)
    }

    /// Changes the parameters of each of `vcpus` (`xl sched-rtds -d D -v N|all`), all or none:
    /// the policy validates each against that vCPU's current values, and when one is refused
    /// the ones already changed get their old values back.
    func adjust(vcpus: [VCPUID], _ parameters: DomainSchedParams) throws(SchedError) {
        lock.lock()
        defer { lock.unlock() }
        var previous: [(VCPUID, DomainSchedParams)] = []
        for id in vcpus {
            do {
                let old = try scheduler.vcpuParameters(id)
                try scheduler.adjust(vcpu: id, parameters)
                previous.append((id, old))
            } catch {
                // Values the policy held a moment ago are valid: putting them back cannot fail.
                for (changed, old) in previous.reversed() { try? scheduler.adjust(vcpu: changed, old) }
                throw error
            }
        }
        serveTickles()
    }

    /// What `xl vcpu-list` shows of one vCPU, read under the pool lock.
    struct VCPUSnapshot {
        var pcpu: Int?
        var runnable: Bool
        var cpuNanoseconds: UInt64
        var affinity: Affinity
    }

    func snapshot(_ v: ScheduledVCPU) -> VCPUSnapshot {
        lock.withLock {
            VCPUSnapshot(pcpu: v.grantedOn, runnable: v.runnable, cpuNanoseconds: cpuNanosecondsLocked(v),
                         affinity: v.affinity)
        }
    }

    /// `xl vcpu-pin`: new hard and soft affinity. A vCPU holding a pCPU outside its new hard
    /// affinity is moved at once: that pCPU is asked to reschedule.
    func setAffinity(_ v: ScheduledVCPU, _ affinity: Affinity) throws(SchedError) {
        lock.lock()
        defer { lock.unlock() }
        try scheduler.setAffinity(v.id, affinity)
        v.affinity = affinity
        if let p = v.grantedOn, let hard = affinity.hard, !hard.contains(PCPUID(p)), p < pcpus.count {
            pcpus[p].needsReschedule = true
            pcpus[p].condition.signal()
        }
        serveTickles()
    }

    /// Takes a finished domain's vCPUs out of the scheduler.
    func remove(domain: DomainID, vcpuCount: Int) {
        lock.lock()
        defer { lock.unlock() }
        for index in 0..<vcpuCount {
            let id = VCPUID(domain: domain, index: index)
            guard let v = vcpus[id] else { continue }
            if v.runnable { scheduler.sleep(id); v.runnable = false }
            releaseLocked(v, endedBy: "domain ended")
            try? scheduler.remove(id)
            vcpus[id] = nil
        }
        try? scheduler.removeDomain(domain)
        serveTickles()
    }

    // MARK: Running the pCPUs

    package func start() {
        for p in 0..<pcpuCount {
            threads.append(HostThread { [self] in pcpuLoop(p) })
        }
    }

    /// Stops the pCPU threads (every domain has ended) and closes the trace.
    package func stop() {
        lock.withLock {
            stopping = true
            for p in pcpus { p.condition.signal() }
            released.broadcast()  // a pCPU waiting for a migrating vCPU's release sees `stopping` too
        }
        for t in threads { t.join() }
        threads = []
        lock.withLock {
            trace?.finish()
            trace = nil
        }
    }

    private func pcpuLoop(_ index: Int) {
        _ = cvisorhost_set_thread_name("visor-pcpu\(index)")
        if pinsHostCPUs { _ = cvisorhost_pin_current_thread(Int32(clamping: index)) }
        lock.lock()
        defer { lock.unlock() }
        let me = pcpus[index]
        me.needsReschedule = true
        while !stopping {
            let now = self.now
            if let due = scheduler.nextTimerDeadline, due.nanoseconds <= Int64(clamping: now) {
                chargeRunningLocked()
                scheduler.runTimers()
            }
            serveTickles()
            let sliceOver = me.sliceEnd.map { now >= $0 } ?? false
            if me.needsReschedule || sliceOver {
                // A reschedule request (a tickle) is named even when the slice ended too (the
                // thread woke late): the trace shows the pool acted on it.
                let trigger = !me.needsReschedule ? "slice end" : sliceOver ? "reschedule request, slice over" : "reschedule request"
                me.needsReschedule = false
                schedule(me, now: now, trigger: trigger)
                continue  // re-read the clock and timers after the (possibly waiting) switch
            }
            var wake = me.sliceEnd
            if let t = scheduler.nextTimerDeadline {
                let at = UInt64(clamping: t.nanoseconds)
                wake = min(wake ?? at, at)
            }
            me.condition.wait(lock, untilHostNanoseconds: wake.map { origin &+ $0 })
        }
        if let current = me.current, let v = vcpus[current], v.grantedOn == index {
            revokeLocked(v, on: me)
        }
    }

    /// `schedule()` on one pCPU: ask the policy, switch if it chose another vCPU.
    private func schedule(_ me: PhysicalCPU, now: UInt64, trigger: String) {
        chargeRunningLocked()
        let decision = scheduler.doSchedule(pcpu: me.id)
        // The policy charges the vCPU it chose from here: so does the pool, though its thread
        // may get the grant only later (a migrating vCPU is let go by its old pCPU first).
        let decided = self.now
        let chosen = decision.vcpu.flatMap { vcpus[$0] }
        trace?.decision(pcpu: me.id.rawValue, time: now, chosen: chosen?.label ?? "idle",
                        reason: "\(decision.reason)\(decision.migrated ? ", migrated" : ""), after \(trigger)",
                        slice: decision.timeslice.map { UInt64(clamping: $0.nanoseconds) })
        if let current = me.current, current != decision.vcpu, let v = vcpus[current], v.grantedOn == me.id.rawValue {
            revokeLocked(v, on: me)
        }
        me.current = decision.vcpu
        me.sliceEnd = decision.timeslice.map { now &+ UInt64(clamping: $0.nanoseconds) }
        guard let chosen, chosen.grantedOn != me.id.rawValue else { return }
        // The policy may pick a vCPU another pCPU is still taking back (the kick is asynchronous).
        while let other = chosen.grantedOn, other != me.id.rawValue, !stopping {
            pcpus[other].condition.signal()
            released.wait(lock, untilHostNanoseconds: nil)
        }
        guard !stopping, vcpus[chosen.id] != nil, me.current == chosen.id else { return }
        chosen.grantedOn = me.id.rawValue
        chosen.grantedAt = self.now
        chosen.meter.start(wall: max(decided, chosen.meter.wall), cpu: chosen.cpuClock?.nanoseconds())
        chosen.revokeRequested = false
        chosen.grant.signal()
    }

    /// Takes pCPU `me` back from `v`: kicks it out of the guest and waits until its thread lets go.
    private func revokeLocked(_ v: ScheduledVCPU, on me: PhysicalCPU) {
        v.revokeRequested = true
        v.runner.vcpu.requestStop()
        while v.grantedOn == me.id.rawValue && !v.retired {
            me.condition.wait(lock, untilHostNanoseconds: nil)
        }
    }

    /// Marks pCPUs the policy asked to reschedule and wakes their threads; returns them.
    @discardableResult
    private func serveTickles() -> [Int] {
        var tickled: [Int] = []
        for p in scheduler.takeRescheduleRequests() where p.rawValue < pcpus.count {
            pcpus[p.rawValue].needsReschedule = true
            pcpus[p.rawValue].condition.signal()
            tickled.append(p.rawValue)
        }
        return tickled
    }

    /// Ends `v`'s hold on its pCPU, charging the time, and tells the pCPU. Pool lock held.
    private func releaseLocked(_ v: ScheduledVCPU, endedBy: String) {
        guard let p = v.grantedOn else { return }
        chargeLocked(v)
        let now = self.now
        trace?.run(vcpu: v.label, pcpu: p, start: v.grantedAt, end: now, endedBy: endedBy)
        v.grantedOn = nil
        v.revokeRequested = false
        pcpus[p].condition.signal()
        released.broadcast()
    }

    // MARK: Charging

    /// One charge step for `v` (see the top of the file): what its thread ran since the last
    /// step goes to its account, the rest of the time since then back to the policy. A vCPU
    /// that has let go of its pCPU but is still the policy's running one ran none of it.
    private func chargeLocked(_ v: ScheduledVCPU) {
        let holds = v.grantedOn != nil
        let step = v.meter.step(wall: now, cpu: holds ? v.cpuClock?.nanoseconds() : nil, running: holds)
        v.cpuNanoseconds &+= step.ran
        if step.stolen > 0 { scheduler.refund(v.id, SchedTime(nanoseconds: Int64(clamping: step.stolen))) }
    }

    /// Charges the vCPU the policy runs on each pCPU: one thread-clock read each (a system call,
    /// about a microsecond), so only those, and only before a call that may burn.
    private func chargeRunningLocked() {
        for p in pcpus {
            if let id = p.current, let v = vcpus[id] { chargeLocked(v) }
        }
    }

    /// `v`'s account including the stretch in progress, without charging it.
    private func cpuNanosecondsLocked(_ v: ScheduledVCPU) -> UInt64 {
        guard v.grantedOn != nil else { return v.cpuNanoseconds }
        var meter = v.meter
        return v.cpuNanoseconds &+ meter.step(wall: now, cpu: v.cpuClock?.nanoseconds()).ran
    }

    // MARK: The vCPU side (called from the vCPU's own thread)

    /// The vCPU can run: make it runnable in the policy. Idempotent.
    func wake(_ v: ScheduledVCPU) {
        lock.withLock {
            guard !v.runnable, !v.retired else { return }
            v.runnable = true
            chargeRunningLocked()
            scheduler.wake(v.id)
            let tickled = serveTickles()
            if let trace {
                trace.wake(vcpu: v.label, time: now, standing: scheduler.standing(of: v.id),
                           tickled: tickled.map { ($0, pcpus[$0].current.flatMap { vcpus[$0]?.label } ?? "idle") })
            }
        }
    }

    /// The vCPU halted or waits for a start-up IPI: not runnable, and its pCPU goes back.
    func block(_ v: ScheduledVCPU) {
        lock.withLock {
            guard v.runnable else { return }
            v.runnable = false
            scheduler.sleep(v.id)
            releaseLocked(v, endedBy: "blocked")
            serveTickles()
        }
    }

    /// `sched_op yield`: the vCPU gives up the rest of its slice.
    func yield(_ v: ScheduledVCPU) {
        lock.withLock {
            guard v.runnable else { return }
            scheduler.yield(v.id)
            serveTickles()
        }
    }

    /// Waits until the vCPU holds a pCPU. Returns false when `cancelled` says to give up (its
    /// domain is ending), checked whenever the thread is woken.
    func acquire(_ v: ScheduledVCPU, cancelled: () -> Bool) -> Bool {
        lock.lock()
        // Learnt on the thread itself; a stretch granted before this is charged in wall time.
        if v.cpuClock == nil && !v.retired { v.cpuClock = ThreadCPUClock.current() }
        while v.grantedOn == nil || v.revokeRequested {
            if v.revokeRequested { releaseLocked(v, endedBy: "preempted") }
            if cancelled() || v.retired || stopping {
                lock.unlock()
                return false
            }
            v.grant.wait(lock, untilHostNanoseconds: nil)
        }
        // Moving to another host CPU waits for the move: not under the pool lock.
        let moveTo = pinsHostCPUs && v.boundTo != v.grantedOn ? v.grantedOn : nil
        if let moveTo { v.boundTo = moveTo }
        let name = v.threadNamed ? nil : Self.threadName(of: v.id)
        v.threadNamed = true
        lock.unlock()
        if let name { _ = cvisorhost_set_thread_name(name) }
        if let moveTo { _ = cvisorhost_pin_current_thread(Int32(clamping: moveTo)) }
        return true
    }

    /// After an exit: gives the pCPU back if the pool asked for it.
    func afterExit(_ v: ScheduledVCPU) {
        lock.withLock {
            if v.revokeRequested { releaseLocked(v, endedBy: "preempted") }
        }
    }

    /// Wakes a vCPU thread waiting in `acquire` so it sees that its domain is ending.
    func interruptWait(_ v: ScheduledVCPU) {
        lock.withLock { v.grant.signal() }
    }

    /// The vCPU's thread is done: it will not run again.
    func retire(_ v: ScheduledVCPU) {
        lock.withLock {
            if v.runnable { scheduler.sleep(v.id); v.runnable = false }
            releaseLocked(v, endedBy: "domain ended")
            v.retired = true
            v.cpuClock = nil    // the thread ends: its clock would name a reused thread id
            serveTickles()
            for p in pcpus { p.condition.signal() }
        }
    }

    /// Whether the vCPU holds a pCPU now.
    func holdsPCPU(_ v: ScheduledVCPU) -> Bool {
        lock.withLock { v.grantedOn != nil }
    }

    /// CPU time the vCPU's thread got while it held a pCPU, including a stretch in progress.
    func cpuNanoseconds(_ v: ScheduledVCPU) -> UInt64 {
        lock.withLock { cpuNanosecondsLocked(v) }
    }
}

/// One pCPU's state. Guarded by the pool lock.
final class PhysicalCPU: @unchecked Sendable {
    let id: PCPUID
    var current: VCPUID?
    /// When the current slice ends (pool clock), nil: no timer.
    var sliceEnd: UInt64?
    var needsReschedule = false
    let condition = HostCondition()
    init(id: PCPUID) { self.id = id }
}

/// A vCPU as the pool sees it. Guarded by the pool lock.
final class ScheduledVCPU: @unchecked Sendable {
    let id: VCPUID
    let label: String
    unowned let runner: VCPURunner
    /// Runnable as far as the policy knows (woken, not blocked).
    var runnable = false
    /// The pCPU it may run on now.
    var grantedOn: Int?
    var grantedAt: UInt64 = 0
    /// Its pCPU wants it back at the next exit.
    var revokeRequested = false
    var retired = false
    /// CPU time its thread ran while it held a pCPU, up to the last charge step.
    var cpuNanoseconds: UInt64 = 0
    /// Its thread's CPU clock, once the thread has asked for a pCPU (nil again once it ended).
    var cpuClock: ThreadCPUClock?
    /// Readings at the last charge step.
    var meter = RunMeter()
    /// As last set (at creation or by `setAffinity`), for `vcpu-list`.
    var affinity = Affinity.any
    /// The host CPU its thread is bound to (`--pin-pcpus`), and whether the thread is named yet.
    var boundTo: Int?
    var threadNamed = false
    let grant = HostCondition()

    init(id: VCPUID, label: String, runner: VCPURunner) {
        self.id = id; self.label = label; self.runner = runner
    }
}
