// A deterministic discrete-event simulator that runs a pool of pCPUs against any `Scheduler`.
//
// It plays the part of Visor's runtime: vCPUs have a scripted behaviour (CPU hog, periodic
// sleeper, blocked), the clock is a `ManualClock` moved from event to event, and the simulator
// calls the scheduler exactly as the runtime will (sleep/wake, timers, reschedule requests,
// doSchedule at slice ends). It accounts CPU time per vCPU, per domain and per pCPU, wake-to-run
// latency, the longest wait of a runnable vCPU, and checks invariants (a vCPU on two pCPUs at
// once, running outside its hard affinity, running while blocked). With `recordSegments` it keeps
// every run interval for timeline assertions.
//
// Event order at one instant: bursts that end (the vCPU blocks), wake-ups, scripted actions,
// scheduler timers, then `doSchedule` on every pCPU that was tickled or whose slice ended (lowest
// pCPU first, repeated until no request is left). Ownership: single-threaded, like the scheduler.

/// What a simulated vCPU does with the CPU.
public enum SimWorkload: Sendable, Equatable {
    /// Always runnable, never blocks.
    case hog
    /// Wakes at `phase + k × period`, needs `burst` of CPU, then blocks until the next wake-up
    /// (a wake-up that finds it still busy is dropped).
    case periodic(period: SchedTime, burst: SchedTime, phase: SchedTime)
    /// Blocked until a scripted action wakes it (`SchedSimulator.setWorkload`).
    case blocked
}

public final class SchedSimulator {
    public struct Segment: Equatable, Sendable {
        public enum End: Equatable, Sendable { case preempted, blocked, yielded, removed, stillRunning }
        public var vcpu: VCPUID
        public var pcpu: PCPUID
        public var start: SchedTime
        public var end: SchedTime
        public var endedBy: End
        public var length: SchedTime { end - start }
    }

    final class SimVCPU {
        let id: VCPUID
        var workload: SimWorkload
        var hard: PCPUSet
        var awake = false
        /// CPU still needed before blocking (nil: forever).
        var remaining: SchedTime?
        var nextWake: SchedTime?
        var runningOn: PCPUID?
        var cpuTime = SchedTime.zero
        var wokeAt: SchedTime?
        var waitingSince: SchedTime?
        var maxWait = SchedTime.zero
        var latencies: [SchedTime] = []
        var perPCPU: [SchedTime]
        var yieldPending = false
        init(id: VCPUID, workload: SimWorkload, hard: PCPUSet, pcpuCount: Int) {
            self.id = id
            self.workload = workload
            self.hard = hard
            perPCPU = Array(repeating: .zero, count: pcpuCount)
        }
    }

    struct SimPCPU {
        var current: VCPUID?
        var deadline: SchedTime?
        var segmentStart = SchedTime.zero
        var busy = SchedTime.zero
    }

    public let scheduler: any Scheduler
    public let clock: ManualClock
    public var recordSegments = false
    public private(set) var segments: [Segment] = []
    /// Invariant violations; a correct scheduler leaves all at 0.
    public private(set) var affinityViolations = 0
    public private(set) var doubleRuns = 0
    public private(set) var blockedChosen = 0
    public private(set) var decisions = 0

    var vcpus: [VCPUID: SimVCPU] = [:]
    var order: [VCPUID] = []
    var pcpus: [SimPCPU]
    var actions: [(time: SchedTime, seq: Int, body: (SchedSimulator) -> Void)] = []
    var actionSeq = 0
    var statsStart = SchedTime.zero

    public init(scheduler: any Scheduler, clock: ManualClock) {
        self.scheduler = scheduler
        self.clock = clock
        pcpus = Array(repeating: SimPCPU(), count: scheduler.pcpus.count)
    }

    public var now: SchedTime { clock.now }

    // MARK: set-up

    /// Registers the domain with the scheduler if it is new.
    public func ensureDomain(_ d: DomainID) throws(SchedError) {
        do { try scheduler.addDomain(d) } catch .domainExists { }
    }

    /// Inserts a vCPU into the scheduler (creating its domain if needed) and starts its workload.
    public func addVCPU(_ id: VCPUID, _ workload: SimWorkload, affinity: Affinity = .any) throws(SchedError) {
        try ensureDomain(id.domain)
        try scheduler.insert(id, affinity: affinity)
        let hard = (affinity.hard ?? scheduler.pcpus).intersection(scheduler.pcpus)
        let v = SimVCPU(id: id, workload: workload, hard: hard, pcpuCount: pcpus.count)
        vcpus[id] = v
        order.append(id)
        start(v, workload)
    }

    /// Replaces a vCPU's behaviour now (e.g. wake a `.blocked` vCPU as a hog).
    public func setWorkload(_ id: VCPUID, _ workload: SimWorkload) {
        guard let v = vcpus[id] else { preconditionFailure("unknown vCPU \(id)") }
        start(v, workload)
    }

    private func start(_ v: SimVCPU, _ workload: SimWorkload) {
        v.workload = workload
        switch workload {
        case .hog:
            v.remaining = nil
            v.nextWake = nil
            if !v.awake { wakeUp(v) }
        case .periodic(let period, _, let phase):
            var first = phase
            if first < now {
                let k = (now - phase).nanoseconds / period.nanoseconds + 1
                first = phase + period * k
            }
            v.nextWake = first
            if v.awake && v.runningOn == nil { v.remaining = .zero }
        case .blocked:
            v.nextWake = nil
            if v.awake {
                v.awake = false
                scheduler.sleep(v.id)
            }
        }
    }

    /// Removes a vCPU from the scheduler and from the simulation (its statistics are kept).
    public func removeVCPU(_ id: VCPUID) throws(SchedError) {
        guard let v = vcpus[id] else { throw .unknownVCPU(id) }
        if let p = v.runningOn { endSegment(p, by: .removed) }
        v.awake = false
        v.nextWake = nil
        v.waitingSince = nil
        try scheduler.remove(id)
    }

    /// `xl vcpu-pin` during the run.
    public func setAffinity(_ id: VCPUID, _ affinity: Affinity) throws(SchedError) {
        try scheduler.setAffinity(id, affinity)
        vcpus[id]?.hard = (affinity.hard ?? scheduler.pcpus).intersection(scheduler.pcpus)
    }

    /// The running vCPU yields at this instant.
    public func yieldVCPU(_ id: VCPUID) {
        vcpus[id]?.yieldPending = true
        scheduler.yield(id)
    }

    /// Runs `body` when the clock reaches `time` (after wake-ups, before timers).
    public func at(_ time: SchedTime, _ body: @escaping (SchedSimulator) -> Void) {
        actions.append((time, actionSeq, body))
        actionSeq += 1
        actions.sort { $0.time != $1.time ? $0.time < $1.time : $0.seq < $1.seq }
    }

    /// Forgets CPU times, busy times, latencies, waits and segments gathered so far.
    public func resetStatistics() {
        statsStart = now
        for v in vcpus.values {
            v.cpuTime = .zero
            v.latencies = []
            v.maxWait = .zero
            if v.waitingSince != nil { v.waitingSince = now }
            v.perPCPU = Array(repeating: .zero, count: pcpus.count)
        }
        for i in pcpus.indices { pcpus[i].busy = .zero }
        segments = []
        for i in pcpus.indices where pcpus[i].current != nil { pcpus[i].segmentStart = now }
    }

    // MARK: results

    public var window: SchedTime { now - statsStart }
    public func cpuTime(_ id: VCPUID) -> SchedTime { vcpus[id]?.cpuTime ?? .zero }
    public func cpuTime(domain: DomainID) -> SchedTime {
        vcpus.values.filter { $0.id.domain == domain }.reduce(.zero) { $0 + $1.cpuTime }
    }
    /// CPU time over the statistics window, as a fraction of one pCPU.
    public func share(_ id: VCPUID) -> Double { Double(cpuTime(id).nanoseconds) / Double(window.nanoseconds) }
    public func share(domain: DomainID) -> Double {
        Double(cpuTime(domain: domain).nanoseconds) / Double(window.nanoseconds)
    }
    public func busyFraction(_ p: PCPUID) -> Double { Double(pcpus[p.rawValue].busy.nanoseconds) / Double(window.nanoseconds) }
    public func cpuTime(_ id: VCPUID, on p: PCPUID) -> SchedTime { vcpus[id]?.perPCPU[p.rawValue] ?? .zero }
    public func latencies(_ id: VCPUID) -> [SchedTime] { vcpus[id]?.latencies ?? [] }
    public func maxWait(_ id: VCPUID) -> SchedTime {
        guard let v = vcpus[id] else { return .zero }
        if let s = v.waitingSince { return max(v.maxWait, now - s) }
        return v.maxWait
    }
    public func running(on p: PCPUID) -> VCPUID? { pcpus[p.rawValue].current }
    public func pcpu(of id: VCPUID) -> PCPUID? { vcpus[id]?.runningOn }
    /// Segments recorded so far, with the ones still running closed at `now`.
    public var timeline: [Segment] {
        var all = segments
        for (i, p) in pcpus.enumerated() {
            if let v = p.current {
                all.append(Segment(vcpu: v, pcpu: PCPUID(i), start: p.segmentStart, end: now, endedBy: .stillRunning))
            }
        }
        return all.sorted { $0.start != $1.start ? $0.start < $1.start : $0.pcpu < $1.pcpu }
    }

    // MARK: the loop

    /// Runs until the clock reaches `end`.
    public func run(until end: SchedTime) {
        while true {
            serveReschedules()
            guard let t = nextEventTime(), t <= end else {
                advance(to: end)
                return
            }
            advance(to: t)
            step()
        }
    }

    public func run(for duration: SchedTime) { run(until: now + duration) }

    private func nextEventTime() -> SchedTime? {
        var t: SchedTime? = nil
        func consider(_ x: SchedTime?) { if let x, t == nil || x < t! { t = x } }
        consider(actions.first?.time)
        consider(scheduler.nextTimerDeadline)
        for p in pcpus {
            consider(p.deadline)
            if let id = p.current, let v = vcpus[id], v.awake, let r = v.remaining { consider(now + r) }
        }
        for v in vcpus.values { consider(v.nextWake) }
        return t.map { max($0, now) }
    }

    private func advance(to t: SchedTime) {
        let delta = t - now
        if delta > .zero {
            for i in pcpus.indices {
                guard let id = pcpus[i].current, let v = vcpus[id] else { continue }
                if v.awake {
                    v.cpuTime += delta
                    v.perPCPU[i] += delta
                    pcpus[i].busy += delta
                    if let r = v.remaining { v.remaining = r - delta }
                } else {
                    blockedChosen += 1
                }
            }
        }
        clock.advance(to: t)
    }

    private func step() {
        // 1. Bursts that are done: the vCPU blocks.
        for i in pcpus.indices {
            guard let id = pcpus[i].current, let v = vcpus[id], v.awake, let r = v.remaining, r <= .zero else { continue }
            v.awake = false
            v.remaining = nil
            scheduler.sleep(id)
        }
        // 2. Wake-ups.
        for id in order {
            guard let v = vcpus[id], let w = v.nextWake, w <= now else { continue }
            if case .periodic(let period, let burst, _) = v.workload {
                v.nextWake = w + period
                if !v.awake {
                    v.remaining = burst
                    wakeUp(v)
                }
            } else {
                v.nextWake = nil
            }
        }
        // 3. Scripted actions.
        while let a = actions.first, a.time <= now {
            actions.removeFirst()
            a.body(self)
        }
        // 4. Scheduler timers.
        var guardCount = 0
        while let d = scheduler.nextTimerDeadline, d <= now {
            scheduler.runTimers()
            guardCount += 1
            precondition(guardCount < 1_000, "\(scheduler.kind) timer at \(d) does not advance")
        }
    }

    private func wakeUp(_ v: SimVCPU) {
        v.awake = true
        v.wokeAt = now
        if v.runningOn == nil { v.waitingSince = now }
        scheduler.wake(v.id)
    }

    private func serveReschedules() {
        var rounds = 0
        while true {
            var due = scheduler.takeRescheduleRequests()
            for (i, p) in pcpus.enumerated() { if let d = p.deadline, d <= now { due.insert(PCPUID(i)) } }
            if due.isEmpty { return }
            for p in due { decide(p) }
            rounds += 1
            precondition(rounds < 10_000, "\(scheduler.kind): reschedule requests never settle at \(now)")
        }
    }

    private func decide(_ p: PCPUID) {
        let d = scheduler.doSchedule(pcpu: p)
        decisions += 1
        let i = p.rawValue
        if let ts = d.timeslice {
            precondition(ts > .zero, "\(scheduler.kind) returned a non-positive slice \(ts)")
            pcpus[i].deadline = now + ts
        } else {
            pcpus[i].deadline = nil
        }
        if d.vcpu == pcpus[i].current { return }
        if pcpus[i].current != nil {
            let old = vcpus[pcpus[i].current!]!
            endSegment(p, by: old.awake ? (old.yieldPending ? .yielded : .preempted) : .blocked)
        }
        guard let id = d.vcpu, let v = vcpus[id] else { return }
        if let other = v.runningOn {
            doubleRuns += 1
            endSegment(other, by: .preempted)
        }
        if !v.hard.contains(p) { affinityViolations += 1 }
        if !v.awake { blockedChosen += 1 }
        v.runningOn = p
        pcpus[i].current = id
        pcpus[i].segmentStart = now
        if let w = v.wokeAt {
            v.latencies.append(now - w)
            v.wokeAt = nil
        }
        if let s = v.waitingSince {
            v.maxWait = max(v.maxWait, now - s)
            v.waitingSince = nil
        }
    }

    private func endSegment(_ p: PCPUID, by reason: Segment.End) {
        let i = p.rawValue
        guard let id = pcpus[i].current, let v = vcpus[id] else { return }
        if recordSegments && now > pcpus[i].segmentStart {
            segments.append(Segment(vcpu: id, pcpu: p, start: pcpus[i].segmentStart, end: now, endedBy: reason))
        }
        v.runningOn = nil
        v.yieldPending = false
        if v.awake { v.waitingSince = now }
        pcpus[i].current = nil
    }
}
