// `visor bench lifecycle`'s mechanism: domains created and destroyed through the API one after the
// other give back their threads, and each is timed from the request to its first console byte.
// It runs as a child process: the benchmark counts its process's threads, and in the test process
// other tests start and end threads of their own beside it.

import Foundation
import Testing

@Suite("visor bench lifecycle", .timeLimit(.minutes(10)))
struct LifecycleBenchmarkTests {
    /// The numbers after `prefix` on the report's line that starts with it.
    static func numbers(in report: String, line prefix: String) -> [Double] {
        guard let line = report.split(separator: "\n").first(where: { $0.hasPrefix(prefix) }) else { return [] }
        return line.dropFirst(prefix.count).split(whereSeparator: { !($0.isNumber || $0 == ".") }).compactMap { Double($0) }
    }

    @Test("five domains through the API: each timed, threads all returned, guest RAM told from the rest, the report's rows")
    func fiveDomains() throws {
        let run = try runVisor(["bench", "lifecycle", "--domains", "5", "--engine", "interp"], timeout: 600)
        #expect(run.status == 0, "\(run.stderr)")
        let report = run.stdout
        #expect(report.contains("5 domains of 'minios' (16 MiB, 1 vCPU) on interp"), "\(report)")
        for row in ["create to first console byte", "destroy (request to gone)", "API round trip (GET /host)"] {
            let figures = Self.numbers(in: report, line: row)
            #expect(figures.count == 3 && figures.allSatisfy { $0 > 0 }, "\(row): \(figures) in \(report)")
        }
        // "process threads before B, after A": a destroyed domain's threads are all gone.
        let threads = Self.numbers(in: report, line: "process threads before")
        #expect(threads.count == 2 && threads[1] <= threads[0], "\(report)")
        #expect(!report.contains("NOTE: threads were not all returned"))
        // "with 10 domains live: RSS R MiB, P MiB per domain, of which guest RAM G MiB: B MiB beyond it; T threads":
        // the live domains hold threads of their own and touched some guest RAM.
        let live = Self.numbers(in: report, line: "with 10 domains live:")
        #expect(live.count == 5 && live[4] >= threads[0] + 10 && live[2] > 0, "\(report)")
    }
}
