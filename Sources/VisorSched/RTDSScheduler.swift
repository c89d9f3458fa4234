// RTDS: real-time deferrable servers under global EDF (xen/common/sched/rt.c), rebuilt.
//
// Each vCPU is a deferrable server with a period P and a budget B (µs at the interface, ns
// inside): in every period it is guaranteed B of CPU time, consumed only while it runs and kept
// while it is blocked. All vCPUs of the pool share one runqueue ordered by (priority level,
// absolute deadline = end of the current period): earliest deadline first, preemptively, across
// all pCPUs. A vCPU that exhausts its budget is depleted until its next period, unless it has
// `extratime`, in which case it is refilled at a lower priority level and keeps running only on
// time nobody with a reservation wants (work conservation, Xen 4.10). Replenishments are exact,
// event-driven timers at each deadline, with periods kept phase-aligned to the first release.
// Use it when a guest needs a guaranteed bandwidth with a bounded latency; it has no weights,
// no caps and ignores soft affinity.
//
// Locking / ownership: Xen protects the run, depleted and replenishment queues with one global
// lock per pool. Here the instance is owned by one caller that serialises every hook (see
// Scheduler.swift).
//
// Simplifications: no tasklets; a vCPU's context is saved the moment another is chosen (no
// "delayed runqueue add"); the replenishment timer fires exactly at the deadline.

public final class RTDSScheduler: Scheduler {
    /// RTDS_DEFAULT_PERIOD / RTDS_DEFAULT_BUDGET (µs): a new vCPU reserves 40 %.
    public static let defaultPeriodMicroseconds = 10_000
    public static let defaultBudgetMicroseconds = 4_000
    /// RTDS_MIN_PERIOD / RTDS_MIN_BUDGET (µs), the hypervisor's lower bounds.
    public static let minimumPeriodMicroseconds = 10
    public static let minimumBudgetMicroseconds = 10
    /// The longest period: libxl carries a vCPU's period and budget as 32-bit µs counts, and a
    /// larger value (from the daemon's API) would overflow the nanosecond clock arithmetic.
    public static let maximumPeriodMicroseconds = Int(UInt32.max)
    /// UPDATE_LIMIT_SHIFT: beyond 2^10 missed periods, catch up by division instead of a loop.
    static let updateLimitShift: Int64 = 10

    final class VCPU {
        let id: VCPUID
        var masks: AffinityMasks
        var period = SchedTime.microseconds(Int64(RTDSScheduler.defaultPeriodMicroseconds))
        var budget = SchedTime.microseconds(Int64(RTDSScheduler.defaultBudgetMicroseconds))
        var extratime = true
        var currentBudget = SchedTime.zero
        var deadline = SchedTime.zero
        var lastStart = SchedTime.zero
        var priorityLevel = 0
        var awake = false
        var depleted = false
        var queued = false
        var onReplenishmentQueue = false
        var processor: PCPUID
        init(id: VCPUID, masks: AffinityMasks, processor: PCPUID) {
            self.id = id
            self.masks = masks
            self.processor = processor
        }
    }

    public let kind = SchedulerKind.rtds
    public let pcpus: PCPUSet
    public let clock: any SchedClock

    var vcpus: [VCPUID: VCPU] = [:]
    var domains: Set<DomainID> = []
    /// Runnable vCPUs with budget, best first.
    var runqueue: [VCPU] = []
    /// Runnable vCPUs out of budget (unordered).
    var depletedQueue: [VCPU] = []
    /// Pending replenishments, earliest deadline first.
    var replenishments: [VCPU] = []
    var current: [VCPU?]
    var tickled = PCPUSet()
    var pendingReschedule = PCPUSet()

    public init(pcpuCount: Int, clock: any SchedClock) throws(SchedError) {
        try validatePoolSize(pcpuCount)
        self.clock = clock
        pcpus = .first(pcpuCount)
        current = Array(repeating: nil, count: pcpuCount)
    }

    // MARK: domains and vCPUs

    public func addDomain(_ domain: DomainID) throws(SchedError) {
        guard domains.insert(domain).inserted else { throw .domainExists(domain) }
    }

    public func removeDomain(_ domain: DomainID) throws(SchedError) {
        guard domains.contains(domain) else { throw .unknownDomain(domain) }
        guard !vcpus.keys.contains(where: { $0.domain == domain }) else { throw .domainHasVCPUs(domain) }
        domains.remove(domain)
    }

    public func insert(_ id: VCPUID, affinity: Affinity) throws(SchedError) {
        guard domains.contains(id.domain) else { throw .unknownDomain(id.domain) }
        guard vcpus[id] == nil else { throw .vcpuExists(id) }
        let masks = AffinityMasks(affinity, pool: pcpus)
        guard let first = masks.hard.first else { throw .emptyHardAffinity(id) }
        vcpus[id] = VCPU(id: id, masks: masks, processor: first)
    }

    public func remove(_ id: VCPUID) throws(SchedError) {
        guard let v = vcpus[id] else { throw .unknownVCPU(id) }
        if isCurrent(v) {
            current[v.processor.rawValue] = nil
            pendingReschedule.insert(v.processor)
        }
        dequeue(v)
        removeReplenishment(v)
        vcpus[id] = nil
    }

    // MARK: sleep, wake, yield, affinity

    public func sleep(_ id: VCPUID) {
        let v = vcpu(id)
        v.awake = false
        if isCurrent(v) {
            pendingReschedule.insert(v.processor)
        } else if v.queued {
            dequeue(v)
            removeReplenishment(v)
        }
    }

    /// `rt_unit_wake`: start a new period if the old one is over, queue, tickle.
    public func wake(_ id: VCPUID) {
        let v = vcpu(id)
        v.awake = true
        guard !isCurrent(v), !v.queued else { return }
        let now = clock.now
        if now >= v.deadline { updateDeadline(v, now: now) }
        insertReplenishment(v)
        enqueue(v)
        tickle(v)
    }

    /// RTDS has no yield hook (Xen leaves it NULL): EDF order alone decides.
    public func yield(_ id: VCPUID) { _ = vcpu(id) }

    public func setAffinity(_ id: VCPUID, _ affinity: Affinity) throws(SchedError) {
        guard let v = vcpus[id] else { throw .unknownVCPU(id) }
        let masks = AffinityMasks(affinity, pool: pcpus)
        guard !masks.hard.isEmpty else { throw .emptyHardAffinity(id) }
        v.masks = masks
        if isCurrent(v) && !masks.hard.contains(v.processor) {
            pendingReschedule.insert(v.processor)
        } else if v.queued {
            tickle(v)
        }
    }

    /// `rt_res_pick`: its pCPU if allowed, else the next allowed one.
    public func pickPCPU(for id: VCPUID) -> PCPUID {
        let v = vcpu(id)
        return v.masks.hard.testOrCycle(v.processor) ?? v.processor
    }

    // MARK: scheduling

    /// `rt_schedule`: burn the current vCPU's budget, take the best runnable vCPU allowed here,
    /// keep the current one if it still has budget and strictly outranks it.
    public func doSchedule(pcpu p: PCPUID) -> SchedDecision {
        let now = clock.now
        let n = p.rawValue
        tickled.remove(p)
        pendingReschedule.remove(p)
        let cur = current[n]
        if let cur { burn(cur, now: now) }

        var next = runqueue.first { $0.masks.hard.contains(p) }
        var reason = SchedDecision.Reason.runqueue
        if let cur, cur.awake, !cur.depleted, cur.currentBudget > .zero, cur.masks.hard.contains(p),
           next == nil || outranks(cur, next!) {
            next = cur
            reason = .keptCurrent
        }
        current[n] = next
        var migrated = false
        if let chosen = next, chosen !== cur {
            dequeue(chosen)
            migrated = chosen.processor != p
            chosen.processor = p
        }
        if let cur, cur !== next {
            if cur.awake {
                enqueue(cur)
                tickle(cur)
            } else {
                removeReplenishment(cur)
            }
        }
        guard let chosen = next else { return .idle }
        chosen.lastStart = now
        return SchedDecision(vcpu: chosen.id, timeslice: chosen.currentBudget, reason: reason, migrated: migrated)
    }

    public var nextTimerDeadline: SchedTime? { replenishments.first?.deadline }

    /// `repl_timer_handler`: new period for every vCPU whose deadline has passed, re-sort it,
    /// and tickle where the new order calls for a preemption.
    public func runTimers() {
        let now = clock.now
        var updated: [(VCPU, wasDepleted: Bool)] = []
        while let v = replenishments.first, v.deadline <= now {
            replenishments.removeFirst()
            v.onReplenishmentQueue = false
            let wasDepleted = v.depleted
            updateDeadline(v, now: now)
            if v.queued {
                dequeue(v)
                enqueue(v)
            }
            updated.append((v, wasDepleted))
        }
        for (v, wasDepleted) in updated {
            if isCurrent(v) {
                if let head = runqueue.first, outranks(head, v) { tickle(head) }
            } else if wasDepleted && v.queued {
                tickle(v)
            }
            insertReplenishment(v)
        }
    }

    public func takeRescheduleRequests() -> PCPUSet {
        defer { pendingReschedule = PCPUSet() }
        return pendingReschedule
    }

    // MARK: parameters

    /// As Xen's XEN_DOMCTL_SCHEDOP_getinfo for RTDS: the *default* parameters, whatever the
    /// domain's vCPUs use (ask `vcpuParameters` for those).
    public func domainParameters(_ domain: DomainID) throws(SchedError) -> DomainSchedParams {
        guard domains.contains(domain) else { throw .unknownDomain(domain) }
        return DomainSchedParams(periodMicroseconds: Self.defaultPeriodMicroseconds,
                                 budgetMicroseconds: Self.defaultBudgetMicroseconds, extratime: true)
    }

    /// `xl sched-rtds -d D -p P -b B -e E`: applies to every vCPU of the domain. Fields left nil
    /// come from the defaults, as libxl fills them from the domain "get" (which returns defaults).
    public func adjust(domain: DomainID, _ params: DomainSchedParams) throws(SchedError) {
        guard domains.contains(domain) else { throw .unknownDomain(domain) }
        let (period, budget, extra) = try validate(params, base: (Self.defaultPeriodMicroseconds,
                                                                  Self.defaultBudgetMicroseconds, true))
        for v in vcpus.values where v.id.domain == domain { apply(v, period, budget, extra) }
    }

    public func vcpuParameters(_ id: VCPUID) throws(SchedError) -> DomainSchedParams {
        guard let v = vcpus[id] else { throw .unknownVCPU(id) }
        return DomainSchedParams(periodMicroseconds: Int(v.period.microseconds),
                                 budgetMicroseconds: Int(v.budget.microseconds), extratime: v.extratime)
    }

    /// `xl sched-rtds -d D -v N -p P -b B -e E`. Fields left nil keep the vCPU's current values.
    public func adjust(vcpu id: VCPUID, _ params: DomainSchedParams) throws(SchedError) {
        guard let v = vcpus[id] else { throw .unknownVCPU(id) }
        let (period, budget, extra) = try validate(params, base: (Int(v.period.microseconds),
                                                                  Int(v.budget.microseconds), v.extratime))
        apply(v, period, budget, extra)
    }

    public var globalParameters: GlobalSchedParams { GlobalSchedParams() }

    public func adjustGlobal(_ params: GlobalSchedParams) throws(SchedError) {
        if params.timesliceMilliseconds != nil { throw .unsupportedParameter(scheduler: kind.name, parameter: "tslice") }
        if params.ratelimitMicroseconds != nil { throw .unsupportedParameter(scheduler: kind.name, parameter: "ratelimit") }
        if params.migrationDelayMicroseconds != nil {
            throw .unsupportedParameter(scheduler: kind.name, parameter: "migration delay")
        }
    }

    public func dump() -> String {
        var out = "scheduler: rtds (id \(kind.rawValue)), \(current.count) pCPUs, tickled = \(tickled)\n"
        for (n, c) in current.enumerated() { out += "  CPU[\(n)] curr=\(c.map(describe) ?? "idle")\n" }
        out += "  runq: \(runqueue.map(describe).joined(separator: ", "))\n"
        out += "  depletedq: \(depletedQueue.map(describe).joined(separator: ", "))\n"
        return out
    }

    // MARK: inspection

    func deadline(of id: VCPUID) -> SchedTime { vcpu(id).deadline }
    func remainingBudget(of id: VCPUID) -> SchedTime { vcpu(id).currentBudget }

    // MARK: internals

    private func describe(_ v: VCPU) -> String {
        "\(v.id)[p=\(v.period) b=\(v.budget) cur=\(v.currentBudget) dl=\(v.deadline) lvl=\(v.priorityLevel)\(v.extratime ? " extra" : "")]"
    }

    private func vcpu(_ id: VCPUID) -> VCPU {
        guard let v = vcpus[id] else { preconditionFailure("rtds: unknown vCPU \(id)") }
        return v
    }

    private func isCurrent(_ v: VCPU) -> Bool { current[v.processor.rawValue] === v }

    /// `compare_unit_priority(a, b) > 0`: lower level wins, then the earlier deadline.
    private func outranks(_ a: VCPU, _ b: VCPU) -> Bool {
        a.priorityLevel != b.priorityLevel ? a.priorityLevel < b.priorityLevel : a.deadline < b.deadline
    }

    /// libxl's `sched_rtds_validate_params`, then the hypervisor's minimums.
    private func validate(_ params: DomainSchedParams, base: (Int, Int, Bool)) throws(SchedError) -> (Int, Int, Bool) {
        try params.rejectShareFields(scheduler: kind.name)
        let period = params.periodMicroseconds ?? base.0
        let budget = params.budgetMicroseconds ?? base.1
        if period < 1 { throw .invalidPeriod(microseconds: period) }
        if budget < 1 { throw .invalidBudget(microseconds: budget) }
        if budget > period { throw .budgetGreaterThanPeriod(budgetMicroseconds: budget, periodMicroseconds: period) }
        if period > Self.maximumPeriodMicroseconds { throw .aboveRTDSMaximum(periodMicroseconds: period) }
        if period < Self.minimumPeriodMicroseconds || budget < Self.minimumBudgetMicroseconds {
            throw .belowRTDSMinimum(periodMicroseconds: period, budgetMicroseconds: budget)
        }
        return (period, budget, params.extratime ?? base.2)
    }

    private func apply(_ v: VCPU, _ period: Int, _ budget: Int, _ extratime: Bool) {
        v.period = .microseconds(Int64(period))
        v.budget = .microseconds(Int64(budget))
        v.extratime = extratime
    }

    /// Steal time: the budget is burnt from later on (see the protocol), so the next `burn`
    /// charges only what the vCPU ran.
    public func refund(_ id: VCPUID, _ time: SchedTime) {
        guard let v = vcpus[id], isCurrent(v), time > .zero else { return }
        let room = clock.now - v.lastStart
        if room > .zero { v.lastStart += min(time, room) }
    }

    /// `burn_budget`: charge the time since `lastStart`; at zero either drop a priority level
    /// and refill (extratime) or become depleted until the next period.
    private func burn(_ v: VCPU, now: SchedTime) {
        let delta = now - v.lastStart
        v.lastStart = now
        guard delta > .zero, !v.depleted else { return }
        v.currentBudget -= delta
        if v.currentBudget <= .zero {
            if v.extratime {
                if v.priorityLevel < Int.max { v.priorityLevel += 1 }
                v.currentBudget = v.budget
            } else {
                v.currentBudget = .zero
                v.depleted = true
            }
        }
    }

    /// `rt_update_deadline`: move to the period containing `now` (phase kept), full budget, level 0.
    private func updateDeadline(_ v: VCPU, now: SchedTime) {
        let p = v.period.nanoseconds
        if v.deadline.nanoseconds + (p << Self.updateLimitShift) > now.nanoseconds {
            repeat { v.deadline += v.period } while v.deadline <= now
        } else {
            let count = (now - v.deadline).nanoseconds / p + 1
            v.deadline += v.period * count
        }
        v.lastStart = now
        v.currentBudget = v.budget
        v.priorityLevel = 0
        v.depleted = false
    }

    private func enqueue(_ v: VCPU) {
        v.queued = true
        if v.depleted {
            depletedQueue.append(v)
        } else {
            let i = runqueue.firstIndex { outranks(v, $0) } ?? runqueue.count
            runqueue.insert(v, at: i)
        }
    }

    private func dequeue(_ v: VCPU) {
        guard v.queued else { return }
        v.queued = false
        if let i = runqueue.firstIndex(where: { $0 === v }) {
            runqueue.remove(at: i)
        } else if let i = depletedQueue.firstIndex(where: { $0 === v }) {
            depletedQueue.remove(at: i)
        }
    }

    private func insertReplenishment(_ v: VCPU) {
        if v.onReplenishmentQueue { removeReplenishment(v) }
        let i = replenishments.firstIndex { v.deadline < $0.deadline } ?? replenishments.count
        replenishments.insert(v, at: i)
        v.onReplenishmentQueue = true
    }

    private func removeReplenishment(_ v: VCPU) {
        guard v.onReplenishmentQueue else { return }
        replenishments.removeAll { $0 === v }
        v.onReplenishmentQueue = false
    }

    /// `runq_tickle`: an idle pCPU it may use (its own first), else preempt the lowest-priority
    /// running vCPU if the new one outranks it. Already-tickled pCPUs are skipped.
    private func tickle(_ v: VCPU) {
        guard !v.depleted else { return }
        let candidates = v.masks.hard.subtracting(tickled)
        guard let start = candidates.testOrCycle(v.processor) else { return }
        var c = start
        var lowest: (VCPU, PCPUID)?
        repeat {
            guard let running = current[c.rawValue] else {
                poke(c)
                return
            }
            if lowest == nil || outranks(lowest!.0, running) { lowest = (running, c) }
            c = candidates.cycle(after: c) ?? start
        } while c != start
        if let (running, where_) = lowest, outranks(v, running) { poke(where_) }
    }

    private func poke(_ p: PCPUID) {
        tickled.insert(p)
        pendingReschedule.insert(p)
    }
}
