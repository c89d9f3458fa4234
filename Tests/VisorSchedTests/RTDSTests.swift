import Testing
@testable import VisorSched

// Scenarios 15–17 of the reference for RTDS: ±1 % long run, and per-period budget overrun 0
// (a discrete-event model has no timer slop).

/// CPU time a vCPU received in each window [k·period, (k+1)·period), k < count, from segments.
func perPeriod(_ sim: SchedSimulator, _ id: VCPUID, period: SchedTime, count: Int) -> [SchedTime] {
    var out = Array(repeating: SchedTime.zero, count: count)
    for s in sim.timeline where s.vcpu == id {
        var t = s.start
        while t < s.end {
            let k = Int(t.nanoseconds / period.nanoseconds)
            guard k < count else { break }
            let windowEnd = period * Int64(k + 1)
            let e = min(s.end, windowEnd)
            out[k] += e - t
            t = e
        }
    }
    return out
}

@Suite("RTDS scheduler")
struct RTDSTests {
    func rtds(_ pcpus: Int) throws -> (SchedSimulator, RTDSScheduler) {
        let clock = ManualClock()
        let s = try RTDSScheduler(pcpuCount: pcpus, clock: clock)
        return (SchedSimulator(scheduler: s, clock: clock), s)
    }

    @Test("15. B 4 ms / P 10 ms without extratime: ≤ 4 ms in every period, 40 % ± 1 %; with extratime ~100 %")
    func reservation() throws {
        let (sim, s) = try rtds(1)
        sim.recordSegments = true
        try sim.addVCPU(v(1), .blocked)
        try s.adjust(domain: DomainID(1), DomainSchedParams(periodMicroseconds: 10_000, budgetMicroseconds: 4_000, extratime: false))
        sim.setWorkload(v(1), .hog)
        sim.run(until: sec(10))
        expectNear(sim.share(v(1)), 0.40, 0.01, "reserved share")
        let periods = perPeriod(sim, v(1), period: ms(10), count: 1_000)
        #expect(periods.allSatisfy { $0 <= ms(4) }, "worst period \(periods.max()!)")

        let (sim2, s2) = try rtds(1)
        try sim2.addVCPU(v(1), .blocked)
        try s2.adjust(domain: DomainID(1), DomainSchedParams(periodMicroseconds: 10_000, budgetMicroseconds: 4_000, extratime: true))
        sim2.setWorkload(v(1), .hog)
        sim2.run(until: sec(10))
        #expect(sim2.share(v(1)) >= 0.99)
        expectClean(sim)
        expectClean(sim2)
    }

    @Test("16. EDF: A 2/5 ms and B 4/10 ms on one pCPU meet every deadline; extratime shares the idle 20 %")
    func edfGuarantee() throws {
        for extratime in [false, true] {
            let (sim, s) = try rtds(1)
            sim.recordSegments = true
            try sim.addVCPU(v(1), .blocked)
            try sim.addVCPU(v(2), .blocked)
            try s.adjust(domain: DomainID(1), DomainSchedParams(periodMicroseconds: 5_000, budgetMicroseconds: 2_000, extratime: extratime))
            try s.adjust(domain: DomainID(2), DomainSchedParams(periodMicroseconds: 10_000, budgetMicroseconds: 4_000, extratime: extratime))
            sim.setWorkload(v(1), .hog)
            sim.setWorkload(v(2), .hog)
            sim.run(until: sec(10))
            var missesA = 0, missesB = 0
            for got in perPeriod(sim, v(1), period: ms(5), count: 2_000) {
                if got < ms(2) { missesA += 1 }
                if !extratime && got > ms(2) { Issue.record("A overran: \(got)") }
            }
            for got in perPeriod(sim, v(2), period: ms(10), count: 1_000) {
                if got < ms(4) { missesB += 1 }
                if !extratime && got > ms(4) { Issue.record("B overran: \(got)") }
            }
            #expect(missesA == 0 && missesB == 0, "deadline misses: A \(missesA), B \(missesB)")
            if extratime {
                #expect(sim.share(v(1)) >= 0.39 && sim.share(v(2)) >= 0.39)
                #expect(sim.busyFraction(p(0)) >= 0.999)
            } else {
                expectNear(sim.share(v(1)), 0.40, 0.01, "A")
                expectNear(sim.share(v(2)), 0.40, 0.01, "B")
                expectNear(1 - sim.busyFraction(p(0)), 0.20, 0.01, "idle")
            }
            expectClean(sim)
        }
    }

    @Test("16b. a non-extratime vCPU never runs past its budget while an extratime one soaks up the rest")
    func mixedExtratime() throws {
        let (sim, s) = try rtds(1)
        sim.recordSegments = true
        try sim.addVCPU(v(1), .blocked)
        try sim.addVCPU(v(2), .blocked)
        try s.adjust(domain: DomainID(1), DomainSchedParams(periodMicroseconds: 5_000, budgetMicroseconds: 2_000, extratime: false))
        try s.adjust(domain: DomainID(2), DomainSchedParams(periodMicroseconds: 10_000, budgetMicroseconds: 4_000, extratime: true))
        sim.setWorkload(v(1), .hog)
        sim.setWorkload(v(2), .hog)
        sim.run(until: sec(5))
        let periods = perPeriod(sim, v(1), period: ms(5), count: 1_000)
        #expect(periods.allSatisfy { $0 == ms(2) }, "A got \(periods.min()!) … \(periods.max()!) per period")
        expectNear(sim.share(v(2)), 0.60, 0.01, "extratime vCPU")
        expectClean(sim)
    }

    @Test("global EDF: four 4/10 ms hogs on two pCPUs each get 40 %, no deadline missed")
    func globalEDF() throws {
        let (sim, s) = try rtds(2)
        sim.recordSegments = true
        for d in 1...4 {
            try sim.addVCPU(v(UInt32(d)), .blocked)
            try s.adjust(domain: DomainID(UInt32(d)), DomainSchedParams(extratime: false))
        }
        for d in 1...4 { sim.setWorkload(v(UInt32(d)), .hog) }
        sim.run(until: sec(5))
        for d in 1...4 {
            expectNear(sim.share(v(UInt32(d))), 0.40, 0.01, "vCPU \(d)")
            let periods = perPeriod(sim, v(UInt32(d)), period: ms(10), count: 500)
            #expect(periods.allSatisfy { $0 == ms(4) }, "vCPU \(d): \(periods.min()!) … \(periods.max()!) per period")
        }
        expectClean(sim)
    }

    @Test("a sleeper keeps its budget while blocked (deferrable) and its period stays phase-aligned")
    func deferrable() throws {
        let clock = ManualClock()
        let s = try RTDSScheduler(pcpuCount: 1, clock: clock)
        try s.addDomain(DomainID(1))
        try s.insert(v(1))
        try s.adjust(vcpu: v(1), DomainSchedParams(periodMicroseconds: 10_000, budgetMicroseconds: 3_000, extratime: false))
        s.wake(v(1))
        #expect(s.doSchedule(pcpu: p(0)).timeslice == ms(3))
        clock.advance(by: ms(1))
        s.sleep(v(1))
        #expect(s.doSchedule(pcpu: p(0)) == .idle)
        clock.advance(by: ms(5))
        s.wake(v(1))
        let d = s.doSchedule(pcpu: p(0))
        #expect(d.vcpu == v(1) && d.timeslice == ms(2), "unused budget is kept: \(d)")
        clock.advance(to: ms(37))
        s.sleep(v(1))
        _ = s.doSchedule(pcpu: p(0))
        s.wake(v(1))
        #expect(s.deadline(of: v(1)) == ms(40), "periods stay aligned to the first release")
        #expect(s.remainingBudget(of: v(1)) == ms(3))
    }

    @Test("17. validation: budget > period, period or budget under 10 µs, a period over 2^32-1 µs, non-positive values are rejected")
    func validation() throws {
        let (_, s) = try rtds(1)
        try s.addDomain(DomainID(1))
        try s.insert(v(1))
        #expect(try s.vcpuParameters(v(1)) == DomainSchedParams(periodMicroseconds: 10_000, budgetMicroseconds: 4_000, extratime: true))
        #expect(throws: SchedError.budgetGreaterThanPeriod(budgetMicroseconds: 2_000, periodMicroseconds: 1_000)) {
            try s.adjust(domain: DomainID(1), DomainSchedParams(periodMicroseconds: 1_000, budgetMicroseconds: 2_000))
        }
        #expect(throws: SchedError.belowRTDSMinimum(periodMicroseconds: 9, budgetMicroseconds: 9)) {
            try s.adjust(vcpu: v(1), DomainSchedParams(periodMicroseconds: 9, budgetMicroseconds: 9))
        }
        #expect(throws: SchedError.belowRTDSMinimum(periodMicroseconds: 1_000, budgetMicroseconds: 5)) {
            try s.adjust(vcpu: v(1), DomainSchedParams(periodMicroseconds: 1_000, budgetMicroseconds: 5))
        }
        #expect(throws: SchedError.invalidPeriod(microseconds: 0)) {
            try s.adjust(vcpu: v(1), DomainSchedParams(periodMicroseconds: 0))
        }
        #expect(throws: SchedError.invalidBudget(microseconds: -1)) {
            try s.adjust(vcpu: v(1), DomainSchedParams(budgetMicroseconds: -1))
        }
        #expect(throws: SchedError.unsupportedParameter(scheduler: "rtds", parameter: "weight")) {
            try s.adjust(domain: DomainID(1), DomainSchedParams(weight: 256))
        }
        // A period past libxl's 32-bit field is refused, not multiplied into nanoseconds (that
        // overflowed and trapped the daemon for {"periodMicroseconds": Int.max} through the API).
        #expect(throws: SchedError.aboveRTDSMaximum(periodMicroseconds: Int.max)) {
            try s.adjust(vcpu: v(1), DomainSchedParams(periodMicroseconds: Int.max, budgetMicroseconds: 10))
        }
        #expect(throws: SchedError.aboveRTDSMaximum(periodMicroseconds: Int.max)) {
            try s.adjust(domain: DomainID(1), DomainSchedParams(periodMicroseconds: Int.max, budgetMicroseconds: Int.max))
        }
        try s.adjust(vcpu: v(1), DomainSchedParams(periodMicroseconds: RTDSScheduler.maximumPeriodMicroseconds, budgetMicroseconds: 10))
        #expect(try s.vcpuParameters(v(1)).periodMicroseconds == RTDSScheduler.maximumPeriodMicroseconds)
        try s.adjust(vcpu: v(1), DomainSchedParams(periodMicroseconds: 10, budgetMicroseconds: 10))
        #expect(try s.vcpuParameters(v(1)).periodMicroseconds == 10)
        // The domain-level "get" reports the defaults, as Xen's does.
        #expect(try s.domainParameters(DomainID(1)).periodMicroseconds == 10_000)
        #expect(SchedError.budgetGreaterThanPeriod(budgetMicroseconds: 2, periodMicroseconds: 1).description
                    .hasPrefix("VCPU budget must be smaller than or equal to VCPU period"))
    }
}
