// The one error type of VisorSched. Each case's description is the message Xen's toolstack
// (libxl, tools/libs/light/libxl_sched.c) or hypervisor (xen/common/sched/*.c, -EINVAL paths)
// gives for the same mistake, so a user moving from `xl` recognises it.

public enum SchedError: Error, Equatable, Sendable, CustomStringConvertible {
    /// "Cpu weight out of range, valid values are within range from 1 to 65535"
    case weightOutOfRange(Int)
    /// "Cpu cap out of range, valid range is from 0 to MAX for specified number of vcpus"
    case capOutOfRange(Int, maximum: Int)
    /// "Time slice out of range, valid range is from 1 to 1000"
    case timesliceOutOfRange(milliseconds: Int)
    /// "Ratelimit out of range, valid range is from 100 to 500000"
    case ratelimitOutOfRange(microseconds: Int)
    /// "Ratelimit cannot be greater than timeslice"
    case ratelimitGreaterThanTimeslice(ratelimitMicroseconds: Int, timesliceMilliseconds: Int)
    /// "vcpu migration delay should be >= 0 and <= 100000us"
    case migrationDelayOutOfRange(microseconds: Int)
    /// "Invalid VCPU period of P (it should be >= 1)"
    case invalidPeriod(microseconds: Int)
    /// "Invalid VCPU budget of B (it should be >= 1)"
    case invalidBudget(microseconds: Int)
    /// "VCPU budget must be smaller than or equal to VCPU period"
    case budgetGreaterThanPeriod(budgetMicroseconds: Int, periodMicroseconds: Int)
    /// The hypervisor's -EINVAL for RTDS: period and budget must each be at least 10 µs.
    case belowRTDSMinimum(periodMicroseconds: Int, budgetMicroseconds: Int)
    /// A period longer than libxl's 32-bit µs field holds.
    case aboveRTDSMaximum(periodMicroseconds: Int)
    /// A parameter this scheduler does not have (e.g. a period for credit).
    case unsupportedParameter(scheduler: String, parameter: String)
    case unknownDomain(DomainID)
    case domainExists(DomainID)
    case domainHasVCPUs(DomainID)
    case unknownVCPU(VCPUID)
    case vcpuExists(VCPUID)
    /// The hard affinity has no pCPU of this pool (Xen: -EINVAL from vcpu_set_hard_affinity).
    case emptyHardAffinity(VCPUID)
    /// A scheduler name the `sched=` option does not know, or one not built.
    case unknownScheduler(String)
    case invalidPoolSize(Int)

    public var description: String {
        switch self {
        case .weightOutOfRange(let w):
            return "Cpu weight out of range, valid values are within range from 1 to 65535 (got \(w))"
        case .capOutOfRange(let c, let maximum):
            return "Cpu cap out of range, valid range is from 0 to \(maximum) for specified number of vcpus (got \(c))"
        case .timesliceOutOfRange(let ms):
            return "Time slice out of range, valid range is from \(CreditScheduler.timesliceMinimumMilliseconds) to \(CreditScheduler.timesliceMaximumMilliseconds) (got \(ms))"
        case .ratelimitOutOfRange(let us):
            return "Ratelimit out of range, valid range is from \(schedRatelimitMinimumMicroseconds) to \(schedRatelimitMaximumMicroseconds) (got \(us))"
        case .ratelimitGreaterThanTimeslice(let r, let t):
            return "Ratelimit cannot be greater than timeslice (ratelimit \(r) us, timeslice \(t) ms)"
        case .migrationDelayOutOfRange(let us):
            return "vcpu migration delay should be >= 0 and <= \(CreditScheduler.migrationDelayMaximumMicroseconds)us (got \(us))"
        case .invalidPeriod(let p):
            return "Invalid VCPU period of \(p) (it should be >= 1)"
        case .invalidBudget(let b):
            return "Invalid VCPU budget of \(b) (it should be >= 1)"
        case .budgetGreaterThanPeriod(let b, let p):
            return "VCPU budget must be smaller than or equal to VCPU period (budget \(b) us, period \(p) us)"
        case .belowRTDSMinimum(let p, let b):
            return "Invalid argument: RTDS period and budget must be at least \(RTDSScheduler.minimumPeriodMicroseconds) us (period \(p) us, budget \(b) us)"
        case .aboveRTDSMaximum(let p):
            return "Invalid argument: RTDS period must be at most \(RTDSScheduler.maximumPeriodMicroseconds) us (period \(p) us)"
        case .unsupportedParameter(let s, let p):
            return "Scheduler \(s) has no parameter '\(p)'"
        case .unknownDomain(let d): return "No such domain: \(d)"
        case .domainExists(let d): return "Domain \(d) already exists"
        case .domainHasVCPUs(let d): return "Domain \(d) still has vCPUs"
        case .unknownVCPU(let v): return "No such vCPU: \(v)"
        case .vcpuExists(let v): return "vCPU \(v) already exists"
        case .emptyHardAffinity(let v): return "Invalid hard affinity for \(v): no pCPU of the pool in it"
        case .unknownScheduler(let s): return "Unknown scheduler '\(s)' (known: credit, credit2, rtds, null)"
        case .invalidPoolSize(let n): return "A pool needs 1 to \(PCPUSet.capacity) pCPUs (got \(n))"
        }
    }
}
