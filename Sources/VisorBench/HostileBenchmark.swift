// `visor bench hostile`: what each hostile guest (Guests/hostile, one attack per mode) costs a
// well-behaved neighbour and the host's control, per engine. Each mode runs beside a cpuhog with
// an equal share of one pCPU under the credit scheduler (a two-vCPU hostile domain has weight
// 128 to the hog's 256: credit weighs each active vCPU, as Xen's does) for `seconds` from the
// moment the attack starts (the hostile guest's boot is not measured); then both
// are stopped the way --timeout, Ctrl-] and SIGTERM stop them. Figures: the neighbour's share of
// the pCPU (fair: 50 %), its part of the pCPU time the pool handed out, the hostile domain's
// share and how it ended, and the stop latency (request → every thread of both domains ended).
// The tests (HostileGuestTests) check the same with loose bounds and measure the end-to-end
// latencies of Ctrl-] and SIGTERM on a terminal.

import Foundation
import Visor
import VisorSched

public struct HostileBenchmarkReport: Sendable {
    public struct Row: Sendable {
        public var engine: String
        public var mode: String
        /// The neighbour's share of the pCPU, percent of wall time.
        public var neighbourShare: Double
        /// The neighbour's part of the pCPU time handed out to the two domains, percent.
        public var neighbourFraction: Double
        public var hostileShare: Double
        public var hostileEnded: String
        public var stopMilliseconds: Double
    }
    public var rows: [Row]
    public var seconds: Double

    public var text: String {
        func col(_ s: String, _ w: Int) -> String { s.padding(toLength: w, withPad: " ", startingAt: 0) }
        var lines = ["hostile guests beside a cpuhog with an equal share: 1 pCPU, credit scheduler, "
                     + "\(String(format: "%.0f", seconds)) s per mode",
                     col("engine", 8) + col("mode", 17) + col("neighbour (fair 50 %)", 23) + col("of time handed out", 20)
                     + col("hostile", 10) + col("stop", 11) + "hostile ended"]
        for r in rows {
            lines.append(col(r.engine, 8) + col(r.mode, 17) + col(String(format: "%.1f %%", r.neighbourShare), 23)
                         + col(String(format: "%.1f %%", r.neighbourFraction), 20)
                         + col(String(format: "%.1f %%", r.hostileShare), 10)
                         + col(String(format: "%.1f ms", r.stopMilliseconds), 11) + r.hostileEnded)
        }
        return lines.joined(separator: "\n")
    }
}

public enum HostileBenchmark {
    /// Every mode of the hostile guest.
    public static let modes = ["flood", "cli-spin", "apic-1ns", "hypercall-storm", "ipi-storm", "xmodify", "beyond-ram",
                               "fault-loop", "triple-fault"]

    /// vCPUs the mode needs (the IPI storm and cross-modifying code use a second one).
    public static func vcpus(for mode: String) -> Int { mode == "ipi-storm" || mode == "xmodify" ? 2 : 1 }

    public static func run(engineNames: [String], modes: [String] = modes, seconds: Double) throws -> HostileBenchmarkReport {
        var rows: [HostileBenchmarkReport.Row] = []
        for engine in engineNames {
            for mode in modes {
                let vcpus = vcpus(for: mode)
                let result = try BenchmarkGuest.runScenario(
                    [ScenarioDomain(name: "hostile", guest: "hostile", commandLine: "mode=\(mode)", vcpus: vcpus,
                                    weight: 256 / vcpus),
                     ScenarioDomain(name: "hog", guest: "cpuhog", commandLine: "ms=3600000")],
                    engine: engine, seconds: seconds, scheduler: .credit, after: (0, "hostile: \(mode) running"))
                guard result.outputs[0].contains("hostile: \(mode) running") else {
                    throw BenchmarkError.guestFailed("hostile mode=\(mode) on \(engine) never started:\n\(result.outputs[0].suffix(2000))")
                }
                let handedOut = Double(result.cpuNanoseconds.reduce(0, +))
                rows.append(.init(engine: engine, mode: mode, neighbourShare: result.shares[1],
                                  neighbourFraction: handedOut > 0 ? 100 * Double(result.cpuNanoseconds[1]) / handedOut : 0,
                                  hostileShare: result.shares[0], hostileEnded: result.outcomes[0].summary,
                                  stopMilliseconds: Double(result.stopNanoseconds) / 1e6))
            }
        }
        return HostileBenchmarkReport(rows: rows, seconds: seconds)
    }
}
