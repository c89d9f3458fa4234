// `visor bench irq`: timer-interrupt delivery latency (programmed deadline to handler entry)
// and IPI round trip, per engine, next to QEMU TCG running the same guests in the same run.
//
// The figures come from the guests themselves, measured with their TSC: `sleeper` programs
// one-shot APIC timers and records TSC at handler entry minus the deadline
// (`sleeper: timer-latency_ns min= avg= max=`); `smp` on two vCPUs sends fixed IPIs from the
// BSP to the AP, whose handler answers with one back (`smp: ipi_roundtrip_ns avg= min= ...`).
// One-shot mode everywhere, since QEMU's TCG has no TSC-deadline timer.

import Foundation
import Visor

/// One platform's interrupt figures, in nanoseconds.
public struct InterruptLatency: Sendable, Equatable {
    public var timerMin: Double, timerAverage: Double, timerMax: Double
    public var ipiMin: Double, ipiAverage: Double
}

public struct InterruptBenchmarkReport: Sendable {
    /// Engine name (or "QEMU TCG") and its figures, in the order run.
    public var rows: [(name: String, latency: InterruptLatency)]
    public var qemu: InterruptLatency?

    public var text: String {
        func col(_ s: String, _ w: Int) -> String { s.padding(toLength: w, withPad: " ", startingAt: 0) }
        func us(_ ns: Double) -> String { String(format: "%.1f", ns / 1000) }
        var lines = [col("", 12) + col("timer latency µs (min/avg/max)", 32) + col("IPI round trip µs (min/avg)", 29)
                     + (qemu == nil ? "" : "avg vs QEMU (timer, IPI)")]
        var all = rows
        if let qemu { all.append(("QEMU TCG", qemu)) }
        for (name, l) in all {
            var line = col(name, 12) + col("\(us(l.timerMin)) / \(us(l.timerAverage)) / \(us(l.timerMax))", 32)
                + col("\(us(l.ipiMin)) / \(us(l.ipiAverage))", 29)
            if let qemu, name != "QEMU TCG" {
                line += String(format: "%.2f, %.2f", l.timerAverage / qemu.timerAverage, l.ipiAverage / qemu.ipiAverage)
            }
            lines.append(line)
        }
        lines.append("(ratios are Visor / QEMU: below 1 means Visor delivers faster)")
        return lines.joined(separator: "\n")
    }
}

public enum InterruptBenchmark {
    static func sleeperCommandLine(quick: Bool) -> String { "ms=2 count=\(quick ? 20 : 100) mode=oneshot" }
    static func smpCommandLine(quick: Bool) -> String { "cpus=2 pings=\(quick ? 100 : 1000)" }

    /// The `key=value` numbers of the first console line starting with `prefix`.
    static func fields(_ output: String, prefix: String) -> [String: Double]? {
        guard let line = output.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix(prefix) }) else { return nil }
        var result: [String: Double] = [:]
        for word in line.dropFirst(prefix.count).split(separator: " ") {
            let kv = word.split(separator: "=", maxSplits: 1)
            if kv.count == 2, let v = Double(kv[1]) { result[String(kv[0])] = v }
        }
        return result
    }

    /// Parses the two guests' outputs into figures; nil when a line or field is missing.
    static func parse(sleeper: String, smp: String) -> InterruptLatency? {
        guard let t = fields(sleeper, prefix: "sleeper: timer-latency_ns "),
              let i = fields(smp, prefix: "smp: ipi_roundtrip_ns "),
              let tMin = t["min"], let tAvg = t["avg"], let tMax = t["max"], let iMin = i["min"], let iAvg = i["avg"]
        else { return nil }
        return InterruptLatency(timerMin: tMin, timerAverage: tAvg, timerMax: tMax, ipiMin: iMin, ipiAverage: iAvg)
    }

    public static func run(engineNames: [String], quick: Bool, withQEMU: Bool) throws -> InterruptBenchmarkReport {
        let sleeper = try GuestCatalog.standard().image(named: "sleeper")
        let smp = try GuestCatalog.standard().image(named: "smp")
        var report = InterruptBenchmarkReport(rows: [], qemu: nil)
        for name in engineNames {
            let sleeperText = try runGuest(sleeper, commandLine: sleeperCommandLine(quick: quick), engine: name, vcpus: 1)
            let smpText = try runGuest(smp, commandLine: smpCommandLine(quick: quick), engine: name, vcpus: 2)
            guard let latency = parse(sleeper: sleeperText, smp: smpText) else {
                throw BenchmarkError.guestFailed("no figures on \(name):\n\(sleeperText)\n\(smpText)")
            }
            report.rows.append((name, latency))
        }
        if withQEMU {
            let sleeperText = try QEMUReference.run(image: sleeper, commandLine: sleeperCommandLine(quick: quick))
            let smpText = try QEMUReference.run(image: smp, commandLine: smpCommandLine(quick: quick), cpus: 2)
            guard let latency = parse(sleeper: sleeperText, smp: smpText) else {
                throw BenchmarkError.referenceFailed("no figures from QEMU:\n\(sleeperText)\n\(smpText)")
            }
            report.qemu = latency
        }
        return report
    }

    static func runGuest(_ image: URL, commandLine: String, engine name: String, vcpus: Int) throws -> String {
        try BenchmarkGuest.run(image: image, commandLine: commandLine, engine: name, vcpus: vcpus).text
    }
}
