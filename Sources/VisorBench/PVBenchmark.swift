// `visor bench pv`: what cooperation between guest and hypervisor buys, per engine, in one run.
// The same `minios` ELF runs its `bench` command twice on each engine, booted PV (hypercalls,
// events) and native (`pv=off`: emulated UART, local APIC timer); the guest times itself with
// its TSC and prints `bench: mode=… hypercall_ns=… portio_ns=… timer_latency_ns=…
// console_bytes_per_s=…`. Visor adds the exits per console byte from its own counters: UART
// register accesses (ports 0x3f8-0x3ff) natively, `console_io` hypercalls in PV, over every
// byte the guest printed in the run.

import Foundation
import Visor
import VisorABI

public struct PVBenchmarkRow: Sendable {
    public var engine: String
    public var mode: String
    public var hypercallNanoseconds: Double?
    public var portIONanoseconds: Double
    public var timerLatencyNanoseconds: Double
    public var consoleBytesPerSecond: Double
    public var exitsPerConsoleByte: Double
}

public struct PVBenchmarkReport: Sendable {
    public var rows: [PVBenchmarkRow]

    public var text: String {
        func col(_ s: String, _ w: Int) -> String { s.padding(toLength: w, withPad: " ", startingAt: 0) }
        func us(_ ns: Double?) -> String { ns.map { String(format: "%.1f", $0 / 1000) } ?? "-" }
        var lines = [col("engine", 8) + col("mode", 8) + col("hypercall µs", 14) + col("port I/O exit µs", 18)
                     + col("timer latency µs", 18) + col("console KB/s", 14) + "exits/console byte"]
        for r in rows {
            lines.append(col(r.engine, 8) + col(r.mode, 8) + col(us(r.hypercallNanoseconds), 14)
                         + col(us(r.portIONanoseconds), 18) + col(us(r.timerLatencyNanoseconds), 18)
                         + col(String(format: "%.1f", r.consoleBytesPerSecond / 1000), 14)
                         + String(format: "%.3f", r.exitsPerConsoleByte))
        }
        for engine in Set(rows.map(\.engine)).sorted() {
            guard let pv = rows.first(where: { $0.engine == engine && $0.mode == "pv" }),
                  let native = rows.first(where: { $0.engine == engine && $0.mode == "native" }) else { continue }
            lines.append(String(format: "%@: PV / native — console throughput ×%.1f, exits per console byte ×%.3f, timer latency ×%.2f; hypercall / port-I/O exit ×%.2f",
                                engine, pv.consoleBytesPerSecond / native.consoleBytesPerSecond,
                                pv.exitsPerConsoleByte / native.exitsPerConsoleByte,
                                pv.timerLatencyNanoseconds / native.timerLatencyNanoseconds,
                                (pv.hypercallNanoseconds ?? .nan) / pv.portIONanoseconds))
        }
        return lines.joined(separator: "\n")
    }
}

public enum PVBenchmark {
    public static func run(engineNames: [String], iterations: Int) throws -> PVBenchmarkReport {
        var rows: [PVBenchmarkRow] = []
        let image = try GuestCatalog.standard().image(named: "minios")
        for name in engineNames {
            for mode in ["pv", "native"] {
                let commandLine = "\(mode == "native" ? "pv=off " : "pv=on ")tasks=0 bench_n=\(iterations) script=bench;halt"
                rows.append(try runOnce(image: image, engine: name, mode: mode, commandLine: commandLine))
            }
        }
        return PVBenchmarkReport(rows: rows)
    }

    static func runOnce(image: URL, engine name: String, mode: String, commandLine: String) throws -> PVBenchmarkRow {
        let (text, statistics) = try BenchmarkGuest.run(image: image, commandLine: commandLine, engine: name)
        guard let f = InterruptBenchmark.fields(text, prefix: "bench: mode="),
              let portIO = f["portio_ns"], let timer = f["timer_latency_ns"], let rate = f["console_bytes_per_s"]
        else {
            throw BenchmarkError.guestFailed("minios \(mode) on \(name) printed no figures:\n\(text.suffix(2000))")
        }
        let consoleExits: UInt64
        if mode == "pv" {
            consoleExits = statistics.paravirtual?.hypercalls[Int(Hypercall.consoleIO)] ?? 0
        } else {
            consoleExits = (0..<PlatformPorts.uartRegisterCount).reduce(0) {
                $0 &+ (statistics.byPort[PlatformPorts.com1 &+ $1] ?? 0)
            }
        }
        let bytes = max(1, text.utf8.count)
        return PVBenchmarkRow(engine: name, mode: mode, hypercallNanoseconds: f["hypercall_ns"], portIONanoseconds: portIO,
                              timerLatencyNanoseconds: timer, consoleBytesPerSecond: rate,
                              exitsPerConsoleByte: Double(consoleExits) / Double(bytes))
    }
}
