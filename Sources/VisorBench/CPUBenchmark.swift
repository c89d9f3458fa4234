// `visor bench cpu`: the `cpubench` guest's five loops on an engine, and (with --qemu) under
// QEMU's TCG in the same run, as guest MIPS per loop and the ratio to QEMU.

import Foundation
import Visor
import VisorCore
import VisorKVM

/// One loop's figures from one run.
public struct CPULoopResult: Sendable, Equatable {
    public var name: String
    public var instructions: UInt64
    public var ticks: UInt64
    public var result: UInt64
}

public struct CPUBenchmarkReport: Sendable {
    public var engine: String
    public var engineLoops: [CPULoopResult]
    public var engineHz: Double
    public var qemuLoops: [CPULoopResult]?
    public var qemuHz: Double

    static func mips(_ loop: CPULoopResult, hz: Double) -> Double {
        guard loop.ticks > 0, hz > 0 else { return .nan }
        return Double(loop.instructions) / (Double(loop.ticks) / hz) / 1e6
    }

    public var text: String {
        func col(_ s: String, _ w: Int) -> String { s.padding(toLength: w, withPad: " ", startingAt: 0) }
        var lines: [String] = []
        var header = col("loop", 10) + col("instructions", 14) + col("\(engine) MIPS", 14)
        if qemuLoops != nil { header += col("QEMU TCG MIPS", 15) + "\(engine) / QEMU" }
        lines.append(header)
        var logSum = 0.0, count = 0
        for loop in engineLoops {
            let m = Self.mips(loop, hz: engineHz)
            var line = col(loop.name, 10) + col("\(loop.instructions)", 14) + col(String(format: "%.1f", m), 14)
            if let q = qemuLoops?.first(where: { $0.name == loop.name }) {
                let qm = Self.mips(q, hz: qemuHz)
                let ratio = m / qm
                line += col(String(format: "%.1f", qm), 15) + String(format: "%.3f", ratio)
                if q.result != loop.result { line += "  (results differ: \(loop.result) vs \(q.result))" }
                if ratio.isFinite && ratio > 0 { logSum += log(ratio); count += 1 }
            }
            lines.append(line)
        }
        if count > 0 {
            lines.append("geometric mean \(engine) / QEMU: " + String(format: "%.3f", exp(logSum / Double(count))))
        }
        return lines.joined(separator: "\n")
    }
}

public enum CPUBenchmark {
    /// The guest's command line: the sizes, or a tenth of the work with `quick`.
    public static func commandLine(quick: Bool) -> String {
        quick ? "alu=1000000 copy=1048576 copies=1 sieve=2097152 calls=1000000 dispatch=1000000" : ""
    }

    /// Parses `cpubench: <loop> instructions=<n> tsc=<t> result=<r>` lines; nil unless `done` was seen.
    public static func parse(_ output: String) -> [CPULoopResult]? {
        var loops: [CPULoopResult] = []
        var done = false
        for line in output.split(whereSeparator: \.isNewline) {
            let words = line.split(separator: " ")
            guard words.first == "cpubench:", words.count >= 2 else { continue }
            if words[1] == "done" { done = true; continue }
            var fields: [String: UInt64] = [:]
            for w in words.dropFirst(2) {
                let kv = w.split(separator: "=", maxSplits: 1)
                if kv.count == 2, let v = UInt64(kv[1]) { fields[String(kv[0])] = v }
            }
            if let i = fields["instructions"], let t = fields["tsc"], let r = fields["result"] {
                loops.append(CPULoopResult(name: String(words[1]), instructions: i, ticks: t, result: r))
            }
        }
        return done && loops.count == 5 ? loops : nil
    }

    public static func run(engineName: String, quick: Bool, withQEMU: Bool) throws -> CPUBenchmarkReport {
        let engine = try BenchmarkGuest.engine(named: engineName)
        let image = try GuestCatalog.standard().image(named: "cpubench")
        let text = try BenchmarkGuest.run(image: image, commandLine: commandLine(quick: quick), engine: engineName,
                                          memoryBytes: 128 << 20).text
        guard let loops = parse(text) else {
            throw BenchmarkError.guestFailed("cpubench did not print every loop; console:\n\(text)")
        }
        var report = CPUBenchmarkReport(engine: engineName, engineLoops: loops,
                                        engineHz: engine.timeStampCounterFrequency(), qemuLoops: nil,
                                        qemuHz: HostTimeStampCounter.measureFrequency())
        if withQEMU {
            report.qemuLoops = try runQEMU(image: image, commandLine: commandLine(quick: quick))
        }
        return report
    }

    static func runQEMU(image: URL, commandLine: String) throws -> [CPULoopResult] {
        let text = try QEMUReference.run(image: image, commandLine: commandLine)
        guard let loops = parse(text) else {
            throw BenchmarkError.referenceFailed("QEMU did not print every loop:\n\(text)")
        }
        return loops
    }
}
