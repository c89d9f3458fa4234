import Testing
@testable import VisorSched

@Suite("Null scheduler")
struct NullTests {
    func null(_ pcpus: Int) throws -> (SchedSimulator, NullScheduler) {
        let clock = ManualClock()
        let s = try NullScheduler(pcpuCount: pcpus, clock: clock)
        return (SchedSimulator(scheduler: s, clock: clock), s)
    }

    @Test("18. three vCPUs on two pCPUs: two own a pCPU, the third waits until one is destroyed")
    func placement() throws {
        let (sim, s) = try null(2)
        try sim.addVCPU(v(1), .hog)
        try sim.addVCPU(v(2), .hog)
        try sim.addVCPU(v(3), .hog)
        #expect(s.waiting == [v(3)])
        #expect(s.dump().contains("WARNING: d3v0 not assigned to any CPU!"))
        sim.run(until: sec(5))
        expectNear(sim.share(v(1)), 1.0, 0.0, "first")
        expectNear(sim.share(v(2)), 1.0, 0.0, "second")
        #expect(sim.cpuTime(v(3)) == .zero)
        let freed = try #require(s.assignment(of: v(1)))
        sim.at(sec(5)) { sim in
            try! sim.removeVCPU(v(1))
            sim.resetStatistics()
        }
        sim.run(until: sec(10))
        #expect(s.assignment(of: v(3)) == freed)
        expectNear(sim.share(v(3)), 1.0, 0.0, "the waiter, after the removal")
        #expect(sim.cpuTime(v(3), on: freed) == sim.cpuTime(v(3)))
        expectClean(sim)
    }

    @Test("18b. a blocked assigned vCPU leaves its pCPU idle; no timer is ever armed")
    func blockedLeavesIdle() throws {
        let (sim, s) = try null(1)
        try sim.addVCPU(v(1), .periodic(period: ms(10), burst: ms(3), phase: .zero))
        try sim.addVCPU(v(2), .hog)
        sim.run(until: sec(2))
        expectNear(sim.share(v(1)), 0.3, 0.0001, "sleeper")
        #expect(sim.cpuTime(v(2)) == .zero)
        expectNear(sim.busyFraction(p(0)), 0.3, 0.0001, "pCPU busy")
        #expect(s.nextTimerDeadline == nil)
        #expect(s.doSchedule(pcpu: p(0)).timeslice == nil)
        expectClean(sim)
    }

    @Test("12. null: a vCPU whose hard affinity has no free pCPU waits; soft affinity is preferred")
    func affinity() throws {
        let (sim, s) = try null(4)
        try sim.addVCPU(v(1), .hog, affinity: .pinned(p(2)))
        try sim.addVCPU(v(2), .hog, affinity: .pinned(p(2)))
        try sim.addVCPU(v(3), .hog, affinity: Affinity(hard: nil, soft: PCPUSet(p(3))))
        #expect(s.assignment(of: v(1)) == p(2))
        #expect(s.assignment(of: v(2)) == nil)
        #expect(s.assignment(of: v(3)) == p(3))
        sim.run(until: sec(1))
        #expect(sim.cpuTime(v(2)) == .zero)
        // Re-pinning the waiter to a free pCPU assigns it at once.
        try sim.setAffinity(v(2), .pinned(p(0)))
        #expect(s.assignment(of: v(2)) == p(0))
        sim.resetStatistics()
        sim.run(until: sec(2))
        expectNear(sim.share(v(2)), 1.0, 0.0, "re-pinned waiter")
        expectClean(sim)
    }

    @Test("null has no parameters: weight, cap, ratelimit are rejected with a clear error")
    func parameters() throws {
        let (_, s) = try null(1)
        try s.addDomain(DomainID(1))
        #expect(throws: SchedError.unsupportedParameter(scheduler: "null", parameter: "weight")) {
            try s.adjust(domain: DomainID(1), DomainSchedParams(weight: 10))
        }
        #expect(throws: SchedError.unsupportedParameter(scheduler: "null", parameter: "ratelimit")) {
            try s.adjustGlobal(GlobalSchedParams(ratelimitMicroseconds: 1_000))
        }
    }
}
