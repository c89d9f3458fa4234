import Testing
@testable import VisorSched

@Suite("Types, registry and validation")
struct CommonTests {
    @Test("PCPUSet: membership, cycling as cpumask_cycle, cpu-list text both ways")
    func pcpuSet() {
        var s = PCPUSet(p(1), p(3), p(64), p(255))
        #expect(s.count == 4 && s.contains(p(64)) && !s.contains(p(2)))
        #expect(s.cycle(after: p(3)) == p(64))
        #expect(s.cycle(after: p(255)) == p(1))
        #expect(s.testOrCycle(p(3)) == p(3))
        s.remove(p(255))
        #expect(Array(s) == [p(1), p(3), p(64)])
        #expect(PCPUSet.range(0...3).union(PCPUSet(p(5))).description == "0-3,5")
        #expect(PCPUSet(cpuList: "0-3,5,^1", poolSize: 8) == PCPUSet(p(0), p(2), p(3), p(5)))
        #expect(PCPUSet(cpuList: "all,^7", poolSize: 8) == PCPUSet.first(7))
        #expect(PCPUSet(cpuList: "3-1", poolSize: 8) == nil)
        #expect(PCPUSet().cycle(after: p(0)) == nil)
    }

    @Test("SchedTime arithmetic and units")
    func time() {
        #expect(ms(30) == us(30_000))
        #expect((sec(1) - ms(1)).microseconds == 999_000)
        #expect(ms(30).description == "30ms" && us(1_500).description == "1500us")
    }

    @Test("the registry knows Xen's names and ids; arinc653 is not built")
    func registry() throws {
        #expect(try SchedulerKind(name: "credit2") == .credit2)
        #expect(SchedulerKind.credit.rawValue == 5 && SchedulerKind.rtds.rawValue == 8 && SchedulerKind.null.rawValue == 9)
        #expect(SchedulerKind.defaultKind == .credit2)
        #expect(throws: SchedError.unknownScheduler("sedf")) { try SchedulerKind(name: "sedf") }
        let clock = ManualClock()
        for kind in [SchedulerKind.credit, .credit2, .rtds, .null] {
            let s = try makeScheduler(kind, pcpuCount: 2, clock: clock)
            #expect(s.kind == kind && s.pcpus.count == 2)
            #expect(s.dump().contains(kind.name))
        }
        #expect(throws: SchedError.unknownScheduler("arinc653")) { try makeScheduler(.arinc653, pcpuCount: 1, clock: clock) }
        #expect(throws: SchedError.invalidPoolSize(0)) { try makeScheduler(.credit, pcpuCount: 0, clock: clock) }
    }

    @Test("credit parameter validation follows libxl, with libxl's messages")
    func creditValidation() throws {
        let s = try CreditScheduler(pcpuCount: 2, clock: ManualClock())
        try s.addDomain(DomainID(1))
        try s.insert(v(1, 0))
        try s.insert(v(1, 1))
        for w in [0, 65_536] {
            #expect(throws: SchedError.weightOutOfRange(w)) { try s.adjust(domain: DomainID(1), DomainSchedParams(weight: w)) }
        }
        #expect(throws: SchedError.capOutOfRange(201, maximum: 200)) {
            try s.adjust(domain: DomainID(1), DomainSchedParams(cap: 201))
        }
        #expect(throws: SchedError.capOutOfRange(-1, maximum: 200)) {
            try s.adjust(domain: DomainID(1), DomainSchedParams(cap: -1))
        }
        #expect(throws: SchedError.unsupportedParameter(scheduler: "credit", parameter: "period")) {
            try s.adjust(domain: DomainID(1), DomainSchedParams(periodMicroseconds: 100))
        }
        #expect(throws: SchedError.migrationDelayOutOfRange(microseconds: 100_001)) {
            try s.adjustGlobal(GlobalSchedParams(migrationDelayMicroseconds: 100_001))
        }
        try s.adjust(domain: DomainID(1), DomainSchedParams(weight: 1, cap: 200))
        #expect(try s.domainParameters(DomainID(1)) == DomainSchedParams(weight: 1, cap: 200))
        #expect(SchedError.weightOutOfRange(0).description.hasPrefix("Cpu weight out of range, valid values are within range from 1 to 65535"))
        #expect(SchedError.capOutOfRange(201, maximum: 200).description.hasPrefix("Cpu cap out of range, valid range is from 0 to 200 for specified number of vcpus"))
        #expect(SchedError.timesliceOutOfRange(milliseconds: 0).description.hasPrefix("Time slice out of range, valid range is from 1 to 1000"))
        #expect(SchedError.ratelimitOutOfRange(microseconds: 50).description.hasPrefix("Ratelimit out of range, valid range is from 100 to 500000"))
        #expect(SchedError.ratelimitGreaterThanTimeslice(ratelimitMicroseconds: 2_000, timesliceMilliseconds: 1).description.hasPrefix("Ratelimit cannot be greater than timeslice"))
        #expect(throws: SchedError.vcpuExists(v(1, 0))) { try s.insert(v(1, 0)) }
        #expect(throws: SchedError.unknownDomain(DomainID(9))) { try s.insert(v(9, 0)) }
        #expect(throws: SchedError.domainHasVCPUs(DomainID(1))) { try s.removeDomain(DomainID(1)) }
    }

    @Test("boot options out of range are reset as Xen does at boot, not rejected")
    func creditBootOptions() throws {
        var o = CreditScheduler.Options()
        o.timesliceMilliseconds = 5_000
        o.ratelimitMicroseconds = 20
        let s = try CreditScheduler(pcpuCount: 1, clock: ManualClock(), options: o)
        #expect(s.globalParameters.timesliceMilliseconds == 30 && s.globalParameters.ratelimitMicroseconds == 1_000)
        o.timesliceMilliseconds = 2
        o.ratelimitMicroseconds = 5_000
        let t = try CreditScheduler(pcpuCount: 1, clock: ManualClock(), options: o)
        #expect(t.globalParameters.ratelimitMicroseconds == 2_000)
        #expect(t.tickPeriodForTesting == ms(2), "under 3 ms there is one tick per slice")
    }

    /// A small deterministic generator (an LCG) so the stress runs are the same every time.
    struct LCG {
        var state: UInt64
        mutating func next(_ bound: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(bound))
        }
    }

    @Test("every policy keeps the invariants under a seeded mix of hogs, sleepers, pins, yields and removals",
          arguments: [SchedulerKind.credit, .credit2, .rtds, .null])
    func stress(kind: SchedulerKind) throws {
        let clock = ManualClock()
        let s = try makeScheduler(kind, pcpuCount: 4, clock: clock)
        let sim = SchedSimulator(scheduler: s, clock: clock)
        var rng = LCG(state: UInt64(kind.rawValue))
        var ids: [VCPUID] = []
        for d in 1...6 {
            for i in 0..<2 {
                let id = v(UInt32(d), i)
                let workload: SimWorkload = rng.next(3) == 0 ? .hog
                    : .periodic(period: us(Int64(500 + rng.next(20_000))), burst: us(Int64(50 + rng.next(400))), phase: us(Int64(rng.next(5_000))))
                let hard: PCPUSet? = rng.next(4) == 0 ? PCPUSet(p(rng.next(4)), p(rng.next(4))) : nil
                try sim.addVCPU(id, workload, affinity: Affinity(hard: hard, soft: rng.next(3) == 0 ? PCPUSet(p(rng.next(4))) : nil))
                ids.append(id)
            }
        }
        if kind == .credit || kind == .credit2 {
            try s.adjust(domain: DomainID(2), DomainSchedParams(weight: 512, cap: 50))
        }
        if kind == .rtds {
            try s.adjust(domain: DomainID(3), DomainSchedParams(periodMicroseconds: 5_000, budgetMicroseconds: 1_000, extratime: false))
        }
        for k in 1..<40 {
            let id = ids[rng.next(ids.count)]
            let pin = rng.next(2) == 0 ? Affinity.any : .pinned(p(rng.next(4)))
            let yielder = ids[rng.next(ids.count)]
            sim.at(ms(50) * Int64(k)) { sim in
                try? sim.setAffinity(id, pin)
                if sim.pcpu(of: yielder) != nil { sim.yieldVCPU(yielder) }
            }
        }
        sim.at(sec(1)) { sim in try! sim.removeVCPU(ids[0]) }
        sim.run(until: sec(2))
        expectClean(sim)
        #expect(sim.decisions > 100)
        let used = (0..<4).map { sim.busyFraction(p($0)) }.reduce(0, +)
        #expect(used > 0.5, "\(kind): pool almost idle (\(used))")
    }
}
