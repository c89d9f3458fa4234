// `visor bench shares`: the scheduling runtime on real engines, with the figures whose
// mechanisms the tests check (SchedulingRuntimeTests): two CPU hogs with weights 256 and 512 on
// one pCPU (shares against 1/3 and 2/3), a lone hog capped at 50 % (share against 50 %), and a
// sleeper next to a hog (wake-up latency, credit's BOOST), all under `--sched credit` unless
// told otherwise. With `busyLoops`, that many threads spin in the process beside each scenario
// (other work on the host): the pool's accounting and the threads' CPU time as the kernel counts
// it then show whether the weights hold for the CPU time the vCPUs really got.

import Foundation
import Visor
import VisorSched

public struct ShareBenchmarkReport: Sendable {
    public struct Row: Sendable {
        public var engine: String
        public var lightShare: Double, heavyShare: Double
        /// The same two as parts of what the pool charged them both, and of the CPU time the
        /// host gave their vCPU threads (the kernel's count), in percent.
        public var lightOfCharged: Double, heavyOfCharged: Double
        public var lightOfThreadCPU: Double, heavyOfThreadCPU: Double
        /// The weights scenario in milliseconds: what the pool charged each hog, what the kernel
        /// counted for its vCPU thread, and the measured wall time.
        public var charged: [Double], threadCPU: [Double], wall: Double
        public var cappedShare: Double
        public var sleeperLatencyAverage: Double, sleeperLatencyMax: Double
    }
    public var rows: [Row]
    public var seconds: Double
    public var scheduler: String
    public var busyLoops: Int

    public var text: String {
        let beside = busyLoops == 0 ? "" : ", \(busyLoops) busy-loop thread\(busyLoops == 1 ? "" : "s") beside"
        var lines = ["\(scheduler) scheduler, 1 pCPU, \(String(format: "%.0f", seconds)) s per scenario\(beside)",
                     "engine  weights 256:512 (ideal 33.3 : 66.7 %): of the wall time, of what the pool charged, of the threads' CPU time"
                     + "   cap=50 (ideal ≤ 50 %)  sleeper next to a hog: wake latency avg / max"]
        for r in rows {
            lines.append(r.engine.padding(toLength: 8, withPad: " ", startingAt: 0)
                         + String(format: "%5.1f : %5.1f %%   %5.1f : %5.1f %%   %5.1f : %5.1f %%", r.lightShare, r.heavyShare,
                                  r.lightOfCharged, r.heavyOfCharged, r.lightOfThreadCPU, r.heavyOfThreadCPU)
                             .padding(toLength: 106, withPad: " ", startingAt: 0)
                         + String(format: "%5.1f %%", r.cappedShare).padding(toLength: 22, withPad: " ", startingAt: 0)
                         + String(format: "%.2f / %.2f ms", r.sleeperLatencyAverage / 1e6, r.sleeperLatencyMax / 1e6))
        }
        lines.append("the weights scenario in ms: charged by the pool, run by the vCPU threads (the kernel's count), of the wall time")
        for r in rows {
            lines.append(r.engine.padding(toLength: 8, withPad: " ", startingAt: 0)
                         + String(format: "charged %.1f + %.1f ms, threads ran %.1f + %.1f ms, of %.1f ms",
                                  r.charged[0], r.charged[1], r.threadCPU[0], r.threadCPU[1], r.wall))
        }
        return lines.joined(separator: "\n")
    }
}

public enum ShareBenchmark {
    public static func run(engineNames: [String], seconds: Double, scheduler: SchedulerKind = .credit,
                           busyLoops: Int = 0) throws -> ShareBenchmarkReport {
        var rows: [ShareBenchmarkReport.Row] = []
        for name in engineNames {
            let weights = try runScenario([("light", "cpuhog", "ms=3600000", 256, nil),
                                           ("heavy", "cpuhog", "ms=3600000", 512, nil)],
                                          engine: name, seconds: seconds, scheduler: scheduler, busyLoops: busyLoops)
            let capped = try runScenario([("capped", "cpuhog", "ms=3600000", nil, 50)],
                                         engine: name, seconds: seconds, scheduler: scheduler, busyLoops: busyLoops)
            // Sleeps fill about a quarter of the scenario, which lasts until the sleeper has made
            // them and printed its figures: on a busy host its boot and wake-ups take longer
            // (given up a minute past --seconds).
            let boost = try runScenario([("hog", "cpuhog", "ms=3600000", nil, nil),
                                         ("sleeper", "sleeper", "ms=10 count=\(max(10, Int(seconds * 25))) warmup=20 mode=oneshot", nil, nil)],
                                        engine: name, seconds: seconds + 60, scheduler: scheduler, endsWith: 1,
                                        busyLoops: busyLoops)
            guard let latency = InterruptBenchmark.fields(boost.outputs[1], prefix: "sleeper: latency_ns "),
                  let average = latency["avg"], let maximum = latency["max"] else {
                throw BenchmarkError.guestFailed("the sleeper printed no latency on \(name):\n\(boost.outputs[1])")
            }
            let charged = parts(weights.cpuNanoseconds), threadCPU = parts(weights.threadCPUNanoseconds)
            rows.append(.init(engine: name, lightShare: weights.shares[0], heavyShare: weights.shares[1],
                              lightOfCharged: charged[0], heavyOfCharged: charged[1],
                              lightOfThreadCPU: threadCPU[0], heavyOfThreadCPU: threadCPU[1],
                              charged: weights.cpuNanoseconds.map { Double($0) / 1e6 },
                              threadCPU: weights.threadCPUNanoseconds.map { Double($0) / 1e6 },
                              wall: Double(weights.wallNanoseconds) / 1e6,
                              cappedShare: capped.shares[0], sleeperLatencyAverage: average, sleeperLatencyMax: maximum))
        }
        return ShareBenchmarkReport(rows: rows, seconds: seconds, scheduler: scheduler.name, busyLoops: busyLoops)
    }

    /// Each of `amounts` in percent of their sum.
    static func parts(_ amounts: [UInt64]) -> [Double] {
        let total = Double(amounts.reduce(0, &+))
        return amounts.map { total > 0 ? 100 * Double($0) / total : 0 }
    }

    /// Runs the domains (name, built-in guest, command line, weight, cap) together on one pCPU
    /// for `seconds`, or until domain `endsWith` has ended; returns each one's share of the pCPU
    /// in percent and its console output.
    static func runScenario(_ specs: [(String, String, String, Int?, Int?)], engine name: String, seconds: Double,
                            scheduler: SchedulerKind, endsWith: Int? = nil, busyLoops: Int = 0) throws -> ScenarioResult {
        try BenchmarkGuest.runScenario(
            specs.map { ScenarioDomain(name: $0.0, guest: $0.1, commandLine: $0.2, weight: $0.3, cap: $0.4) },
            engine: name, seconds: seconds, scheduler: scheduler, endsWith: endsWith, busyLoops: busyLoops)
    }
}
