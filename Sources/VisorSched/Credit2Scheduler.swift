// Credit2: Xen's default scheduler (xen/common/sched/credit2.c), rebuilt.
//
// Every vCPU holds credit, measured in nanoseconds of run time at the highest weight present in
// its runqueue. Running burns credit at `maxWeight / weight` credits per ns, so a vCPU of half
// the weight burns twice as fast; the runqueue is sorted by credit and the vCPU with the most
// runs. When the vCPU about to run has none left, a *credit reset* gives every vCPU of the
// runqueue +10 ms (clipped to 10.5 ms): an epoch. There is no BOOST: a vCPU that sleeps a lot
// simply keeps more credit than a hog and sorts ahead of it when it wakes. Runqueues are shared
// by groups of pCPUs (by default a socket, at most 16 pCPUs each), which makes balancing inside
// a group free; a small migration resistance keeps vCPUs where their cache is. A context-switch
// rate limit (1 ms) protects the running vCPU; caps are enforced with a per-domain budget
// replenished every 10 ms, and vCPUs that run out are parked until the next replenishment.
//
// Locking / ownership: Xen nests the private (pool) lock outside each runqueue lock, and a
// domain's budget lock inside the runqueue lock. Here the instance is owned by one caller that
// serialises every hook (see Scheduler.swift); `runqueues[i]` is what one Xen runqueue lock
// would cover.
//
// Simplifications: flat topology (one socket; no SMT, so "fully idle core" is just "idle");
// load is the instantaneous count of runnable vCPUs per runqueue, not the 1 s EWMA, and
// balancing at credit resets moves at most one queued vCPU when that evens per-pCPU load;
// placement of a new vCPU picks the least-loaded runqueue among those with soft-affine pCPUs,
// then hard-affine ones; no tasklets; no delayed runqueue add.

public final class Credit2Scheduler: Scheduler {
    // MARK: constants (Xen's CSCHED2_* names)

    /// Default and range of the weight (libxl).
    public static let defaultWeight = 256
    /// CSCHED2_CREDIT_INIT: credit given at creation and added at each reset (10 ms).
    public static let creditInitNanoseconds: Int64 = 10_000_000
    /// CSCHED2_CREDIT_MIN: the floor (−10 ms).
    public static let creditMinimumNanoseconds: Int64 = -10_000_000
    /// CSCHED2_CARRYOVER_MAX: credit kept across a reset beyond CREDIT_INIT (500 µs).
    public static let carryoverMaximumNanoseconds: Int64 = 500_000
    /// CSCHED2_MIN_TIMER / CSCHED2_MAX_TIMER: bounds of one run (500 µs, 10 ms).
    public static let minimumTimerMicroseconds = 500
    public static let maximumTimerMicroseconds = 10_000
    /// CSCHED2_MIGRATE_RESIST (boot `sched_credit2_migrate_resist`) and the compensation a
    /// vCPU pulled to another pCPU receives (µs of credit).
    public static let defaultMigrateResistMicroseconds = 500
    public static let migrateCompensationMicroseconds = 50
    /// CSCHED2_RATELIMIT_TICKLE_TOLERANCE (µs).
    public static let ratelimitTickleToleranceMicroseconds = 50
    /// CSCHED2_BDGT_REPL_PERIOD (boot `credit2_cap_period_ms`).
    public static let defaultCapPeriodMilliseconds = 10
    /// Boot `sched_credit2_max_cpus_runqueue`.
    public static let defaultMaxCPUsPerRunqueue = 16

    /// Boot `credit2_runqueue`: which pCPUs share a runqueue. With the flat topology modelled
    /// here, `core` is `cpu`, and `socket` and `node` mean groups of at most
    /// `maxCPUsPerRunqueue` consecutive pCPUs.
    public enum RunqueueArrangement: Sendable { case cpu, socket, all }

    public struct Options: Sendable {
        public var runqueue = RunqueueArrangement.socket
        public var maxCPUsPerRunqueue = Credit2Scheduler.defaultMaxCPUsPerRunqueue
        public var ratelimitMicroseconds = schedDefaultRatelimitMicroseconds
        public var migrateResistMicroseconds = Credit2Scheduler.defaultMigrateResistMicroseconds
        public var capPeriodMilliseconds = Credit2Scheduler.defaultCapPeriodMilliseconds
        public init() {}
    }

    // MARK: state

    final class VCPU {
        let id: VCPUID
        unowned let domain: Domain
        var masks: AffinityMasks
        var credit = Credit2Scheduler.creditInitNanoseconds
        var residual: Int64 = 0
        var startTime = SchedTime.zero
        var scheduledIn = SchedTime.zero
        var awake = false
        var parked = false
        var yielding = false
        var migratePending = false
        var queued = false
        var processor: PCPUID
        var runqueue: Int
        var tickledPCPU: PCPUID?
        /// Cap budget this vCPU holds, ns (may go negative by an overrun).
        var budget: Int64 = 0
        var runnable: Bool { awake && !parked }
        var pinned: Bool { masks.hard.count == 1 }
        init(id: VCPUID, domain: Domain, masks: AffinityMasks, processor: PCPUID, runqueue: Int) {
            self.id = id
            self.domain = domain
            self.masks = masks
            self.processor = processor
            self.runqueue = runqueue
        }
    }

    final class Domain {
        let id: DomainID
        var weight = Credit2Scheduler.defaultWeight
        var cap = 0
        var vcpus: [VCPU] = []
        var budget: Int64 = 0
        var totalBudget: Int64 = 0
        var budgetQuota: Int64 = 0
        var parkedVCPUs: [VCPU] = []
        var nextReplenishment: SchedTime?
        init(id: DomainID) { self.id = id }
        var maxVCPUs: Int { max(1, (vcpus.map(\.id.index).max() ?? 0) + 1) }
    }

    struct Runqueue {
        var pcpus: PCPUSet
        var queue: [VCPU] = []
        var members: [VCPU] = []
        var maxWeight = 1
        var idle: PCPUSet
        var tickled = PCPUSet()
        init(pcpus: PCPUSet) {
            self.pcpus = pcpus
            idle = pcpus
        }
        var load: Int { members.reduce(0) { $0 + ($1.runnable ? 1 : 0) } }
    }

    public let kind = SchedulerKind.credit2
    public let pcpus: PCPUSet
    public let clock: any SchedClock
    let options: Options

    var runqueues: [Runqueue] = []
    var runqueueOf: [Int]
    var current: [VCPU?]
    var domains: [DomainID: Domain] = [:]
    var vcpus: [VCPUID: VCPU] = [:]
    var pendingReschedule = PCPUSet()
    var ratelimitMicroseconds: Int
    var ratelimit: SchedTime { .microseconds(Int64(ratelimitMicroseconds)) }
    var migrateResist: Int64 { Int64(options.migrateResistMicroseconds) * 1_000 }
    var capPeriod: SchedTime { .milliseconds(Int64(options.capPeriodMilliseconds)) }
    static let idleCredit = creditMinimumNanoseconds - 1

    public init(pcpuCount: Int, clock: any SchedClock, options: Options = Options()) throws(SchedError) {
        try validatePoolSize(pcpuCount)
        self.clock = clock
        self.options = options
        pcpus = .first(pcpuCount)
        current = Array(repeating: nil, count: pcpuCount)
        var rl = options.ratelimitMicroseconds
        if (try? validateRatelimit(rl)) == nil { rl = schedDefaultRatelimitMicroseconds }
        ratelimitMicroseconds = rl
        let groups: Int
        switch options.runqueue {
        case .cpu: groups = pcpuCount
        case .all: groups = 1
        case .socket:
            let per = max(1, options.maxCPUsPerRunqueue)
            groups = (pcpuCount + per - 1) / per
        }
        runqueueOf = (0..<pcpuCount).map { $0 * groups / pcpuCount }
        for g in 0..<groups {
            runqueues.append(Runqueue(pcpus: PCPUSet((0..<pcpuCount).filter { runqueueOf[$0] == g }.map(PCPUID.init(rawValue:)))))
        }
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
        let v = VCPU(id: id, domain: d, masks: masks, processor: first, runqueue: runqueueOf[first.rawValue])
        v.startTime = clock.now
        d.vcpus.append(v)
        vcpus[id] = v
        runqueues[v.runqueue].members.append(v)
        place(v)
        updateMaxWeight()
        if d.cap != 0 { updateQuota(d) }
    }

    public func remove(_ id: VCPUID) throws(SchedError) {
        guard let v = vcpus[id] else { throw .unknownVCPU(id) }
        if isCurrent(v) {
            current[v.processor.rawValue] = nil
            pendingReschedule.insert(v.processor)
        }
        dequeue(v)
        runqueues[v.runqueue].members.removeAll { $0 === v }
        v.domain.parkedVCPUs.removeAll { $0 === v }
        v.domain.vcpus.removeAll { $0 === v }
        vcpus[id] = nil
        updateMaxWeight()
    }

    // MARK: sleep, wake, yield, affinity

    public func sleep(_ id: VCPUID) {
        let v = vcpu(id)
        v.awake = false
        if isCurrent(v) {
            pendingReschedule.insert(v.processor)
        } else if v.queued {
            dequeue(v)
        }
    }

    public func wake(_ id: VCPUID) {
        let v = vcpu(id)
        v.awake = true
        enqueueAndTickle(v)
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
        v.masks = masks
        if isCurrent(v) {
            v.migratePending = true
            pendingReschedule.insert(v.processor)
        } else {
            let wasQueued = v.queued
            dequeue(v)
            place(v)
            if wasQueued { enqueueAndTickle(v) }
        }
    }

    public func pickPCPU(for id: VCPUID) -> PCPUID { pick(vcpu(id)).1 }

    // MARK: scheduling

    public func doSchedule(pcpu p: PCPUID) -> SchedDecision {
        let now = clock.now
        let n = p.rawValue
        let r = runqueueOf[n]
        // This call is the reschedule; requests for p raised while deciding are moot.
        defer { pendingReschedule.remove(p) }
        runqueues[r].tickled.remove(p)
        let cur = current[n]
        if let cur {
            burn(cur, now: now)
            if cur.domain.cap != 0 && cur.budget <= 0 && cur.runnable && !grabBudget(cur) { park(cur) }
        }

        // runq_candidate
        var next: VCPU?
        var reason = SchedDecision.Reason.runqueue
        var skipped = 0
        let yielding = cur?.yielding ?? false
        cur?.yielding = false
        if let cur, !yielding, ratelimitMicroseconds > 0, cur.runnable, !cur.migratePending,
           cur.masks.hard.contains(p), now - cur.scheduledIn < ratelimit {
            next = cur
            reason = .ratelimit
        } else {
            var fallback: VCPU?
            if let cur, cur.runnable, !cur.migratePending, cur.masks.hard.contains(p) {
                var softPreempt = false
                if let soft = cur.masks.effectiveSoft, !soft.contains(p) {
                    softPreempt = !soft.intersection(runqueues[r].idle).subtracting(runqueues[r].tickled).isEmpty
                }
                if !softPreempt { fallback = cur }
            }
            next = fallback
            let fallbackCredit = fallback?.credit ?? Self.idleCredit
            var i = 0
            while i < runqueues[r].queue.count {
                let v = runqueues[r].queue[i]
                i += 1
                if !v.masks.hard.contains(p) { skipped += 1; continue }
                if let t = v.tickledPCPU, t != p, runqueues[r].tickled.contains(t) { skipped += 1; continue }
                if v.processor != p && fallbackCredit + migrateResist > v.credit { skipped += 1; continue }
                if yielding || v.credit > fallbackCredit {
                    if v.domain.cap == 0 || grabBudget(v) {
                        next = v
                    } else {
                        park(v)
                    }
                }
                break
            }
        }

        current[n] = next
        if let cur, cur !== next {
            if cur.runnable {
                if cur.migratePending {
                    cur.migratePending = false
                    place(cur)
                    enqueueAndTickle(cur)
                } else {
                    enqueue(cur)
                }
            }
            if cur.domain.cap != 0 { returnBudget(cur) }
        }
        cur?.migratePending = false
        guard let chosen = next else {
            runqueues[r].idle.insert(p)
            return .idle
        }
        var migrated = false
        if chosen !== cur { dequeue(chosen) }
        runqueues[r].idle.remove(p)
        if skipped == 0 && chosen.credit <= 0 {
            resetCredit(r, now: now, chosen: chosen)
            balanceLoad(from: r)
        }
        chosen.startTime = now
        chosen.tickledPCPU = nil
        if chosen.processor != p {
            chosen.credit += Int64(Self.migrateCompensationMicroseconds) * 1_000
            chosen.processor = p
            migrated = true
        }
        if chosen !== cur { chosen.scheduledIn = now }
        return SchedDecision(vcpu: chosen.id, timeslice: runtime(r, chosen, continuing: chosen === cur, now: now),
                             reason: reason, migrated: migrated)
    }

    public var nextTimerDeadline: SchedTime? {
        var t: SchedTime?
        for d in domains.values { if let x = d.nextReplenishment, t == nil || x < t! { t = x } }
        return t
    }

    /// `replenish_domain_budget`: refill each capped domain whose period ended, unpark its vCPUs.
    public func runTimers() {
        let now = clock.now
        for d in domains.values.sorted(by: { $0.id < $1.id }) {
            guard let due = d.nextReplenishment, due <= now else { continue }
            d.budget = min(d.budget + d.totalBudget, d.totalBudget)
            var next = due + capPeriod
            if next <= now {
                d.budget = d.totalBudget
                let missed = (now - due).nanoseconds / capPeriod.nanoseconds + 1
                next = due + capPeriod * missed
            }
            d.nextReplenishment = next
            unparkAll(d)
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

    /// libxl `sched_credit2_domain_set` (weight 1 … 65535) and the hypervisor's cap check
    /// (cap ≤ 100 × number of vCPUs).
    public func adjust(domain: DomainID, _ params: DomainSchedParams) throws(SchedError) {
        guard let d = domains[domain] else { throw .unknownDomain(domain) }
        try params.validateShares(scheduler: kind.name, maxVCPUs: d.maxVCPUs)
        let now = clock.now
        if let w = params.weight {
            for v in d.vcpus where isCurrent(v) { burn(v, now: now) }
            d.weight = w
            updateMaxWeight()
        }
        if let c = params.cap, c != d.cap {
            let wasCapped = d.cap != 0
            d.cap = c
            if c == 0 {
                d.nextReplenishment = nil
                for v in d.vcpus { v.budget = 0 }
                unparkAll(d)
            } else {
                updateQuota(d)
                if !wasCapped {
                    d.budget = d.totalBudget
                    d.nextReplenishment = now + capPeriod
                    for v in d.vcpus { v.budget = 0 }
                }
            }
        }
    }

    public func vcpuParameters(_ id: VCPUID) throws(SchedError) -> DomainSchedParams {
        guard let v = vcpus[id] else { throw .unknownVCPU(id) }
        return try domainParameters(v.domain.id)
    }

    public func adjust(vcpu: VCPUID, _ params: DomainSchedParams) throws(SchedError) {
        throw .unsupportedParameter(scheduler: kind.name, parameter: "per-vCPU parameters")
    }

    public var globalParameters: GlobalSchedParams { GlobalSchedParams(ratelimitMicroseconds: ratelimitMicroseconds) }

    /// `xl sched-credit2 -s -r`: only the rate limit (0 or 100 … 500000 µs).
    public func adjustGlobal(_ params: GlobalSchedParams) throws(SchedError) {
        if params.timesliceMilliseconds != nil { throw .unsupportedParameter(scheduler: kind.name, parameter: "tslice") }
        if params.migrationDelayMicroseconds != nil {
            throw .unsupportedParameter(scheduler: kind.name, parameter: "migration delay")
        }
        if let rl = params.ratelimitMicroseconds {
            try validateRatelimit(rl)
            ratelimitMicroseconds = rl
        }
    }

    public func dump() -> String {
        var out = "scheduler: credit2 (id \(kind.rawValue)), \(current.count) pCPUs, ratelimit = \(ratelimitMicroseconds)us\n"
        for (i, rq) in runqueues.enumerated() {
            out += "  runqueue \(i): cpus=\(rq.pcpus) max_weight=\(rq.maxWeight) idle=\(rq.idle) tickled=\(rq.tickled)\n"
            out += "    queue: \(rq.queue.map(describe).joined(separator: ", "))\n"
        }
        for (n, c) in current.enumerated() { out += "  CPU[\(n)] curr=\(c.map(describe) ?? "idle")\n" }
        for d in domains.values.sorted(by: { $0.id < $1.id }) {
            out += "  \(d.id): weight=\(d.weight) cap=\(d.cap)\(d.cap != 0 ? " budget=\(d.budget)ns" : "")\n"
        }
        return out
    }

    // MARK: inspection

    func credit(of id: VCPUID) -> Int64 { vcpu(id).credit }
    /// A capped domain's cap budget left in this period, with what its vCPUs hold of it.
    func budget(of domain: DomainID) -> Int64? {
        domains[domain].map { d in d.budget + d.vcpus.reduce(0) { $0 + $1.budget } }
    }
    func isParked(_ id: VCPUID) -> Bool { vcpu(id).parked }
    var runqueueCount: Int { runqueues.count }

    // MARK: internals

    private func describe(_ v: VCPU) -> String {
        "\(v.id)[cr=\(v.credit / 1_000)us\(v.parked ? " parked" : "")]"
    }

    private func vcpu(_ id: VCPUID) -> VCPU {
        guard let v = vcpus[id] else { preconditionFailure("credit2: unknown vCPU \(id)") }
        return v
    }

    private func isCurrent(_ v: VCPU) -> Bool { current[v.processor.rawValue] === v }

    private func updateMaxWeight() {
        for i in runqueues.indices {
            runqueues[i].maxWeight = max(1, runqueues[i].members.map(\.domain.weight).max() ?? 1)
        }
    }

    private func updateQuota(_ d: Domain) {
        d.totalBudget = capPeriod.nanoseconds * Int64(d.cap) / 100
        d.budgetQuota = max(d.totalBudget / Int64(max(1, d.vcpus.count)), Int64(Self.minimumTimerMicroseconds) * 1_000)
    }

    /// Steal time: credit and cap budget are burnt from later on (see the protocol), so the
    /// next `burn` charges only what the vCPU ran.
    public func refund(_ id: VCPUID, _ time: SchedTime) {
        guard let v = vcpus[id], isCurrent(v), time > .zero else { return }
        let room = clock.now - v.startTime
        if room > .zero { v.startTime += min(time, room) }
    }

    /// `burn_credits`: credit falls at maxWeight / weight per ns; the cap budget at 1 per ns.
    private func burn(_ v: VCPU, now: SchedTime) {
        let delta = (now - v.startTime).nanoseconds
        guard delta > 0 else {
            v.startTime = now
            return
        }
        let value = delta * Int64(runqueues[v.runqueue].maxWeight) + v.residual
        let weight = Int64(v.domain.weight)
        v.credit -= value / weight
        v.residual = value % weight
        if v.credit < Self.creditMinimumNanoseconds { v.credit = Self.creditMinimumNanoseconds }
        v.startTime = now
        if v.domain.cap != 0 { v.budget -= delta }
    }

    private func creditToTime(_ credit: Int64, _ v: VCPU) -> Int64 {
        credit * Int64(v.domain.weight) / Int64(runqueues[v.runqueue].maxWeight)
    }

    /// `csched2_runtime`: until its credit reaches zero or that of the next waiter, within
    /// [max(MIN_TIMER, rate limit left), MAX_TIMER], and never past its cap budget.
    private func runtime(_ r: Int, _ v: VCPU, continuing: Bool, now: SchedTime) -> SchedTime {
        var minimum = Int64(Self.minimumTimerMicroseconds) * 1_000
        if ratelimitMicroseconds > 0 {
            let left = continuing ? (v.scheduledIn + ratelimit - now).nanoseconds : ratelimit.nanoseconds
            minimum = max(minimum, left)
        }
        var credit = v.credit
        if let waiter = runqueues[r].queue.first, waiter.credit > 0 { credit = v.credit - waiter.credit }
        var time: Int64
        if credit <= 0 {
            time = minimum
        } else {
            time = min(max(creditToTime(credit, v), minimum), Int64(Self.maximumTimerMicroseconds) * 1_000)
        }
        if v.domain.cap != 0 { time = min(time, max(v.budget, 1)) }
        return SchedTime(nanoseconds: max(time, 1))
    }

    /// `reset_credit`: everyone in the runqueue gets CREDIT_INIT (more if the chosen vCPU is
    /// deep in debt), clipped to CREDIT_INIT + CARRYOVER_MAX.
    private func resetCredit(_ r: Int, now: SchedTime, chosen: VCPU) {
        var m: Int64 = 1
        if chosen.credit < -Self.creditInitNanoseconds { m += -chosen.credit / Self.creditInitNanoseconds }
        if chosen.credit == Self.creditMinimumNanoseconds { m = 2 }
        for v in runqueues[r].members {
            if isCurrent(v) && v !== chosen { burn(v, now: now) }
            v.credit = min(v.credit + m * Self.creditInitNanoseconds,
                           Self.creditInitNanoseconds + Self.carryoverMaximumNanoseconds)
            v.startTime = now
        }
    }

    /// `runq_insert`: sorted by credit, highest first, after equals.
    private func enqueue(_ v: VCPU) {
        guard !v.queued else { return }
        let r = v.runqueue
        let i = runqueues[r].queue.firstIndex { v.credit > $0.credit } ?? runqueues[r].queue.count
        runqueues[r].queue.insert(v, at: i)
        v.queued = true
    }

    private func dequeue(_ v: VCPU) {
        guard v.queued else { return }
        if let i = runqueues[v.runqueue].queue.firstIndex(where: { $0 === v }) { runqueues[v.runqueue].queue.remove(at: i) }
        v.queued = false
    }

    private func enqueueAndTickle(_ v: VCPU) {
        guard v.runnable, !isCurrent(v), !v.queued else { return }
        if !v.masks.hard.contains(v.processor) { place(v) }
        enqueue(v)
        tickle(v)
    }

    /// Moves the vCPU to the runqueue and pCPU `pick` chooses.
    private func place(_ v: VCPU) {
        let (r, p) = pick(v)
        if r != v.runqueue {
            runqueues[v.runqueue].members.removeAll { $0 === v }
            runqueues[r].members.append(v)
            v.runqueue = r
            updateMaxWeight()
        }
        v.processor = p
    }

    /// `csched2_res_pick`, simplified: stay if the current runqueue still has a pCPU it may use,
    /// else the least-loaded runqueue with soft-affine pCPUs, then hard-affine ones; inside it,
    /// the current pCPU if allowed, else an idle allowed pCPU, else the first allowed.
    private func pick(_ v: VCPU) -> (Int, PCPUID) {
        var best: Int?
        if runqueues[v.runqueue].pcpus.intersects(v.masks.hard) {
            best = v.runqueue
        } else {
            for step in v.masks.steps {
                for (i, rq) in runqueues.enumerated() where rq.pcpus.intersects(step) {
                    if best == nil || rq.load < runqueues[best!].load { best = i }
                }
                if best != nil { break }
            }
        }
        let r = best ?? v.runqueue
        let allowed = runqueues[r].pcpus.intersection(v.masks.hard)
        if allowed.contains(v.processor) { return (r, v.processor) }
        if let idle = allowed.intersection(runqueues[r].idle).first { return (r, idle) }
        return (r, allowed.first ?? v.processor)
    }

    /// `runq_tickle`: an idle, not yet tickled pCPU (its own first; soft step, then hard); else
    /// the busy pCPU where preempting gains the most credit, if its vCPU ran past the rate limit.
    private func tickle(_ v: VCPU) {
        let r = v.runqueue
        let now = clock.now
        let cpu = v.processor
        let rq = runqueues[r]
        if v.pinned && rq.idle.contains(cpu) && !rq.tickled.contains(cpu) { return poke(cpu, for: v) }
        for step in v.masks.steps {
            let mask = rq.idle.subtracting(rq.tickled).intersection(step)
            if let i = mask.testOrCycle(cpu) { return poke(i, for: v) }
        }
        let busy = rq.pcpus.subtracting(rq.idle).subtracting(rq.tickled).intersection(v.masks.hard)
        var best: PCPUID?
        var bestScore: Int64 = 0
        if busy.contains(cpu) {
            let s = score(v, cpu, now: now)
            if s > bestScore {
                bestScore = s
                best = cpu
                if v.masks.effectiveSoft?.contains(cpu) ?? false { return poke(cpu, for: v) }
            }
        }
        for i in busy where i != cpu {
            let s = score(v, i, now: now)
            if s > bestScore {
                bestScore = s
                best = i
            }
        }
        if let best { poke(best, for: v) }
    }

    /// `tickle_score`: how much better the new vCPU is than the one running on `p`.
    private func score(_ new: VCPU, _ p: PCPUID, now: SchedTime) -> Int64 {
        guard let cur = current[p.rawValue] else { return -1 }
        let tolerance = SchedTime.microseconds(Int64(Self.ratelimitTickleToleranceMicroseconds))
        if ratelimit > tolerance && now - cur.scheduledIn <= ratelimit - tolerance { return -1 }
        burn(cur, now: now)
        var s = new.credit - cur.credit
        if new.processor != p { s -= migrateResist }
        if s > 0 {
            if new.masks.soft.contains(p) { s += Self.creditInitNanoseconds }
            if !cur.masks.soft.contains(p) { s += Self.creditInitNanoseconds }
        }
        return s
    }

    private func poke(_ p: PCPUID, for v: VCPU) {
        runqueues[runqueueOf[p.rawValue]].tickled.insert(p)
        pendingReschedule.insert(p)
        v.tickledPCPU = p
    }

    /// `balance_load`, simplified: move one queued vCPU between this runqueue and the one with
    /// the most different per-pCPU load when that makes the two closer.
    private func balanceLoad(from r: Int) {
        guard runqueues.count > 1 else { return }
        func perCPU(_ i: Int, _ delta: Int) -> Double {
            Double(runqueues[i].load + delta) / Double(runqueues[i].pcpus.count)
        }
        var other: Int?
        var widest = 0.0
        for i in runqueues.indices where i != r {
            let gap = abs(perCPU(r, 0) - perCPU(i, 0))
            if gap > widest { widest = gap; other = i }
        }
        guard let o = other else { return }
        let (from, to) = perCPU(r, 0) > perCPU(o, 0) ? (r, o) : (o, r)
        guard abs(perCPU(from, -1) - perCPU(to, 1)) < abs(perCPU(from, 0) - perCPU(to, 0)) else { return }
        guard let v = runqueues[from].queue.first(where: { $0.masks.hard.intersects(runqueues[to].pcpus) }) else { return }
        dequeue(v)
        runqueues[from].members.removeAll { $0 === v }
        runqueues[to].members.append(v)
        v.runqueue = to
        let allowed = runqueues[to].pcpus.intersection(v.masks.hard)
        v.processor = allowed.intersection(runqueues[to].idle).first ?? allowed.first!
        updateMaxWeight()
        enqueue(v)
        tickle(v)
    }

    // MARK: caps

    /// `unit_grab_budget`: take a quota from the domain's pool; false when the pool is empty.
    private func grabBudget(_ v: VCPU) -> Bool {
        if v.budget > 0 { return true }
        let d = v.domain
        d.budget += v.budget
        if d.budget > 0 {
            let b = min(d.budgetQuota, d.budget)
            v.budget = b
            d.budget -= b
        } else {
            v.budget = 0
        }
        return v.budget > 0
    }

    /// `unit_return_budget`: give back what is left (or charge the overrun) when descheduled.
    private func returnBudget(_ v: VCPU) {
        let d = v.domain
        d.budget += v.budget
        v.budget = 0
        if d.budget > 0 { unparkAll(d) }
    }

    private func park(_ v: VCPU) {
        guard !v.parked else { return }
        v.parked = true
        dequeue(v)
        v.domain.parkedVCPUs.append(v)
        if isCurrent(v) { pendingReschedule.insert(v.processor) }
    }

    private func unparkAll(_ d: Domain) {
        let parked = d.parkedVCPUs
        d.parkedVCPUs = []
        for v in parked {
            v.parked = false
            enqueueAndTickle(v)
        }
    }
}
