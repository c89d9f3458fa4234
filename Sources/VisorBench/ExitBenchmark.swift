// The exit round-trip benchmark: the `exitbench` guest performs n port writes at CPL0 and n at
// CPL3; Visor and a minimal C program that drives /dev/kvm the same way run it in one go, and
// the per-exit times are compared.

import Foundation
import Synchronization
import Visor
import VisorCore

/// Per-exit cost of one run of `exitbench`.
public struct ExitTiming: Sendable {
    public var cpl0NanosecondsPerExit: Double
    public var cpl3NanosecondsPerExit: Double
}

/// One benchmark round: Visor's and the C reference's timings.
public struct ExitBenchmarkResult: Sendable {
    public var count: UInt64
    public var visor: [ExitTiming]
    public var reference: [ExitTiming]

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return .nan }
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2]
            : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }

    /// A table: µs per exit (median over rounds) and the ratio Visor / C, per privilege level.
    public var report: String {
        func us(_ ns: Double) -> String { String(format: "%.2f", ns / 1000) }
        let v0 = Self.median(visor.map(\.cpl0NanosecondsPerExit)), c0 = Self.median(reference.map(\.cpl0NanosecondsPerExit))
        let v3 = Self.median(visor.map(\.cpl3NanosecondsPerExit)), c3 = Self.median(reference.map(\.cpl3NanosecondsPerExit))
        return """
            exit round trip, \(count) port writes per level, median of \(visor.count) rounds (goal: Visor / C <= 1.05)
            level  visor µs/exit  C µs/exit  visor/C
            CPL0   \(us(v0).padding(toLength: 13, withPad: " ", startingAt: 0))  \(us(c0).padding(toLength: 9, withPad: " ", startingAt: 0))  \(String(format: "%.3f", v0 / c0))
            CPL3   \(us(v3).padding(toLength: 13, withPad: " ", startingAt: 0))  \(us(c3).padding(toLength: 9, withPad: " ", startingAt: 0))  \(String(format: "%.3f", v3 / c3))
            """
    }
}

/// What went wrong running the benchmark.
public enum BenchmarkError: Error, CustomStringConvertible {
    case referenceBuildFailed(String)
    case referenceFailed(String)
    case guestFailed(String)

    public var description: String {
        switch self {
        case .referenceBuildFailed(let m): return "building the C reference failed: \(m)"
        case .referenceFailed(let m): return "the reference run failed: \(m)"
        case .guestFailed(let m): return "the benchmark guest did not complete under Visor: \(m)"
        }
    }
}

/// Timestamps `exitbench`'s phase markers (port 0x511) and counts its ticks (port 0x510).
final class ExitBenchProbe: PortDevice, @unchecked Sendable {
    // Used only by the vCPU thread while the domain runs, read after it ends.
    static let base: UInt16 = 0x510
    var ticks: UInt64 = 0
    var markers: [UInt32: UInt64] = [:]

    func read(offset: UInt16, size: UInt8) -> UInt32 { 0xffff_ffff }
    func write(offset: UInt16, size: UInt8, value: UInt32) {
        if offset == 0 { ticks &+= 1 } else if offset == 1 { markers[value] = monotonicNanoseconds() }
    }
}

public enum ExitBenchmark {
    /// Runs `rounds` rounds of Visor then the C reference with `count` exits per level.
    public static func run(count: UInt64, rounds: Int, engine: any Engine) throws -> ExitBenchmarkResult {
        let image = try GuestCatalog.standard().image(named: "exitbench")
        let reference = try buildReference()
        var result = ExitBenchmarkResult(count: count, visor: [], reference: [])
        for _ in 0..<rounds {
            result.visor.append(try runVisor(image: image, count: count, engine: engine))
            result.reference.append(try runReference(reference, image: image, count: count))
        }
        return result
    }

    static func runVisor(image: URL, count: UInt64, engine: any Engine) throws -> ExitTiming {
        let kernel = [UInt8](try Data(contentsOf: image))
        let probe = ExitBenchProbe()
        let configuration = DomainConfiguration(name: "exitbench", kernelDescription: image.path, kernel: kernel,
                                                memoryBytes: 64 << 20, commandLine: "n=\(count)", engine: engine)
        let domain = try Domain(configuration: configuration,
                                extraDevices: [ExtraPortDevice(probe, base: ExitBenchProbe.base, count: 2)],
                                consoleOutput: { _ in })
        let outcome = domain.run()
        guard outcome == .poweredOff else { throw BenchmarkError.guestFailed("\(outcome)") }
        guard probe.ticks == 2 * count, let t1 = probe.markers[1], let t2 = probe.markers[2],
              let t3 = probe.markers[3], let t4 = probe.markers[4] else {
            throw BenchmarkError.guestFailed("expected \(2 * count) ticks and markers 1-4, saw \(probe.ticks) and \(probe.markers.keys.sorted())")
        }
        return ExitTiming(cpl0NanosecondsPerExit: Double(t2 - t1) / Double(count),
                          cpl3NanosecondsPerExit: Double(t4 - t3) / Double(count))
    }

    /// Compiles Benchmarks/kvm-exit-reference.c with the host C compiler (once per source change).
    static func buildReference() throws -> URL {
        guard let source = Installation.supportFile("Benchmarks/kvm-exit-reference.c") else {
            throw BenchmarkError.referenceBuildFailed(
                "Benchmarks/kvm-exit-reference.c is in neither a Visor checkout nor the installed share/visor")
        }
        let output = Installation.scratch.appendingPathComponent("bench/kvm-exit-reference")
        let fm = FileManager.default
        let sourceDate = (try? fm.attributesOfItem(atPath: source.path)[.modificationDate] as? Date) ?? .distantFuture
        let outputDate = (try? fm.attributesOfItem(atPath: output.path)[.modificationDate] as? Date) ?? .distantPast
        if outputDate > sourceDate { return output }
        try fm.createDirectory(at: output.deletingLastPathComponent(), withIntermediateDirectories: true)
        let (status, text) = try ConsoleChild.run("/usr/bin/env", ["cc", "-O2", "-Wall", "-o", output.path, source.path])
        guard status == 0 else { throw BenchmarkError.referenceBuildFailed(text) }
        return output
    }

    static func runReference(_ program: URL, image: URL, count: UInt64) throws -> ExitTiming {
        let (status, text) = try ConsoleChild.run(program.path, [image.path, "\(count)"])
        guard status == 0 else { throw BenchmarkError.referenceFailed("exit status \(status): \(text)") }
        var values: [String: Double] = [:]
        for line in text.split(whereSeparator: \.isNewline) {
            let parts = line.split(separator: "=", maxSplits: 1)
            if parts.count == 2, let v = Double(parts[1]) { values[String(parts[0])] = v }
        }
        guard let c0 = values["cpl0_ns_per_exit"], let c3 = values["cpl3_ns_per_exit"] else {
            throw BenchmarkError.referenceFailed("unexpected output: \(text)")
        }
        return ExitTiming(cpl0NanosecondsPerExit: c0, cpl3NanosecondsPerExit: c3)
    }
}
