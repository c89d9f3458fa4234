// The scheduler interface: Xen's `struct sched_ops` (xen/common/sched/private.h) as a protocol.
//
// A scheduler instance owns one pool of pCPUs (a cpupool) and decides, each time the runtime
// asks for a pCPU, which vCPU runs there next and for how long. It is pure: no threads, no
// timers of its own, no engines. Time comes from an injected `SchedClock`; every hook reads it.
//
// How the runtime drives it (the simulator in `SchedSimulator.swift` does exactly this):
//   * vCPU blocks / unblocks / yields  → `sleep` / `wake` / `yield`;
//   * a pCPU's slice ends, or the pCPU is in `takeRescheduleRequests()` (Xen's "tickle",
//     SCHEDULE_SOFTIRQ) → `doSchedule(pcpu:)`, then run `decision.vcpu` (or idle) for at most
//     `decision.timeslice` (nil: until asked again);
//   * `nextTimerDeadline` passes → `runTimers()` (credit's ticks and accounting, RTDS
//     replenishments, credit2 cap replenishments), then serve reschedule requests again.
// The time a vCPU actually ran is accounted from the clock, as Xen's `burn_credits` does: at
// every `doSchedule`, tick and `sleep`, the running vCPU is charged `now − start`. So there is
// no separate "account" call; a runtime whose vCPU overran its slice is charged the overrun.
// A runtime whose vCPUs share the host's CPUs with other work (Visor's pool: a vCPU is a host
// thread) tells the policy, before each of those calls, how much of the time since the last one
// its running vCPU did not really run (`refund`), so a vCPU is charged the CPU time it got.
//
// Ownership: not thread-safe. One instance is owned by whoever serialises the pool (in Xen,
// the scheduler's private lock, always taken before a runqueue lock); the runtime must hold its
// own lock around every call. Nothing here is `Sendable`.

/// Xen's scheduler ids (`XEN_SCHEDULER_*` in public/domctl.h) and `sched=` names.
public enum SchedulerKind: Int, Sendable, CaseIterable, CustomStringConvertible {
    case credit = 5, credit2 = 6, arinc653 = 7, rtds = 8, null = 9

    /// The boot option spelling (`sched=credit2`).
    public var name: String {
        switch self {
        case .credit: "credit"
        case .credit2: "credit2"
        case .arinc653: "arinc653"
        case .rtds: "rtds"
        case .null: "null"
        }
    }
    public var description: String { name }
    public init(name: String) throws(SchedError) {
        guard let k = SchedulerKind.allCases.first(where: { $0.name == name }) else { throw .unknownScheduler(name) }
        self = k
    }
    /// Xen's compiled-in default (Kconfig SCHED_CREDIT2_DEFAULT).
    public static let defaultKind = SchedulerKind.credit2
}

/// Global rate limit on context switches (`sched_ratelimit_us`), shared by credit and credit2.
public let schedDefaultRatelimitMicroseconds = 1_000
/// XEN_SYSCTL_SCHED_RATELIMIT_MIN / _MAX (µs); 0 disables the rate limit.
public let schedRatelimitMinimumMicroseconds = 100
public let schedRatelimitMaximumMicroseconds = 500_000

/// libxl's `sched_ratelimit_check`: 0 or 100 … 500000 µs.
func validateRatelimit(_ us: Int) throws(SchedError) {
    if us != 0 && (us < schedRatelimitMinimumMicroseconds || us > schedRatelimitMaximumMicroseconds) {
        throw .ratelimitOutOfRange(microseconds: us)
    }
}

/// What `doSchedule` decided for one pCPU (Xen's `sched_unit` + `next_time` + `migrated`).
public struct SchedDecision: Equatable, Sendable, CustomStringConvertible {
    public enum Reason: Equatable, Sendable {
        /// Nothing runnable here: run the idle vCPU.
        case idle
        /// Head of this pCPU's (or the shared) runqueue, possibly the current vCPU again.
        case runqueue
        /// The current vCPU keeps running because it has run less than the rate limit.
        case ratelimit
        /// Taken from another pCPU's runqueue (credit's work stealing).
        case stolen(from: PCPUID)
        /// The current vCPU still outranks everything queued (RTDS).
        case keptCurrent
        /// The vCPU statically assigned to this pCPU (null).
        case assigned
    }
    /// The vCPU to run, `nil` for idle.
    public var vcpu: VCPUID?
    /// How long before the scheduler must be asked again; `nil`: no timer (Xen's negative
    /// `next_time`), wait for a reschedule request.
    public var timeslice: SchedTime?
    public var reason: Reason
    /// The vCPU last ran (or was queued) on another pCPU.
    public var migrated: Bool

    public init(vcpu: VCPUID?, timeslice: SchedTime?, reason: Reason, migrated: Bool = false) {
        self.vcpu = vcpu
        self.timeslice = timeslice
        self.reason = reason
        self.migrated = migrated
    }
    public static let idle = SchedDecision(vcpu: nil, timeslice: nil, reason: .idle)

    public var description: String {
        "\(vcpu.map(\.description) ?? "idle") for \(timeslice.map(\.description) ?? "∞") (\(reason)\(migrated ? ", migrated" : ""))"
    }
}

/// Per-domain parameters (`xl sched-credit -d`, `sched-credit2 -d`, `sched-rtds -d`), in the
/// toolstack's units. `nil` means "leave unchanged" on set, "not applicable" on get.
public struct DomainSchedParams: Equatable, Sendable {
    /// credit, credit2: relative weight, 1 … 65535 (default 256).
    public var weight: Int?
    /// credit, credit2: % of one pCPU for the whole domain, 0 = uncapped.
    public var cap: Int?
    /// rtds: period in µs.
    public var periodMicroseconds: Int?
    /// rtds: budget in µs.
    public var budgetMicroseconds: Int?
    /// rtds: may run past its budget when the pool has idle time.
    public var extratime: Bool?

    public init(weight: Int? = nil, cap: Int? = nil, periodMicroseconds: Int? = nil,
                budgetMicroseconds: Int? = nil, extratime: Bool? = nil) {
        self.weight = weight
        self.cap = cap
        self.periodMicroseconds = periodMicroseconds
        self.budgetMicroseconds = budgetMicroseconds
        self.extratime = extratime
    }

    /// Refuses RTDS's fields (period, budget, extratime) for a policy that has none of them.
    func rejectRealTimeFields(scheduler: String) throws(SchedError) {
        if periodMicroseconds != nil { throw .unsupportedParameter(scheduler: scheduler, parameter: "period") }
        if budgetMicroseconds != nil { throw .unsupportedParameter(scheduler: scheduler, parameter: "budget") }
        if extratime != nil { throw .unsupportedParameter(scheduler: scheduler, parameter: "extratime") }
    }

    /// Refuses the credit schedulers' fields (weight, cap) for a policy that has neither.
    func rejectShareFields(scheduler: String) throws(SchedError) {
        if weight != nil { throw .unsupportedParameter(scheduler: scheduler, parameter: "weight") }
        if cap != nil { throw .unsupportedParameter(scheduler: scheduler, parameter: "cap") }
    }

    /// The credit schedulers' checks, as libxl and the hypervisor make them: weight within
    /// 1 … 65535, cap within 0 … 100 × the domain's vCPUs; and no RTDS fields.
    func validateShares(scheduler: String, maxVCPUs: Int) throws(SchedError) {
        try rejectRealTimeFields(scheduler: scheduler)
        if let w = weight, w < CreditScheduler.weightMinimum || w > CreditScheduler.weightMaximum {
            throw .weightOutOfRange(w)
        }
        if let c = cap, c < 0 || c > 100 * maxVCPUs { throw .capOutOfRange(c, maximum: 100 * maxVCPUs) }
    }
}

/// Pool-wide parameters (`xl sched-credit -s`, `sched-credit2 -s`). `nil`: leave unchanged.
public struct GlobalSchedParams: Equatable, Sendable {
    /// credit: timeslice, 1 … 1000 ms.
    public var timesliceMilliseconds: Int?
    /// credit, credit2: context-switch rate limit, 0 or 100 … 500000 µs.
    public var ratelimitMicroseconds: Int?
    /// credit: cache-hot window during which a vCPU is not stolen, 0 … 100000 µs.
    public var migrationDelayMicroseconds: Int?

    public init(timesliceMilliseconds: Int? = nil, ratelimitMicroseconds: Int? = nil,
                migrationDelayMicroseconds: Int? = nil) {
        self.timesliceMilliseconds = timesliceMilliseconds
        self.ratelimitMicroseconds = ratelimitMicroseconds
        self.migrationDelayMicroseconds = migrationDelayMicroseconds
    }
}

/// The ops table. Every policy implements all of it; hooks that a policy has no use for are
/// documented no-ops there (as Xen leaves a `sched_ops` slot NULL).
public protocol Scheduler: AnyObject {
    var kind: SchedulerKind { get }
    /// The pCPUs of the pool this instance schedules.
    var pcpus: PCPUSet { get }
    var clock: any SchedClock { get }

    // MARK: domains and vCPUs (alloc_domdata / insert_unit / remove_unit)

    /// Registers a domain with default parameters.
    func addDomain(_ domain: DomainID) throws(SchedError)
    /// Forgets a domain; all its vCPUs must have been removed.
    func removeDomain(_ domain: DomainID) throws(SchedError)
    /// Adds a vCPU of a known domain, asleep (not runnable) until `wake`, placed by `pickPCPU`.
    func insert(_ vcpu: VCPUID, affinity: Affinity) throws(SchedError)
    /// Removes a vCPU. If it is running, its pCPU is asked to reschedule.
    func remove(_ vcpu: VCPUID) throws(SchedError)

    // MARK: state changes (sleep / wake / yield / affinity)

    /// The vCPU blocked (or was paused). If running, its pCPU is asked to reschedule.
    func sleep(_ vcpu: VCPUID)
    /// The vCPU became runnable: queue it and tickle a pCPU.
    func wake(_ vcpu: VCPUID)
    /// The running vCPU gives up the rest of its slice.
    func yield(_ vcpu: VCPUID)
    /// `xl vcpu-pin`: new hard and soft masks; the vCPU moves at its next schedule if needed.
    func setAffinity(_ vcpu: VCPUID, _ affinity: Affinity) throws(SchedError)
    /// `pick_resource`: the pCPU this vCPU should go to now (no side effects).
    func pickPCPU(for vcpu: VCPUID) -> PCPUID

    // MARK: scheduling

    /// `do_schedule`: charge the current vCPU of `pcpu` up to now, choose what runs next.
    func doSchedule(pcpu: PCPUID) -> SchedDecision
    /// The earliest internal timer (ticks, accounting, replenishment), if any is armed.
    var nextTimerDeadline: SchedTime? { get }
    /// Fires every internal timer whose deadline is ≤ now.
    func runTimers()
    /// pCPUs that must call `doSchedule` soon (Xen's tickles), cleared by the call.
    func takeRescheduleRequests() -> PCPUSet
    /// The running `vcpu` did not run for `time` of the time since it was last charged (its
    /// host thread held the pCPU but was off the host's CPUs: the host ran other work, "steal
    /// time"). Moves the point its next charge starts from forward by `time`, never past now,
    /// so the next `doSchedule`, tick or other burn charges only the time it really ran (credit
    /// and budget alike). For the running vCPU only: ignored for one that is not running on its
    /// pCPU, or for a non-positive `time`. Call it before the hook that burns.
    func refund(_ vcpu: VCPUID, _ time: SchedTime)

    // MARK: parameters (adjust / adjust_affinity / adjust_global) and dump

    func domainParameters(_ domain: DomainID) throws(SchedError) -> DomainSchedParams
    /// Validates as the toolstack does, then applies. Fields left `nil` are unchanged.
    func adjust(domain: DomainID, _ params: DomainSchedParams) throws(SchedError)
    func vcpuParameters(_ vcpu: VCPUID) throws(SchedError) -> DomainSchedParams
    /// Per-vCPU parameters (`xl sched-rtds -v`); only RTDS has them.
    func adjust(vcpu: VCPUID, _ params: DomainSchedParams) throws(SchedError)
    var globalParameters: GlobalSchedParams { get }
    func adjustGlobal(_ params: GlobalSchedParams) throws(SchedError)
    /// Human-readable state (Xen's `dump_settings` + `dump_cpu_state`, the 'r' debug key).
    func dump() -> String
    /// One word on where a vCPU stands in the policy, for the scheduling trace (credit: its
    /// priority, `boost`, `under` or `over`); nil when the policy has none.
    func standing(of vcpu: VCPUID) -> String?
}

extension Scheduler {
    public var name: String { kind.name }
    public func standing(of vcpu: VCPUID) -> String? { nil }
    public func insert(_ vcpu: VCPUID) throws(SchedError) { try insert(vcpu, affinity: .any) }
}

/// Creates a scheduler by kind (Xen's REGISTER_SCHEDULER table and `sched=` option).
/// ARINC653 is not implemented and is reported as an unknown scheduler.
public func makeScheduler(_ kind: SchedulerKind, pcpuCount: Int, clock: any SchedClock) throws(SchedError) -> any Scheduler {
    switch kind {
    case .credit: return try CreditScheduler(pcpuCount: pcpuCount, clock: clock)
    case .credit2: return try Credit2Scheduler(pcpuCount: pcpuCount, clock: clock)
    case .rtds: return try RTDSScheduler(pcpuCount: pcpuCount, clock: clock)
    case .null: return try NullScheduler(pcpuCount: pcpuCount, clock: clock)
    case .arinc653: throw .unknownScheduler(kind.name)
    }
}

/// Validation of a pool size shared by the initialisers.
func validatePoolSize(_ n: Int) throws(SchedError) {
    if n < 1 || n > PCPUSet.capacity { throw .invalidPoolSize(n) }
}

/// Soft affinity as the balancing steps see it (Xen's `has_soft_affinity` and
/// `affinity_balance_cpumask`): effective only if soft∩hard is non-empty and smaller than hard.
struct AffinityMasks {
    var hard: PCPUSet
    var soft: PCPUSet
    /// soft ∩ hard, when soft affinity is effective; `nil` otherwise.
    var effectiveSoft: PCPUSet?

    init(_ affinity: Affinity, pool: PCPUSet) {
        hard = (affinity.hard ?? pool).intersection(pool)
        soft = (affinity.soft ?? pool).intersection(pool)
        let s = soft.intersection(hard)
        effectiveSoft = (!s.isEmpty && s != hard) ? s : nil
    }
    /// Balance steps: the soft mask first (if effective), then the hard mask.
    var steps: [PCPUSet] { effectiveSoft.map { [$0, hard] } ?? [hard] }
}
