import Testing
@testable import VisorSched

// Shared helpers for the scenario tests. Durations are written with these shorthands so the
// scenarios read like the reference (10 s windows, 30 ms slices, 100 µs bursts).

func ms(_ v: Int64) -> SchedTime { .milliseconds(v) }
func us(_ v: Int64) -> SchedTime { .microseconds(v) }
func sec(_ v: Int64) -> SchedTime { .seconds(v) }

func v(_ domain: UInt32, _ index: Int = 0) -> VCPUID { VCPUID(domain, index) }
func p(_ n: Int) -> PCPUID { PCPUID(n) }

/// Asserts |actual − expected| ≤ tolerance, naming the quantity in the failure.
func expectNear(_ actual: Double, _ expected: Double, _ tolerance: Double, _ what: String,
                sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(abs(actual - expected) <= tolerance,
            "\(what): \(actual) not within ±\(tolerance) of \(expected)", sourceLocation: sourceLocation)
}

/// The invariants every simulation must keep, whatever the policy.
func expectClean(_ sim: SchedSimulator, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(sim.affinityViolations == 0, "hard affinity violated", sourceLocation: sourceLocation)
    #expect(sim.doubleRuns == 0, "a vCPU ran on two pCPUs at once", sourceLocation: sourceLocation)
    #expect(sim.blockedChosen == 0, "a blocked vCPU was run", sourceLocation: sourceLocation)
}

func mean(_ xs: [SchedTime]) -> SchedTime {
    xs.isEmpty ? .zero : SchedTime(nanoseconds: xs.reduce(Int64(0)) { $0 + $1.nanoseconds } / Int64(xs.count))
}

func creditSim(pcpus: Int, options: CreditScheduler.Options = .init()) throws -> (SchedSimulator, CreditScheduler) {
    let clock = ManualClock()
    let s = try CreditScheduler(pcpuCount: pcpus, clock: clock, options: options)
    return (SchedSimulator(scheduler: s, clock: clock), s)
}
