// Null: static partitioning (xen/common/sched/null.c), rebuilt.
//
// Each vCPU is given a pCPU of its own, and that pCPU runs nothing else: no timeslice, no
// timer, no preemption. A blocked vCPU leaves its pCPU idle rather than lending it out. When
// there are more vCPUs than free pCPUs the extra ones wait, never running, in a FIFO wait queue,
// and take a pCPU as soon as one is freed (vCPU removed, affinity changed). You want this when
// you have no more vCPUs than pCPUs and care about determinism and zero scheduling overhead
// (embedded, HPC, a dedicated cpupool): the scheduler is then never invoked on the hot path.
// Assignment honours soft affinity first, then hard affinity.
//
// Locking / ownership: Xen guards the free-pCPU mask and the wait queue with one private lock,
// taken inside the pCPU lock. Here the instance is owned by one caller that serialises every
// hook (see Scheduler.swift).
//
// Simplifications: pCPUs never go offline and none are added, so only removal and affinity
// changes free a pCPU.

public final class NullScheduler: Scheduler {
    final class VCPU {
        let id: VCPUID
        var masks: AffinityMasks
        var awake = false
        var assigned: PCPUID?
        var waiting = false
        init(id: VCPUID, masks: AffinityMasks) {
            self.id = id
            self.masks = masks
        }
    }

    public let kind = SchedulerKind.null
    public let pcpus: PCPUSet
    public let clock: any SchedClock

    var vcpus: [VCPUID: VCPU] = [:]
    var domains: Set<DomainID> = []
    var owner: [VCPU?]
    var current: [VCPU?]
    var free: PCPUSet
    var waitqueue: [VCPU] = []
    var pendingReschedule = PCPUSet()

    public init(pcpuCount: Int, clock: any SchedClock) throws(SchedError) {
        try validatePoolSize(pcpuCount)
        self.clock = clock
        pcpus = .first(pcpuCount)
        owner = Array(repeating: nil, count: pcpuCount)
        current = Array(repeating: nil, count: pcpuCount)
        free = pcpus
    }

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
        guard !masks.hard.isEmpty else { throw .emptyHardAffinity(id) }
        let v = VCPU(id: id, masks: masks)
        vcpus[id] = v
        place(v)
    }

    public func remove(_ id: VCPUID) throws(SchedError) {
        guard let v = vcpus[id] else { throw .unknownVCPU(id) }
        if let p = v.assigned {
            if current[p.rawValue] === v {
                current[p.rawValue] = nil
                pendingReschedule.insert(p)
            }
            unassign(v)
        }
        if v.waiting { waitqueue.removeAll { $0 === v } }
        vcpus[id] = nil
    }

    public func sleep(_ id: VCPUID) {
        let v = vcpu(id)
        v.awake = false
        if let p = v.assigned, current[p.rawValue] === v { pendingReschedule.insert(p) }
    }

    public func wake(_ id: VCPUID) {
        let v = vcpu(id)
        v.awake = true
        if let p = v.assigned {
            if current[p.rawValue] !== v { pendingReschedule.insert(p) }
        } else if !v.waiting {
            place(v)
        }
    }

    /// Nothing else may run on the pCPU, so yielding changes nothing (Xen leaves `yield` NULL).
    public func yield(_ id: VCPUID) { _ = vcpu(id) }

    public func setAffinity(_ id: VCPUID, _ affinity: Affinity) throws(SchedError) {
        guard let v = vcpus[id] else { throw .unknownVCPU(id) }
        let masks = AffinityMasks(affinity, pool: pcpus)
        guard !masks.hard.isEmpty else { throw .emptyHardAffinity(id) }
        v.masks = masks
        if let p = v.assigned, !masks.hard.contains(p) {
            if current[p.rawValue] === v {
                current[p.rawValue] = nil
                pendingReschedule.insert(p)
            }
            unassign(v)
            place(v)
        } else if v.waiting {
            waitqueue.removeAll { $0 === v }
            v.waiting = false
            place(v)
        }
    }

    /// `null_res_pick`: its own pCPU if it has one, else a free one (soft, then hard affinity),
    /// else any pCPU it may run on (where it would wait).
    public func pickPCPU(for id: VCPUID) -> PCPUID {
        let v = vcpu(id)
        if let p = v.assigned { return p }
        return freePCPU(for: v) ?? v.masks.hard.first!
    }

    public func doSchedule(pcpu p: PCPUID) -> SchedDecision {
        let n = p.rawValue
        pendingReschedule.remove(p)
        if owner[n] == nil { takeWaiter(for: p) }
        if let v = owner[n], v.awake {
            current[n] = v
            return SchedDecision(vcpu: v.id, timeslice: nil, reason: .assigned)
        }
        current[n] = nil
        return .idle
    }

    public var nextTimerDeadline: SchedTime? { nil }
    public func runTimers() {}
    /// Null charges nothing: a vCPU owns its pCPU whatever it ran, so there is nothing to refund.
    public func refund(_ vcpu: VCPUID, _ time: SchedTime) {}

    public func takeRescheduleRequests() -> PCPUSet {
        defer { pendingReschedule = PCPUSet() }
        return pendingReschedule
    }

    public func domainParameters(_ domain: DomainID) throws(SchedError) -> DomainSchedParams {
        guard domains.contains(domain) else { throw .unknownDomain(domain) }
        return DomainSchedParams()
    }

    /// Null has no per-domain parameters; any field is an error.
    public func adjust(domain: DomainID, _ params: DomainSchedParams) throws(SchedError) {
        guard domains.contains(domain) else { throw .unknownDomain(domain) }
        try params.rejectShareFields(scheduler: kind.name)
        try params.rejectRealTimeFields(scheduler: kind.name)
    }

    public func vcpuParameters(_ id: VCPUID) throws(SchedError) -> DomainSchedParams {
        guard vcpus[id] != nil else { throw .unknownVCPU(id) }
        return DomainSchedParams()
    }

    public func adjust(vcpu: VCPUID, _ params: DomainSchedParams) throws(SchedError) {
        throw .unsupportedParameter(scheduler: kind.name, parameter: "per-vCPU parameters")
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
        var out = "scheduler: null (id \(kind.rawValue)), \(owner.count) pCPUs, free = \(free)\n"
        for (n, v) in owner.enumerated() {
            out += "  CPU[\(n)] assigned=\(v.map(\.id.description) ?? "none") running=\(current[n].map(\.id.description) ?? "idle")\n"
        }
        for v in waitqueue { out += "  WARNING: \(v.id) not assigned to any CPU!\n" }
        return out
    }

    // MARK: inspection

    func assignment(of id: VCPUID) -> PCPUID? { vcpu(id).assigned }
    var waiting: [VCPUID] { waitqueue.map(\.id) }

    // MARK: internals

    private func vcpu(_ id: VCPUID) -> VCPU {
        guard let v = vcpus[id] else { preconditionFailure("null: unknown vCPU \(id)") }
        return v
    }

    private func freePCPU(for v: VCPU) -> PCPUID? {
        for step in v.masks.steps {
            if let p = step.intersection(free).first { return p }
        }
        return nil
    }

    /// Gives the vCPU a free pCPU, or queues it (Xen logs a warning in that case).
    private func place(_ v: VCPU) {
        if let p = freePCPU(for: v) {
            assign(v, to: p)
        } else {
            v.waiting = true
            waitqueue.append(v)
        }
    }

    private func assign(_ v: VCPU, to p: PCPUID) {
        owner[p.rawValue] = v
        free.remove(p)
        v.assigned = p
        v.waiting = false
        pendingReschedule.insert(p)
    }

    /// `unit_deassign`: free the pCPU and hand it to the first waiter that fits.
    private func unassign(_ v: VCPU) {
        guard let p = v.assigned else { return }
        owner[p.rawValue] = nil
        free.insert(p)
        v.assigned = nil
        takeWaiter(for: p)
    }

    private func takeWaiter(for p: PCPUID) {
        for soft in [true, false] {
            for (i, w) in waitqueue.enumerated() {
                let fits = soft ? (w.masks.effectiveSoft?.contains(p) ?? false) : w.masks.hard.contains(p)
                if fits {
                    waitqueue.remove(at: i)
                    assign(w, to: p)
                    return
                }
            }
        }
    }
}
