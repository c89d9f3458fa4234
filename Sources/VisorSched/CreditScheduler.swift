// Credit (credit1): Xen's proportional-share scheduler (xen/common/sched/credit.c), rebuilt.
//
// Each domain has a weight (its share relative to others) and an optional cap (a ceiling, in %
// of one pCPU, enforced even when pCPUs are idle). Every 30 ms (the timeslice) an accounting
// pass hands out 300 credits per pCPU to the *active* vCPUs in proportion to their domain's
// weight; running burns 10 credits per ms, charged exactly from the clock. A vCPU with credit
// left is UNDER, one that overspent is OVER; a vCPU that wakes while UNDER is BOOSTed and
// preempts CPU hogs (the I/O-latency trick), until the next 10 ms tick finds it still running.
// Each pCPU has its own runqueue ordered BOOST > UNDER > OVER, round robin within a band; a pCPU
// about to run something OVER (or nothing) steals UNDER/BOOST work from its peers, and the
// tick pushes a running vCPU to an idle pCPU when its own pCPU has a queue.
//
// Locking / ownership: Xen nests the private lock (accounting, idlers mask, active-domain list)
// outside each pCPU's runqueue lock. This model has no locks: the instance is owned by one
// caller, which serialises every hook (see Scheduler.swift). State that Xen keeps per pCPU
// (`runq`, `curr`, ticker) lives in `pcpus[n]`; pool state (weights, credit balance, idlers,
// active domains) in the instance.
//
// Simplifications (each one deliberate): the pool is pCPUs 0..<n with a flat topology (every pCPU
// its own core and socket, one NUMA node), so pCPU picking has no sibling/socket comparison and
// `sched_smt_power_savings` has no effect; there are no tasklets; an idle pCPU always tries to
// steal (the load-balance rate limit applies only to pCPUs about to run an OVER vCPU), so queued
// work never waits behind an idle pCPU that has no timer; runqueue trylock failures do not exist.

public final class CreditScheduler: Scheduler {
    // MARK: constants (Xen's CSCHED_* and XEN_SYSCTL_CSCHED_* names, units in the name)

    /// CSCHED_DEFAULT_WEIGHT.
    public static let defaultWeight = 256
    /// Toolstack weight range (libxl).
    public static let weightMinimum = 1
    public static let weightMaximum = 65_535
    /// CSCHED_DEFAULT_TSLICE_MS.
    public static let defaultTimesliceMilliseconds = 30
    /// XEN_SYSCTL_CSCHED_TSLICE_MIN / _MAX.
    public static let timesliceMinimumMilliseconds = 1
    public static let timesliceMaximumMilliseconds = 1_000
    /// CSCHED_TICKS_PER_TSLICE (1 when the timeslice is under 3 ms).
    public static let ticksPerTimeslice = 3
    /// CSCHED_CREDITS_PER_MSEC.
    public static let creditsPerMillisecond = 10
    /// CSCHED_MIN_TIMER: never arm a slice shorter than this (= XEN_SYSCTL_SCHED_RATELIMIT_MIN).
    public static let minimumTimerMicroseconds = 100
    /// Boot `load-balance-ratelimit` default and maximum.
    public static let defaultLoadBalanceRatelimitMicroseconds = 1_000
    public static let loadBalanceRatelimitMaximumMicroseconds = 1_000_000
    /// `vcpu_migration_delay` default and XEN_SYSCTL_CSCHED_MGR_DLY_MAX_US.
    public static let defaultMigrationDelayMicroseconds = 0
    public static let migrationDelayMaximumMicroseconds = 100_000

    /// CSCHED_PRI_*: higher runs first.
    public enum Priority: Int, Comparable, Sendable {
        case boost = 0, under = -1, over = -2, idle = -64
        public static func < (a: Priority, b: Priority) -> Bool { a.rawValue < b.rawValue }
    }

    /// Boot-time options (`sched_credit_tslice_ms`, `sched_ratelimit_us`, …). Out-of-range values
    /// are reset as Xen does at boot (to the default, or ratelimit := timeslice), not rejected.
    public struct Options: Sendable {
        public var timesliceMilliseconds = CreditScheduler.defaultTimesliceMilliseconds
        public var ratelimitMicroseconds = schedDefaultRatelimitMicroseconds
        public var loadBalanceRatelimitMicroseconds = CreditScheduler.defaultLoadBalanceRatelimitMicroseconds
        public var migrationDelayMicroseconds = CreditScheduler.defaultMigrationDelayMicroseconds
        /// `tickle_one_idle_cpu`: wake one idle pCPU per wake-up, not all suitable ones.
        public var tickleOneIdlePCPU = true
        public init() {}
    }

    // MARK: state

    final class VCPU {
        let id: VCPUID
        unowned let domain: Domain
        var affinity: Affinity
        var masks: AffinityMasks
        var credit = 0
        /// Sub-credit remainder, in ns·credits (Xen's `residual`).
        var residual: Int64 = 0
        var priority = Priority.under
        var awake = false
        var parked = false
        var yielding = false
        /// The core's _VPF_migrating: move it when it is next descheduled.
        var migratePending = false
        /// CSCHED_FLAG_UNIT_MIGRATING: the next wake-up is a migration, do not boost.
        var noBoostOnWake = false
        var active = false
        var onRunqueue = false
        var processor: PCPUID
        /// Credit is burnt from here (Xen's `start_time`).
        var startTime = SchedTime.zero
        /// When it was last switched in (Xen's `state_entry_time`), for the rate limit.
        var scheduledIn = SchedTime.zero
        /// When it was last switched out (`last_sched_time`), for the cache-hot window.
        var lastDescheduled = SchedTime(nanoseconds: Int64.min / 4)
        var runnable: Bool { awake && !parked }
        var pinned: Bool { masks.hard.count == 1 }

        init(id: VCPUID, domain: Domain, affinity: Affinity, masks: AffinityMasks, processor: PCPUID) {
            self.id = id
            self.domain = domain
            self.affinity = affinity
            self.masks = masks
            self.processor = processor
        }
    }

    final class Domain {
        let id: DomainID
        var weight = CreditScheduler.defaultWeight
        var cap = 0
        var vcpus: [VCPU] = []
        var activeCount = 0
        init(id: DomainID) { self.id = id }
        var maxVCPUs: Int { max(1, (vcpus.map(\.id.index).max() ?? 0) + 1) }
    }

    struct PCPU {
        var runqueue: [VCPU] = []
        var current: VCPU?
        var tickDeadline: SchedTime?
        var lastLoadBalance = SchedTime(nanoseconds: Int64.min / 4)
        var sortEpochSeen = 0
    }

    public let kind = SchedulerKind.credit
    public let pcpus: PCPUSet
    public let clock: any SchedClock
    let options: Options

    var pcpu: [PCPU]
    var domains: [DomainID: Domain] = [:]
    var vcpus: [VCPUID: VCPU] = [:]
    /// Domains with at least one active vCPU, in accounting order (Xen's `active_sdom`).
    var activeDomains: [Domain] = []
    /// Σ weight over active vCPUs (Xen's `prv->weight`).
    var totalWeight = 0
    var creditBalance = 0
    var idlers: PCPUSet
    var pendingReschedule = PCPUSet()
    var sortEpoch = 0
    var accountingDeadline: SchedTime
    var lastTickledPCPU = PCPUID(0)
    var balanceBias = PCPUID(0)

    // Tunables (runtime-adjustable through `adjustGlobal`).
    var timesliceMilliseconds: Int
    var ratelimitMicroseconds: Int
    var migrationDelayMicroseconds: Int
    let loadBalanceRatelimitMicroseconds: Int
    var ticksPerTimeslice: Int { timesliceMilliseconds < Self.ticksPerTimeslice ? 1 : Self.ticksPerTimeslice }
    var tickPeriod: SchedTime { .microseconds(Int64(timesliceMilliseconds * 1_000 / ticksPerTimeslice)) }
    var timeslice: SchedTime { .milliseconds(Int64(timesliceMilliseconds)) }
    var ratelimit: SchedTime { .microseconds(Int64(ratelimitMicroseconds)) }
    /// Credits earned per timeslice by one fully busy pCPU (300 by default).
    var creditsPerTimeslice: Int { Self.creditsPerMillisecond * timesliceMilliseconds }
    /// Credit the pool hands out per accounting period (300 × pCPUs).
    var poolCredit: Int { creditsPerTimeslice * pcpu.count }
    /// Time refunded to running vCPUs (`refund`) not yet taken off an accounting, nanoseconds.
    private var stolenSinceAccounting: Int64 = 0

    public init(pcpuCount: Int, clock: any SchedClock, options: Options = Options()) throws(SchedError) {
        try validatePoolSize(pcpuCount)
        self.clock = clock
        self.options = options
        pcpus = .first(pcpuCount)
        pcpu = Array(repeating: PCPU(), count: pcpuCount)
        idlers = pcpus
        var tslice = options.timesliceMilliseconds
        if tslice < Self.timesliceMinimumMilliseconds || tslice > Self.timesliceMaximumMilliseconds {
            tslice = Self.defaultTimesliceMilliseconds
        }
        var rl = options.ratelimitMicroseconds
        if (try? validateRatelimit(rl)) == nil { rl = schedDefaultRatelimitMicroseconds }
        if rl > tslice * 1_000 { rl = tslice * 1_000 }
        timesliceMilliseconds = tslice
        ratelimitMicroseconds = rl
        migrationDelayMicroseconds = min(max(options.migrationDelayMicroseconds, 0), Self.migrationDelayMaximumMicroseconds)
        loadBalanceRatelimitMicroseconds = min(max(options.loadBalanceRatelimitMicroseconds, 0),
                                               Self.loadBalanceRatelimitMaximumMicroseconds)
        accountingDeadline = clock.now + .milliseconds(Int64(tslice))
    }

    // MARK: domains and vCPUs

    public func addDomain(_ domain: DomainID) throws(SchedError) {
        guard domains[domain] == nil else { throw .domainExists(domain) }
        domains[domain] = Domain(id: domain)
    }

    public func removeDomain(_ domain: DomainID) throws(SchedError) {
        guard let d = domains[domain] else { throw .unknownDomain(domain) }
        guard d.vcpus.isEmpty else { throw .domainHasVCPUs(domain) }
        domains[domain] = nil
    }

    public func insert(_ id: VCPUID, affinity: Affinity) throws(SchedError) {
        guard let d = domains[id.domain] else { throw .unknownDomain(id.domain) }
        guard vcpus[id] == nil else { throw .vcpuExists(id) }
        let masks = AffinityMasks(affinity, pool: pcpus)
        guard let first = masks.hard.first else { throw .emptyHardAffinity(id) }
        let v = VCPU(id: id, domain: d, affinity: affinity, masks: masks, processor: first)
        v.startTime = clock.now
        d.vcpus.append(v)
        vcpus[id] = v
        v.processor = pick(v)
    }

    public func remove(_ id: VCPUID) throws(SchedError) {
        guard let v = vcpus[id] else { throw .unknownVCPU(id) }
        if isCurrent(v) {
            pcpu[v.processor.rawValue].current = nil
            pendingReschedule.insert(v.processor)
        }
        if v.onRunqueue { dequeue(v) }
        if v.active { stopAccounting(v) }
        v.domain.vcpus.removeAll { $0 === v }
        vcpus[id] = nil
    }

    // MARK: sleep, wake, yield, affinity

    public func sleep(_ id: VCPUID) {
        let v = vcpu(id)
        v.awake = false
        if isCurrent(v) {
            pendingReschedule.insert(v.processor)
        } else if v.onRunqueue {
            dequeue(v)
        }
    }

    public func wake(_ id: VCPUID) {
        let v = vcpu(id)
        v.awake = true
        enqueueAndTickle(v, mayBoost: true)
    }

    public func yield(_ id: VCPUID) {
        let v = vcpu(id)
        v.yielding = true
        if isCurrent(v) { pendingReschedule.insert(v.processor) }
    }

    public func setAffinity(_ id: VCPUID, _ affinity: Affinity) throws(SchedError) {
        guard let v = vcpus[id] else { throw .unknownVCPU(id) }
        let masks = AffinityMasks(affinity, pool: pcpus)
        guard !masks.hard.isEmpty else { throw .emptyHardAffinity(id) }
        v.affinity = affinity
        v.masks = masks
        // Xen's vcpu_set_affinity always goes through vcpu_migrate_start/finish.
        if isCurrent(v) {
            v.migratePending = true
            pendingReschedule.insert(v.processor)
        } else if v.onRunqueue {
            dequeue(v)
            v.processor = pick(v)
            enqueueAndTickle(v, mayBoost: false)
        } else {
            v.processor = pick(v)
        }
    }

    public func pickPCPU(for id: VCPUID) -> PCPUID { pick(vcpu(id)) }

    // MARK: scheduling

    public func doSchedule(pcpu p: PCPUID) -> SchedDecision {
        let now = clock.now
        let n = p.rawValue
        let current = pcpu[n].current
        if let cur = current { burn(cur, now: now) }

        // Rate limit: a runnable, non-yielding vCPU keeps the pCPU until it has run `ratelimit`.
        if let cur = current, cur.runnable, !cur.yielding, !cur.migratePending, ratelimitMicroseconds > 0 {
            let ran = now - cur.scheduledIn
            if ran < ratelimit {
                let left = max(ratelimit - ran, .microseconds(Int64(Self.minimumTimerMicroseconds)))
                pendingReschedule.remove(p)
                return SchedDecision(vcpu: cur.id, timeslice: left, reason: .ratelimit)
            }
        }

        if let cur = current {
            if cur.runnable && cur.migratePending {
                // The core's vcpu_migrate_finish: pick a pCPU, queue there (no boost), tickle.
                cur.migratePending = false
                pcpu[n].current = nil
                cur.processor = pick(cur)
                cur.noBoostOnWake = true
                runqueueInsert(cur, on: cur.processor)
                if cur.processor != p { tickle(cur) }
                cur.noBoostOnWake = false
            } else if cur.runnable {
                runqueueInsert(cur, on: p)
            }
            cur.migratePending = false
        }

        var next = pcpu[n].runqueue.first
        var reason = SchedDecision.Reason.runqueue
        var migrated = false
        let nextPriority = next?.priority ?? .idle
        if nextPriority <= .over {
            let mayBalance = next == nil
                || now - pcpu[n].lastLoadBalance > .microseconds(Int64(loadBalanceRatelimitMicroseconds))
            if mayBalance {
                pcpu[n].lastLoadBalance = now
                if let (stolen, peer) = steal(for: p, below: nextPriority, now: now) {
                    next = stolen
                    reason = .stolen(from: peer)
                    migrated = true
                }
            }
        }
        if let chosen = next, !migrated { dequeue(chosen) }
        current?.yielding = false

        if let cur = current, cur !== next { cur.lastDescheduled = now }
        pcpu[n].current = next
        pendingReschedule.remove(p)
        guard let chosen = next else {
            idlers.insert(p)
            pcpu[n].tickDeadline = nil
            return .idle
        }
        idlers.remove(p)
        if chosen !== current { chosen.scheduledIn = now }
        chosen.startTime = now
        chosen.processor = p
        if pcpu[n].tickDeadline == nil {
            let period = tickPeriod.nanoseconds
            pcpu[n].tickDeadline = SchedTime(nanoseconds: now.nanoseconds - now.nanoseconds % period + period)
        }
        return SchedDecision(vcpu: chosen.id, timeslice: timeslice, reason: reason, migrated: migrated)
    }

    public var nextTimerDeadline: SchedTime? {
        var d = accountingDeadline
        for c in pcpu { if let t = c.tickDeadline, t < d { d = t } }
        return d
    }

    public func runTimers() {
        let now = clock.now
        while let d = nextTimerDeadline, d <= now {
            if accountingDeadline == d {
                account()
                accountingDeadline = d + timeslice
            }
            for n in pcpu.indices where pcpu[n].tickDeadline == d {
                tick(PCPUID(n), now: now)
                if pcpu[n].tickDeadline != nil { pcpu[n].tickDeadline = d + tickPeriod }
            }
        }
    }

    public func takeRescheduleRequests() -> PCPUSet {
        defer { pendingReschedule = PCPUSet() }
        return pendingReschedule
    }

    // MARK: parameters

    public func domainParameters(_ domain: DomainID) throws(SchedError) -> DomainSchedParams {
        guard let d = domains[domain] else { throw .unknownDomain(domain) }
        return DomainSchedParams(weight: d.weight, cap: d.cap)
    }

    /// libxl `sched_credit_domain_set`: weight 1 … 65535, cap 0 … 100 × (max vCPU id + 1).
    public func adjust(domain: DomainID, _ params: DomainSchedParams) throws(SchedError) {
        guard let d = domains[domain] else { throw .unknownDomain(domain) }
        try params.validateShares(scheduler: kind.name, maxVCPUs: d.maxVCPUs)
        if let w = params.weight {
            totalWeight += (w - d.weight) * d.activeCount
            d.weight = w
        }
        if let c = params.cap { d.cap = c }
    }

    public func vcpuParameters(_ id: VCPUID) throws(SchedError) -> DomainSchedParams {
        guard let v = vcpus[id] else { throw .unknownVCPU(id) }
        return try domainParameters(v.domain.id)
    }

    public func adjust(vcpu: VCPUID, _ params: DomainSchedParams) throws(SchedError) {
        throw .unsupportedParameter(scheduler: kind.name, parameter: "per-vCPU parameters")
    }

    public var globalParameters: GlobalSchedParams {
        GlobalSchedParams(timesliceMilliseconds: timesliceMilliseconds, ratelimitMicroseconds: ratelimitMicroseconds,
                          migrationDelayMicroseconds: migrationDelayMicroseconds)
    }

    /// libxl `sched_credit_params_set` then `csched_sys_cntl`: timeslice 1 … 1000 ms, ratelimit
    /// 0 or 100 … 500000 µs and ≤ timeslice, migration delay ≤ 100000 µs.
    public func adjustGlobal(_ params: GlobalSchedParams) throws(SchedError) {
        let tslice = params.timesliceMilliseconds ?? timesliceMilliseconds
        let rl = params.ratelimitMicroseconds ?? ratelimitMicroseconds
        let delay = params.migrationDelayMicroseconds ?? migrationDelayMicroseconds
        if tslice < Self.timesliceMinimumMilliseconds || tslice > Self.timesliceMaximumMilliseconds {
            throw .timesliceOutOfRange(milliseconds: tslice)
        }
        try validateRatelimit(rl)
        if rl > tslice * 1_000 {
            throw .ratelimitGreaterThanTimeslice(ratelimitMicroseconds: rl, timesliceMilliseconds: tslice)
        }
        if delay < 0 || delay > Self.migrationDelayMaximumMicroseconds { throw .migrationDelayOutOfRange(microseconds: delay) }
        let changedSlice = tslice != timesliceMilliseconds
        timesliceMilliseconds = tslice
        ratelimitMicroseconds = rl
        migrationDelayMicroseconds = delay
        if changedSlice {
            let now = clock.now
            accountingDeadline = now + timeslice
            let period = tickPeriod.nanoseconds
            for n in pcpu.indices where pcpu[n].tickDeadline != nil {
                pcpu[n].tickDeadline = SchedTime(nanoseconds: now.nanoseconds - now.nanoseconds % period + period)
            }
        }
    }

    public func dump() -> String {
        var out = "scheduler: credit (id \(kind.rawValue)), \(pcpu.count) pCPUs\n"
        out += "  tslice = \(timesliceMilliseconds)ms, ticks per tslice = \(ticksPerTimeslice), tick = \(tickPeriod)"
        out += ", ratelimit = \(ratelimitMicroseconds)us, migration delay = \(migrationDelayMicroseconds)us\n"
        out += "  credits per tslice = \(creditsPerTimeslice), pool credit = \(poolCredit), weight = \(totalWeight)"
        out += ", credit balance = \(creditBalance), idlers = \(idlers)\n"
        for (n, c) in pcpu.enumerated() {
            out += "  CPU[\(n)] curr=\(c.current.map { describe($0) } ?? "idle")"
            out += " runq=[\(c.runqueue.map { describe($0) }.joined(separator: ", "))]\n"
        }
        for d in domains.values.sorted(by: { $0.id < $1.id }) {
            out += "  \(d.id): weight=\(d.weight) cap=\(d.cap) active=\(d.activeCount)\n"
        }
        return out
    }

    public func standing(of id: VCPUID) -> String? { vcpus[id].map { "\($0.priority)" } }

    // MARK: inspection (tests, dump)

    func priority(of id: VCPUID) -> Priority { vcpu(id).priority }
    func credit(of id: VCPUID) -> Int { vcpu(id).credit }
    func isParked(_ id: VCPUID) -> Bool { vcpu(id).parked }
    func isActive(_ id: VCPUID) -> Bool { vcpu(id).active }
    var tickPeriodForTesting: SchedTime { tickPeriod }
    var creditsPerTimesliceForTesting: Int { creditsPerTimeslice }

    private func describe(_ v: VCPU) -> String {
        "\(v.id)[\(v.priority) cr=\(v.credit)\(v.parked ? " parked" : "")\(v.active ? "" : " inactive")]"
    }

    // MARK: internals

    private func vcpu(_ id: VCPUID) -> VCPU {
        guard let v = vcpus[id] else { preconditionFailure("credit: unknown vCPU \(id)") }
        return v
    }

    private func isCurrent(_ v: VCPU) -> Bool { pcpu[v.processor.rawValue].current === v }

    /// Steal time: credit is burnt from later on (see the protocol), so the next `burn` charges
    /// only what the vCPU ran. The pool had that much less to hand out, too: the next
    /// accounting shares out the pool's credit less the time stolen since the last one. Without
    /// that, vCPUs that can burn only part of what a pCPU's credit pays for (their threads run a
    /// third of the time) all stay UNDER, and credit turns round-robin: weights 256 : 512 came
    /// out 50 : 50.
    public func refund(_ id: VCPUID, _ time: SchedTime) {
        guard let v = vcpus[id], isCurrent(v), time > .zero else { return }
        let room = clock.now - v.startTime
        guard room > .zero else { return }
        let moved = min(time, room)
        v.startTime += moved
        stolenSinceAccounting += moved.nanoseconds
    }

    /// Xen's `burn_credits`: charge elapsed time exactly, keeping the sub-credit remainder.
    private func burn(_ v: VCPU, now: SchedTime) {
        let delta = (now - v.startTime).nanoseconds
        guard delta > 0 else { return }
        let value = delta * Int64(Self.creditsPerMillisecond) + v.residual
        v.credit -= Int(value / 1_000_000)
        v.residual = value % 1_000_000
        v.startTime = now
    }

    /// `__runq_insert`: after every vCPU of equal or higher priority; a yielding vCPU goes one
    /// further back if the next one is a real (lower-priority) vCPU.
    private func runqueueInsert(_ v: VCPU, on p: PCPUID) {
        let n = p.rawValue
        var i = pcpu[n].runqueue.firstIndex { v.priority > $0.priority } ?? pcpu[n].runqueue.count
        if v.yielding && i < pcpu[n].runqueue.count { i += 1 }
        pcpu[n].runqueue.insert(v, at: i)
        v.onRunqueue = true
        v.processor = p
    }

    private func dequeue(_ v: VCPU) {
        let n = v.processor.rawValue
        if let i = pcpu[n].runqueue.firstIndex(where: { $0 === v }) { pcpu[n].runqueue.remove(at: i) }
        v.onRunqueue = false
    }

    /// `csched_unit_wake` (and the unpark/migrate paths, which never boost).
    private func enqueueAndTickle(_ v: VCPU, mayBoost: Bool) {
        guard v.runnable, !isCurrent(v), !v.onRunqueue else { return }
        if mayBoost && v.priority == .under && !v.noBoostOnWake { v.priority = .boost }
        v.noBoostOnWake = false
        if !v.masks.hard.contains(v.processor) { v.processor = pick(v) }
        runqueueInsert(v, on: v.processor)
        tickle(v)
    }

    /// `__runq_tickle`: poke its own pCPU if idle (or if nothing is idle and it outranks the
    /// running vCPU); otherwise wake one suitable idle pCPU (soft step, then hard step), which
    /// will steal it; failing that, preempt here and let the displaced vCPU move to an idler.
    private func tickle(_ v: VCPU) {
        let cpu = v.processor
        let cur = pcpu[cpu.rawValue].current
        let curPriority = cur?.priority ?? .idle
        var mask = PCPUSet()
        if v.pinned && idlers.contains(cpu) {
            mask.insert(cpu)
        } else if cur == nil || (idlers.isEmpty && v.priority > curPriority) {
            mask.insert(cpu)
        } else if !idlers.isEmpty {
            let steps = v.masks.steps
            for (i, step) in steps.enumerated() {
                let hardStep = i == steps.count - 1
                let suitable = step.intersection(idlers)
                if hardStep && suitable.isEmpty && v.priority > curPriority {
                    if let c = cur, c.masks.hard.intersects(idlers) { c.migratePending = true }
                    mask.insert(cpu)
                } else if !suitable.isEmpty {
                    if options.tickleOneIdlePCPU {
                        lastTickledPCPU = suitable.cycle(after: lastTickledPCPU) ?? lastTickledPCPU
                        mask.insert(lastTickledPCPU)
                    } else {
                        mask = mask.union(suitable)
                    }
                    // A tickled idler is no longer counted as idle, so it is not tickled twice.
                    idlers = idlers.subtracting(mask)
                }
                if !mask.isEmpty { break }
            }
        }
        pendingReschedule = pendingReschedule.union(mask)
    }

    /// `_csched_cpu_pick` on a flat topology: prefer the vCPU's own pCPU if it is (as good as)
    /// idle, else the next idle pCPU in the mask; soft-affine pCPUs first, then hard-affine.
    private func pick(_ v: VCPU) -> PCPUID {
        let steps = v.masks.steps
        var cpu = v.processor
        for (i, step) in steps.enumerated() {
            let softStep = i < steps.count - 1
            guard let start = step.testOrCycle(v.processor) else { continue }
            cpu = start
            var idle = idlers
            if isCurrent(v) && pcpu[v.processor.rawValue].runqueue.isEmpty { idle.insert(v.processor) }
            let candidates = step.intersection(idle)
            if !candidates.contains(cpu), let c = candidates.cycle(after: cpu) { cpu = c }
            if softStep && idle.contains(cpu) { break }
        }
        return cpu
    }

    /// `csched_load_balance` + `csched_runq_steal`: take the first queued vCPU of a busy peer
    /// that outranks what we would run, is not yielding, may run here and is not cache-hot.
    private func steal(for p: PCPUID, below priority: Priority, now: SchedTime) -> (VCPU, PCPUID)? {
        var workers = pcpus.subtracting(idlers)
        workers.remove(p)
        guard let first = workers.cycle(after: balanceBias) else { return nil }
        let hot = SchedTime.microseconds(Int64(migrationDelayMicroseconds))
        for softStep in [true, false] {
            var peer = first
            repeat {
                let pn = peer.rawValue
                let runnable = pcpu[pn].runqueue.count + (pcpu[pn].current == nil ? 0 : 1)
                if runnable > 1 {
                    for v in pcpu[pn].runqueue {
                        if v.priority <= priority { break }
                        if v.yielding { continue }
                        if migrationDelayMicroseconds > 0 && now - v.lastDescheduled < hot { continue }
                        let allowed: Bool
                        if softStep {
                            allowed = v.masks.effectiveSoft?.contains(p) ?? false
                        } else {
                            allowed = v.masks.hard.contains(p)
                        }
                        guard allowed else { continue }
                        dequeue(v)
                        v.processor = p
                        balanceBias = peer
                        return (v, peer)
                    }
                }
                peer = workers.cycle(after: peer) ?? first
            } while peer != first
        }
        return nil
    }

    /// `csched_tick` → `csched_unit_acct` for the running vCPU: end BOOST, burn credit, make it
    /// active (it starts earning), or see whether an idler would suit it better.
    private func tick(_ p: PCPUID, now: SchedTime) {
        let n = p.rawValue
        if let cur = pcpu[n].current {
            if cur.priority == .boost { cur.priority = .under }
            burn(cur, now: now)
            if !cur.active {
                startAccounting(cur)
            } else if cur.runnable && pick(cur) != p {
                cur.migratePending = true
                pendingReschedule.insert(p)
            }
        }
        if pcpu[n].sortEpochSeen != sortEpoch {
            pcpu[n].sortEpochSeen = sortEpoch
            // `csched_runq_sort`: UNDER-or-better ahead of OVER, order otherwise kept.
            let q = pcpu[n].runqueue
            pcpu[n].runqueue = q.filter { $0.priority >= .under } + q.filter { $0.priority < .under }
        }
    }

    private func startAccounting(_ v: VCPU) {
        v.active = true
        let d = v.domain
        d.activeCount += 1
        totalWeight += d.weight
        if d.activeCount == 1 { activeDomains.append(d) }
    }

    private func stopAccounting(_ v: VCPU) {
        v.active = false
        let d = v.domain
        d.activeCount -= 1
        totalWeight -= d.weight
        if d.activeCount == 0 { activeDomains.removeAll { $0 === d } }
    }

    private func park(_ v: VCPU) {
        v.parked = true
        if isCurrent(v) {
            pendingReschedule.insert(v.processor)
        } else if v.onRunqueue {
            dequeue(v)
        }
    }

    private func unpark(_ v: VCPU) {
        v.parked = false
        enqueueAndTickle(v, mayBoost: false)
    }

    /// `csched_acct`: share the pool's credit among active domains by weight × active vCPUs,
    /// bounded by one timeslice per vCPU and by the cap; set UNDER/OVER, park and unpark capped
    /// vCPUs, retire vCPUs that hoard more than a timeslice of credit.
    private func account() {
        defer { sortEpoch += 1 }
        // The pCPUs could run guest code for the period less what was stolen from them. A
        // runtime that comes back late runs several accountings at once, the first after all
        // the stealing: what one period cannot take off is taken off the next ones.
        let stolen = min(stolenSinceAccounting / 1_000_000 * Int64(Self.creditsPerMillisecond)
                         + stolenSinceAccounting % 1_000_000 * Int64(Self.creditsPerMillisecond) / 1_000_000,
                         Int64(poolCredit))
        stolenSinceAccounting -= stolen * 1_000_000 / Int64(Self.creditsPerMillisecond)
        let weightTotal = totalWeight
        guard weightTotal > 0, !activeDomains.isEmpty else { return }
        var creditTotal = poolCredit - Int(stolen)
        if creditBalance < 0 { creditTotal -= creditBalance }
        var weightLeft = weightTotal
        var newBalance = 0
        var creditExtra = false
        var capThreshold = 0
        for d in activeDomains {
            let a = d.activeCount
            guard a > 0 else { continue }
            weightLeft -= d.weight * a
            var peak = a * creditsPerTimeslice
            if creditBalance < 0 {
                peak += (-creditBalance * d.weight * a + weightTotal - 1) / weightTotal
            }
            if d.cap != 0 {
                let capCredits = (d.cap * creditsPerTimeslice + 99) / 100
                if capCredits < peak { peak = capCredits }
                capThreshold = (capCredits + a - 1) / a
            }
            var fair = (creditTotal * d.weight * a + weightTotal - 1) / weightTotal
            if fair < peak {
                creditExtra = true
            } else {
                if weightLeft != 0 {
                    creditTotal += ((fair - peak) * weightTotal + weightLeft - 1) / weightLeft
                }
                if creditExtra, let i = activeDomains.firstIndex(where: { $0 === d }) {
                    activeDomains.remove(at: i)
                    activeDomains.insert(d, at: 0)
                }
                fair = peak
            }
            fair = (fair + a - 1) / a
            for v in d.vcpus where v.active {
                v.credit += fair
                if v.credit < 0 {
                    v.priority = .over
                    if d.cap != 0 && v.credit < -capThreshold && !v.parked { park(v) }
                    if v.credit < -creditsPerTimeslice { v.credit = -creditsPerTimeslice }
                } else {
                    v.priority = .under
                    if v.parked { unpark(v) }
                    if v.credit > creditsPerTimeslice {
                        stopAccounting(v)
                        v.credit /= 2
                    }
                }
                newBalance += v.credit
            }
        }
        creditBalance = newBalance
    }
}
