import Testing
@testable import VisorSched

// Credit2 scenarios of the reference (1, 3, 4, 5, 6, 9, 13, 14): ±2 % over 10 s.

func credit2Sim(pcpus: Int, options: Credit2Scheduler.Options = .init()) throws -> (SchedSimulator, Credit2Scheduler) {
    let clock = ManualClock()
    let s = try Credit2Scheduler(pcpuCount: pcpus, clock: clock, options: options)
    return (SchedSimulator(scheduler: s, clock: clock), s)
}

@Suite("Credit2 scheduler")
struct Credit2Tests {
    @Test("1. weights 256 and 512 on one pCPU share it 1/3 : 2/3")
    func weights() throws {
        let (sim, s) = try credit2Sim(pcpus: 1)
        try sim.addVCPU(v(1), .hog)
        try sim.addVCPU(v(2), .hog)
        try s.adjust(domain: DomainID(2), DomainSchedParams(weight: 512))
        sim.run(until: sec(10))
        expectNear(sim.share(domain: DomainID(1)), 1.0 / 3, 0.02, "weight 256")
        expectNear(sim.share(domain: DomainID(2)), 2.0 / 3, 0.02, "weight 512")
        expectClean(sim)
    }

    @Test("3. weight is per vCPU: a 2-vCPU domain gets 2/3 against a 1-vCPU one")
    func weightPerVCPU() throws {
        let (sim, _) = try credit2Sim(pcpus: 2)
        try sim.addVCPU(v(1, 0), .hog, affinity: .pinned(p(0)))
        try sim.addVCPU(v(1, 1), .hog, affinity: .pinned(p(0)))
        try sim.addVCPU(v(2, 0), .hog, affinity: .pinned(p(0)))
        sim.run(until: sec(10))
        expectNear(sim.share(domain: DomainID(1)), 2.0 / 3, 0.02, "2-vCPU domain")
        expectNear(sim.share(domain: DomainID(2)), 1.0 / 3, 0.02, "1-vCPU domain")
        expectClean(sim)
    }

    @Test("4. cap 50 on an idle 4-pCPU pool: 48–52 %, ≤ 5 ms per 10 ms period, other pCPUs idle")
    func cap() throws {
        let (sim, s) = try credit2Sim(pcpus: 4)
        sim.recordSegments = true
        try sim.addVCPU(v(1), .hog)
        try s.adjust(domain: DomainID(1), DomainSchedParams(cap: 50))
        sim.run(until: sec(10))
        let share = sim.share(v(1))
        #expect(share <= 0.52 && share >= 0.48, "capped share \(share)")
        let busy = (0..<4).map { sim.busyFraction(p($0)) }.reduce(0, +)
        #expect(busy <= 0.52)
        // The cap period starts when the cap is set (t = 0): at most 5 ms (+ the 500 µs minimum
        // quota granularity) in every 10 ms window.
        var windows = Array(repeating: SchedTime.zero, count: 1_000)
        for seg in sim.timeline {
            var t = seg.start
            while t < seg.end {
                let k = Int(t.nanoseconds / ms(10).nanoseconds)
                let e = min(seg.end, ms(10) * Int64(k + 1))
                if k < windows.count { windows[k] += e - t }
                t = e
            }
        }
        #expect(windows.max()! <= ms(5) + us(500), "worst window \(windows.max()!)")
        expectClean(sim)
    }

    @Test("5. a 4-vCPU domain capped at 200 gets ≤ 200 % of 4 pCPUs; cap 500 is rejected")
    func multiVCPUCap() throws {
        let (sim, s) = try credit2Sim(pcpus: 4)
        for i in 0..<4 { try sim.addVCPU(v(1, i), .hog) }
        try s.adjust(domain: DomainID(1), DomainSchedParams(cap: 200))
        sim.run(until: sec(10))
        let share = sim.share(domain: DomainID(1))
        #expect(share <= 2.02 && share >= 1.90, "aggregate \(share)")
        #expect(throws: SchedError.capOutOfRange(500, maximum: 400)) {
            try s.adjust(domain: DomainID(1), DomainSchedParams(cap: 500))
        }
        // Removing the cap lets the domain use all four pCPUs again.
        try s.adjust(domain: DomainID(1), DomainSchedParams(cap: 0))
        sim.resetStatistics()
        sim.run(until: sec(12))
        #expect(sim.share(domain: DomainID(1)) >= 3.96)
        expectClean(sim)
    }

    @Test("6. work conservation: a lone hog with weight 1 still gets ≥ 98 %")
    func workConservation() throws {
        let (sim, s) = try credit2Sim(pcpus: 1)
        try sim.addVCPU(v(1), .hog)
        try sim.addVCPU(v(2), .periodic(period: ms(50), burst: us(200), phase: ms(7)))
        try s.adjust(domain: DomainID(1), DomainSchedParams(weight: 1))
        sim.run(until: sec(10))
        #expect(sim.share(v(1)) >= 0.98 - sim.share(v(2)))
        #expect(sim.busyFraction(p(0)) >= 0.999)
        expectClean(sim)
    }

    @Test("9. latency without boost: a 100 µs-per-10 ms waker runs within 1 ms of waking")
    func latencyWithoutBoost() throws {
        let (sim, _) = try credit2Sim(pcpus: 1)
        try sim.addVCPU(v(1), .hog)
        try sim.addVCPU(v(2), .periodic(period: ms(10), burst: us(100), phase: ms(3)))
        sim.run(until: ms(100))
        sim.resetStatistics()
        sim.run(until: sec(10))
        let lat = sim.latencies(v(2))
        #expect(lat.count >= 980)
        #expect(lat.max()! <= ms(1) + us(1), "worst wake-to-run \(lat.max()!)")
        #expect(sim.share(v(1)) >= 0.97 * (1 - sim.share(v(2))))
        expectClean(sim)
    }

    @Test("13. soft affinity: one of two soft-{0} hogs holds pCPU 0 ≥ 90 %, neither waits")
    func softAffinity() throws {
        let (sim, _) = try credit2Sim(pcpus: 4)
        let soft = Affinity(hard: nil, soft: PCPUSet(p(0)))
        try sim.addVCPU(v(1), .hog, affinity: soft)
        try sim.addVCPU(v(2), .hog, affinity: soft)
        sim.run(until: sec(10))
        let onZero = sim.cpuTime(v(1), on: p(0)) + sim.cpuTime(v(2), on: p(0))
        #expect(Double(onZero.nanoseconds) / Double(sim.window.nanoseconds) >= 0.90)
        #expect(sim.share(v(1)) >= 0.95 && sim.share(v(2)) >= 0.95)
        expectClean(sim)
    }

    @Test("14. eight hogs started on pCPU 0 of 4 share the socket runqueue: every pCPU ≥ 95 %, each 50 % ± 5 %")
    func sharedRunqueue() throws {
        let (sim, s) = try credit2Sim(pcpus: 4)
        #expect(s.runqueueCount == 1)
        for i in 0..<8 { try sim.addVCPU(v(1, i), .hog, affinity: .pinned(p(0))) }
        sim.at(ms(100)) { sim in for i in 0..<8 { try! sim.setAffinity(v(1, i), .any) } }
        sim.run(until: ms(1_100))
        sim.resetStatistics()
        sim.run(until: ms(11_100))
        for n in 0..<4 { #expect(sim.busyFraction(p(n)) >= 0.95, "pCPU \(n) busy \(sim.busyFraction(p(n)))") }
        for i in 0..<8 { expectNear(sim.share(v(1, i)), 0.5, 0.05, "hog \(i)") }
        expectClean(sim)
    }

    @Test("per-pCPU runqueues: balancing at credit resets spreads six hogs over three pCPUs")
    func perCPURunqueues() throws {
        var options = Credit2Scheduler.Options()
        options.runqueue = .cpu
        let (sim, s) = try credit2Sim(pcpus: 3, options: options)
        #expect(s.runqueueCount == 3)
        for i in 0..<6 { try sim.addVCPU(v(1, i), .hog, affinity: .pinned(p(0))) }
        sim.at(ms(50)) { sim in for i in 0..<6 { try! sim.setAffinity(v(1, i), .any) } }
        sim.run(until: sec(1))
        sim.resetStatistics()
        sim.run(until: sec(6))
        for n in 0..<3 { #expect(sim.busyFraction(p(n)) >= 0.95, "pCPU \(n) busy \(sim.busyFraction(p(n)))") }
        let total = (0..<6).map { sim.share(v(1, $0)) }.reduce(0, +)
        #expect(total >= 2.95)
        expectClean(sim)
    }

    @Test("a credit reset gives +10 ms and clips at 10.5 ms; runs are bounded by 500 µs … 10 ms")
    func creditReset() throws {
        let clock = ManualClock()
        let s = try Credit2Scheduler(pcpuCount: 1, clock: clock)
        try s.addDomain(DomainID(1))
        try s.insert(v(1, 0))
        try s.insert(v(1, 1))
        #expect(s.credit(of: v(1, 0)) == 10_000_000)
        s.wake(v(1, 0))
        s.wake(v(1, 1))
        let first = s.doSchedule(pcpu: p(0))
        #expect(first.timeslice == ms(1), "credit equal to the waiter's: the minimum (ratelimit) applies")
        clock.advance(by: ms(10))
        let second = s.doSchedule(pcpu: p(0))
        #expect(second.vcpu != first.vcpu)
        #expect(second.timeslice == ms(10))
        clock.advance(by: ms(10))
        // The next choice has 0 credit: reset. The vCPU that just ran is at 0 and gets +10 ms;
        // nobody may exceed 10.5 ms.
        _ = s.doSchedule(pcpu: p(0))
        #expect(s.credit(of: v(1, 0)) <= 10_500_000 && s.credit(of: v(1, 1)) <= 10_500_000)
        #expect(s.credit(of: v(1, 0)) == 10_000_000 && s.credit(of: v(1, 1)) == 10_000_000)
    }

    @Test("validation: weight 0 and 65536, ratelimit 50 µs are rejected; tslice is not a credit2 knob")
    func validation() throws {
        let (_, s) = try credit2Sim(pcpus: 2)
        try s.addDomain(DomainID(1))
        for w in [0, 65_536] {
            #expect(throws: SchedError.weightOutOfRange(w)) { try s.adjust(domain: DomainID(1), DomainSchedParams(weight: w)) }
        }
        #expect(throws: SchedError.ratelimitOutOfRange(microseconds: 50)) {
            try s.adjustGlobal(GlobalSchedParams(ratelimitMicroseconds: 50))
        }
        #expect(throws: SchedError.unsupportedParameter(scheduler: "credit2", parameter: "tslice")) {
            try s.adjustGlobal(GlobalSchedParams(timesliceMilliseconds: 10))
        }
        try s.adjustGlobal(GlobalSchedParams(ratelimitMicroseconds: 0))
        #expect(s.globalParameters.ratelimitMicroseconds == 0)
        try s.adjust(domain: DomainID(1), DomainSchedParams(weight: 65_535))
        #expect(try s.domainParameters(DomainID(1)).weight == 65_535)
    }
}
