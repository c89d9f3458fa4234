// `visor bench sched`: the machinery runs and reports a figure for every policy and N. A smoke
// test, not a timed assertion: the figures themselves live in BENCHMARKS.md.

import Foundation
import Testing
import Visor
import VisorBench

@Suite("visor bench sched")
struct SchedBenchTests {
    @Test("quick mode reports a finite positive ns/decision for every policy and N, and the overhead")
    func quickReport() throws {
        let report = try SchedBenchmark.run(rounds: 3, quick: true)
        #expect(report.costs.count == SchedBenchmark.policies.count * SchedBenchmark.vcpuCounts.count)
        for kind in SchedBenchmark.policies {
            for n in SchedBenchmark.vcpuCounts {
                let cost = try #require(report.cost(policy: kind.name, vcpus: n), "\(kind) N=\(n) missing")
                #expect(cost.nanosecondsPerDecision.isFinite && cost.nanosecondsPerDecision > 0, "\(kind) N=\(n)")
                #expect(cost.roundNanoseconds.count == 3)
                #expect(cost.running == (kind.name == "null" ? min(n, SchedBenchmark.pcpuCount) : n))
                #expect(report.text.contains(kind.name))
            }
        }
        #expect(report.overheads.map(\.policy) == ["credit", "credit2"])
        for o in report.overheads {
            #expect(o.decisions > 0, "\(o.policy)")
            #expect(o.percent.isFinite && o.percent >= 0, "\(o.policy)")
            // The scenario really ran: weights 256 and 512 share the pCPU about 1/3 : 2/3.
            #expect(abs(o.shares.0 - 1.0 / 3) < 0.05 && abs(o.shares.1 - 2.0 / 3) < 0.05, "\(o.policy): \(o.shares)")
        }
        #expect(report.text.contains("overhead, weights scenario"))
    }

    @Test("visor bench sched --quick exits 0 and prints the table")
    func cli() throws {
        let r = try runVisor(["bench", "sched", "--quick", "--rounds", "1"], timeout: 120)
        #expect(!r.timedOut)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("ns/decision"))
        #expect(r.stdout.contains("overhead, weights scenario"))
    }
}
