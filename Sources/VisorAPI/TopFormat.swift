// `visor top`'s frame, in the manner of Xen's `xentop`: a summary of the daemon and its domains,
// then one row per domain with the CPU share it got since the previous frame. Pure, for golden
// tests; the command in Sources/visor/TopCommand.swift samples the daemon and prints frames.

import Foundation
import Visor

/// One sample of the daemon: its domains, and when (host monotonic nanoseconds) they were read.
public struct TopSample: Sendable, Equatable {
    public var domains: [DomainInfo]
    public var nanoseconds: UInt64

    public init(domains: [DomainInfo], nanoseconds: UInt64) {
        self.domains = domains
        self.nanoseconds = nanoseconds
    }
}

extension ToolstackFormat {
    /// The columns of a `visor top` row, after xentop's first ones (NAME STATE CPU(sec) CPU(%)
    /// MEM(k) VCPUS) and Visor's own (ENGINE, CONSOLE(B): bytes the guest wrote to its console).
    static let topHeader = "      NAME  STATE   CPU(sec) CPU(%)     MEM(k) VCPUS  ENGINE CONSOLE(B)"

    /// A frame: the title (`clock` is the wall-clock time to show, HH:MM:SS), the domain count by
    /// state as xentop counts them, the header and a row per domain. CPU(%) is the CPU time the
    /// scheduler charged a domain between `previous` and `current` over the wall time between
    /// them (over 100 for a domain with several vCPUs, as in xentop); 0.0 in the first frame and
    /// for a domain that was not in the previous sample.
    public static func top(previous: TopSample?, current: TopSample, host: HostInfo, clock: String) -> String {
        var lines = ["visor top - \(clock)   visor serve pid \(host.pid): \(host.scheduler) on \(host.pcpus) pCPUs, "
                     + "\(host.hostCPUs) host CPUs"]
        // xl's state letters, in order: r b p s c d.
        let names = ["running", "blocked", "paused", "shutdown", "crashed", "dying"]
        var counts = [Int](repeating: 0, count: names.count)
        for domain in current.domains {
            for (index, letter) in domain.state.enumerated() where index < counts.count && letter != "-" {
                counts[index] += 1
            }
        }
        let summary = zip(counts, names).map { "\($0) \($1)" }.joined(separator: ", ")
        lines.append("\(current.domains.count) domain\(current.domains.count == 1 ? "" : "s"): \(summary)")
        lines.append(topHeader)
        let before = Dictionary((previous?.domains ?? []).map { ($0.id, $0.cpuNanoseconds) }, uniquingKeysWith: { a, _ in a })
        let elapsed = previous.map { current.nanoseconds &- $0.nanoseconds } ?? 0
        for domain in current.domains {
            var percent = 0.0
            if elapsed > 0, let then = before[domain.id], domain.cpuNanoseconds >= then {
                percent = Double(domain.cpuNanoseconds - then) / Double(elapsed) * 100
            }
            let state = domain.state.padding(toLength: 6, withPad: "-", startingAt: 0)
            let name = domain.name.count > 10 ? String(domain.name.prefix(10)) : domain.name
            let row = pad(name, 10) + " " + state + " " + pad(String(Double(domain.cpuNanoseconds) / 1e9, digits: 0), 10)
                + " " + pad(String(percent, digits: 1), 6) + " " + pad(String(domain.memoryMiB * 1024), 10)
                + " " + pad(String(domain.vcpus), 5) + " " + pad(domain.engine, 7) + " " + pad(String(domain.consoleBytes), 10)
            lines.append(row)
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

extension String {
    /// `value` with `digits` decimals, as printf's %.Nf.
    init(_ value: Double, digits: Int) {
        self.init(format: "%.\(digits)f", value)
    }
}
