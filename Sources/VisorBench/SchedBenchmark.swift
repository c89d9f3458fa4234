// `visor bench sched`: what Xen's scheduling policies (VisorSched) cost on the host.
//
// Two figures, as the scheduling issue asks:
//   1. the host time of one scheduling decision with 8, 64 and 512 runnable vCPUs, per policy.
//      A pool of 4 pCPUs runs N CPU hogs spread over 4 domains. A minimal driver plays the
//      runtime on a `ManualClock`: it moves the clock to the earliest slice end, runs the
//      scheduler's timers when they fall due (credit's ticks and accounting, RTDS
//      replenishments, credit2's cap periods), calls `doSchedule` on that pCPU and serves the
//      reschedule requests that result. The host time of the whole loop (scheduler calls plus
//      the driver's few comparisons) is divided by the number of `doSchedule` calls, so timers
//      are amortised over the decisions they go with. Median of several rounds.
//   2. the scheduler's overhead in the weights scenario (two domains, weights 256 and 512, one
//      pCPU, 10 simulated seconds, as scenario 1 of the scheduler tests): `SchedSimulator` runs
//      the policy through a proxy that times every scheduler call; host time inside the calls
//      divided by the simulated CPU time is the share of a real pCPU the scheduler would take
//      at that decision rate.
//
// Parameters that are not the policies' defaults, and why:
//   * null gives each vCPU a pCPU of its own: with N > 4 vCPUs inserted only 4 run, the rest
//     wait. It never asks to be called again (no timeslice), so the driver forces a decision
//     on each pCPU every millisecond to have something to time.
//   * RTDS: period 10 ms, budget 10 ms × 4 / N (5000, 625, 78 µs), extratime off: the
//     reservations add up to the 4 pCPUs, so every N is admissible under global EDF.
//   * a decision with no timeslice (idle, null) is retried after 1 ms.
// Library code: nothing is printed here; the command prints `SchedBenchmarkReport.text`.

import Foundation
import VisorSched

/// One (policy, N) measurement.
public struct SchedDecisionCost: Sendable, Equatable {
    public var policy: String
    /// vCPUs inserted (all CPU hogs).
    public var vcpus: Int
    /// vCPUs that can run at once (N, except under null: min(N, pCPUs)).
    public var running: Int
    /// Decisions (`doSchedule` calls) per round.
    public var decisionsPerRound: Int
    /// Host nanoseconds per decision, one per round.
    public var roundNanoseconds: [Double]
    public var nanosecondsPerDecision: Double { SchedBenchmark.median(roundNanoseconds) }
}

/// The weights scenario for one policy.
public struct SchedOverhead: Sendable, Equatable {
    public var policy: String
    public var simulated: SchedTime
    /// `doSchedule` calls in the simulated window.
    public var decisions: Int
    /// Scheduler calls of any kind (doSchedule, timers, wake, nextTimerDeadline, …).
    public var calls: Int
    /// Host nanoseconds inside scheduler calls, per round (clock-read cost subtracted).
    public var roundHostNanoseconds: [Double]
    /// CPU shares the two domains got (weights 256 and 512), a check that the scenario ran.
    public var shares: (Double, Double)

    public var hostNanoseconds: Double { SchedBenchmark.median(roundHostNanoseconds) }
    /// Host time in the scheduler as a percentage of the simulated CPU time.
    public var percent: Double { hostNanoseconds / Double(simulated.nanoseconds) * 100 }

    public static func == (a: SchedOverhead, b: SchedOverhead) -> Bool {
        a.policy == b.policy && a.simulated == b.simulated && a.decisions == b.decisions && a.calls == b.calls
            && a.roundHostNanoseconds == b.roundHostNanoseconds && a.shares == b.shares
    }
}

public struct SchedBenchmarkReport: Sendable {
    public var pcpus: Int
    public var rounds: Int
    public var quick: Bool
    public var costs: [SchedDecisionCost]
    public var overheads: [SchedOverhead]

    public func cost(policy: String, vcpus: Int) -> SchedDecisionCost? {
        costs.first { $0.policy == policy && $0.vcpus == vcpus }
    }

    public var text: String {
        func col(_ s: String, _ w: Int) -> String { s.padding(toLength: w, withPad: " ", startingAt: 0) }
        var lines: [String] = []
        lines.append("scheduling decision cost, \(pcpus) pCPUs, N CPU hogs over 4 domains, median of \(rounds) rounds\(quick ? " (quick)" : "")")
        lines.append(col("policy", 9) + col("N", 6) + col("running", 9) + col("decisions", 11) + "ns/decision")
        for c in costs {
            lines.append(col(c.policy, 9) + col("\(c.vcpus)", 6) + col("\(c.running)", 9)
                         + col("\(c.decisionsPerRound)", 11) + String(format: "%.0f", c.nanosecondsPerDecision))
        }
        lines.append("null: N vCPUs inserted, min(N, \(pcpus)) assigned and running, the rest waiting; a decision forced every 1 ms per pCPU.")
        lines.append("rtds: period 10 ms, budget 10 ms x \(pcpus) / N, extratime off (the reservations fill the pool exactly).")
        for o in overheads {
            let perDecision = o.decisions > 0 ? o.hostNanoseconds / Double(o.decisions) : .nan
            lines.append(String(format: "overhead, weights scenario (%@, weights 256:512, 1 pCPU, %.0f s simulated): "
                                + "%d decisions, %d scheduler calls, %.1f us host time in the scheduler "
                                + "(%.0f ns/decision) = %.5f %% of the pCPU; shares %.3f : %.3f",
                                o.policy, o.simulated.seconds, o.decisions, o.calls, o.hostNanoseconds / 1000,
                                perDecision, o.percent, o.shares.0, o.shares.1))
        }
        return lines.joined(separator: "\n")
    }
}

public enum SchedBenchmark {
    public static let policies: [SchedulerKind] = [.credit, .credit2, .rtds, .null]
    public static let vcpuCounts = [8, 64, 512]
    public static let pcpuCount = 4
    public static let domainCount = 4
    /// The slice given to a decision that has none (idle, null's static assignment).
    static let forcedSlice = SchedTime.milliseconds(1)

    /// Decisions per round: enough for timers to fire many times over (credit's accounting
    /// comes every 30 ms, a few decisions apart).
    public static func decisionsPerRound(quick: Bool) -> Int { quick ? 2_000 : 50_000 }

    public static func run(rounds: Int = 5, quick: Bool = false) throws(SchedError) -> SchedBenchmarkReport {
        precondition(rounds > 0, "rounds must be positive")
        var costs: [SchedDecisionCost] = []
        for kind in policies {
            for n in vcpuCounts {
                costs.append(try decisionCost(kind, vcpus: n, rounds: rounds, decisions: decisionsPerRound(quick: quick)))
            }
        }
        let simulated = quick ? SchedTime.seconds(1) : SchedTime.seconds(10)
        var overheads: [SchedOverhead] = []
        for kind in [SchedulerKind.credit, .credit2] {
            overheads.append(try weightsOverhead(kind, simulated: simulated, rounds: rounds))
        }
        return SchedBenchmarkReport(pcpus: pcpuCount, rounds: rounds, quick: quick, costs: costs, overheads: overheads)
    }

    // MARK: decision cost

    public static func decisionCost(_ kind: SchedulerKind, vcpus n: Int, rounds: Int, decisions: Int) throws(SchedError) -> SchedDecisionCost {
        let clock = ManualClock()
        let s = try makeScheduler(kind, pcpuCount: pcpuCount, clock: clock)
        for d in 1...domainCount { try s.addDomain(DomainID(UInt32(d))) }
        var ids: [VCPUID] = []
        for i in 0..<n { ids.append(VCPUID(UInt32(1 + i % domainCount), i / domainCount)) }
        for id in ids { try s.insert(id) }
        if kind == .rtds {
            let period = 10_000
            let budget = max(RTDSScheduler.minimumBudgetMicroseconds, period * pcpuCount / n)
            for d in 1...domainCount {
                try s.adjust(domain: DomainID(UInt32(d)),
                             DomainSchedParams(periodMicroseconds: period, budgetMicroseconds: min(budget, period), extratime: false))
            }
        }
        for id in ids { s.wake(id) }
        let driver = DecisionDriver(scheduler: s, clock: clock, pcpuCount: pcpuCount)
        driver.serve()
        // Warm up: fill caches, let every queue reach its steady state.
        driver.run(decisions: max(decisions / 4, 100))
        var perRound: [Double] = []
        for _ in 0..<rounds {
            let t0 = hostNanoseconds()
            let made = driver.run(decisions: decisions)
            let t1 = hostNanoseconds()
            perRound.append(Double(t1 - t0) / Double(made))
        }
        return SchedDecisionCost(policy: kind.name, vcpus: n, running: kind == .null ? min(n, pcpuCount) : n,
                                 decisionsPerRound: decisions, roundNanoseconds: perRound)
    }

    // MARK: weights scenario

    public static func weightsOverhead(_ kind: SchedulerKind, simulated: SchedTime, rounds: Int) throws(SchedError) -> SchedOverhead {
        let clockCost = timedRegionCost()
        var perRound: [Double] = []
        var decisions = 0, calls = 0
        var shares = (0.0, 0.0)
        for _ in 0..<rounds {
            let clock = ManualClock()
            let timed = TimedScheduler(try makeScheduler(kind, pcpuCount: 1, clock: clock))
            let sim = SchedSimulator(scheduler: timed, clock: clock)
            try sim.addVCPU(VCPUID(1, 0), .hog)
            try sim.addVCPU(VCPUID(2, 0), .hog)
            try timed.adjust(domain: DomainID(2), DomainSchedParams(weight: 512))
            timed.resetCounters()
            sim.run(until: simulated)
            perRound.append(max(0, Double(timed.spent) - clockCost * Double(timed.calls)))
            decisions = timed.decisions
            calls = timed.calls
            shares = (sim.share(domain: DomainID(1)), sim.share(domain: DomainID(2)))
        }
        return SchedOverhead(policy: kind.name, simulated: simulated, decisions: decisions, calls: calls,
                             roundHostNanoseconds: perRound, shares: shares)
    }

    /// What one empty timed region costs (the gap between two back-to-back clock reads, as
    /// `TimedScheduler` sees it around a call), median of several batches, in ns.
    static func timedRegionCost() -> Double {
        var samples: [Double] = []
        for _ in 0..<11 {
            let k = 10_000
            var total: Int64 = 0
            for _ in 0..<k {
                let a = hostNanoseconds()
                total += hostNanoseconds() - a
            }
            samples.append(Double(total) / Double(k))
        }
        return median(samples)
    }

    // MARK: helpers

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return .nan }
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }

    /// CLOCK_MONOTONIC in nanoseconds.
    @inline(__always) static func hostNanoseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }
}

/// Plays the runtime for the decision benchmark: per-pCPU slice ends on a manual clock.
final class DecisionDriver {
    let scheduler: any Scheduler
    let clock: ManualClock
    var deadlines: [SchedTime]

    init(scheduler: any Scheduler, clock: ManualClock, pcpuCount: Int) {
        self.scheduler = scheduler
        self.clock = clock
        deadlines = Array(repeating: clock.now, count: pcpuCount)
    }

    @inline(__always) private func decide(_ p: Int) {
        let d = scheduler.doSchedule(pcpu: PCPUID(p))
        let slice = d.timeslice.flatMap { $0 > .zero ? $0 : nil } ?? SchedBenchmark.forcedSlice
        deadlines[p] = clock.now + slice
    }

    /// Calls `doSchedule` on every pCPU with a pending reschedule request; returns how many.
    @discardableResult func serve() -> Int {
        var made = 0
        var rounds = 0
        while true {
            let due = scheduler.takeRescheduleRequests()
            if due.isEmpty { return made }
            for p in due { decide(p.rawValue); made += 1 }
            rounds += 1
            precondition(rounds < 10_000, "\(scheduler.kind): reschedule requests never settle")
        }
    }

    /// Advances from slice end to slice end until at least `decisions` decisions were made.
    @discardableResult func run(decisions: Int) -> Int {
        var made = 0
        var timerRuns = 0
        while made < decisions {
            var p = 0
            var t = deadlines[0]
            for i in 1..<deadlines.count where deadlines[i] < t {
                p = i
                t = deadlines[i]
            }
            if let timer = scheduler.nextTimerDeadline, timer <= t {
                if timer > clock.now { clock.advance(to: timer) }
                scheduler.runTimers()
                made += serve()
                timerRuns += 1
                precondition(timerRuns < 1_000_000, "\(scheduler.kind): timers do not advance")
                continue
            }
            timerRuns = 0
            if t > clock.now { clock.advance(to: t) }
            decide(p)
            made += 1
            made += serve()
        }
        return made
    }
}

/// Forwards every call to a policy and adds up the host time spent inside the calls.
final class TimedScheduler: Scheduler {
    let inner: any Scheduler
    private(set) var spent: Int64 = 0
    private(set) var calls = 0
    private(set) var decisions = 0

    init(_ inner: any Scheduler) { self.inner = inner }

    func resetCounters() {
        spent = 0
        calls = 0
        decisions = 0
    }

    @inline(__always) private func begin() -> Int64 { SchedBenchmark.hostNanoseconds() }
    @inline(__always) private func end(_ t0: Int64) {
        spent += SchedBenchmark.hostNanoseconds() - t0
        calls += 1
    }

    var kind: SchedulerKind { inner.kind }
    var pcpus: PCPUSet { inner.pcpus }
    var clock: any SchedClock { inner.clock }

    func addDomain(_ domain: DomainID) throws(SchedError) {
        let t0 = begin(); defer { end(t0) }
        try inner.addDomain(domain)
    }
    func removeDomain(_ domain: DomainID) throws(SchedError) {
        let t0 = begin(); defer { end(t0) }
        try inner.removeDomain(domain)
    }
    func insert(_ vcpu: VCPUID, affinity: Affinity) throws(SchedError) {
        let t0 = begin(); defer { end(t0) }
        try inner.insert(vcpu, affinity: affinity)
    }
    func remove(_ vcpu: VCPUID) throws(SchedError) {
        let t0 = begin(); defer { end(t0) }
        try inner.remove(vcpu)
    }
    func sleep(_ vcpu: VCPUID) {
        let t0 = begin(); defer { end(t0) }
        inner.sleep(vcpu)
    }
    func wake(_ vcpu: VCPUID) {
        let t0 = begin(); defer { end(t0) }
        inner.wake(vcpu)
    }
    func yield(_ vcpu: VCPUID) {
        let t0 = begin(); defer { end(t0) }
        inner.yield(vcpu)
    }
    func setAffinity(_ vcpu: VCPUID, _ affinity: Affinity) throws(SchedError) {
        let t0 = begin(); defer { end(t0) }
        try inner.setAffinity(vcpu, affinity)
    }
    func pickPCPU(for vcpu: VCPUID) -> PCPUID {
        let t0 = begin(); defer { end(t0) }
        return inner.pickPCPU(for: vcpu)
    }
    func refund(_ vcpu: VCPUID, _ time: SchedTime) {
        let t0 = begin(); defer { end(t0) }
        inner.refund(vcpu, time)
    }
    func doSchedule(pcpu: PCPUID) -> SchedDecision {
        let t0 = begin(); defer { end(t0) }
        decisions += 1
        return inner.doSchedule(pcpu: pcpu)
    }
    var nextTimerDeadline: SchedTime? {
        let t0 = begin(); defer { end(t0) }
        return inner.nextTimerDeadline
    }
    func runTimers() {
        let t0 = begin(); defer { end(t0) }
        inner.runTimers()
    }
    func takeRescheduleRequests() -> PCPUSet {
        let t0 = begin(); defer { end(t0) }
        return inner.takeRescheduleRequests()
    }
    func domainParameters(_ domain: DomainID) throws(SchedError) -> DomainSchedParams {
        try inner.domainParameters(domain)
    }
    func adjust(domain: DomainID, _ params: DomainSchedParams) throws(SchedError) {
        try inner.adjust(domain: domain, params)
    }
    func vcpuParameters(_ vcpu: VCPUID) throws(SchedError) -> DomainSchedParams {
        try inner.vcpuParameters(vcpu)
    }
    func adjust(vcpu: VCPUID, _ params: DomainSchedParams) throws(SchedError) {
        try inner.adjust(vcpu: vcpu, params)
    }
    var globalParameters: GlobalSchedParams { inner.globalParameters }
    func adjustGlobal(_ params: GlobalSchedParams) throws(SchedError) {
        try inner.adjustGlobal(params)
    }
    func dump() -> String { inner.dump() }
}
