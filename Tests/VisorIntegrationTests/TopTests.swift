// `visor top`: its frame as a golden text, and the command against a running daemon.

import Foundation
import Testing
@testable import VisorAPI

@Suite("visor top")
struct TopTests {
    /// As the API sends it (HostInfo has no public memberwise initializer).
    static let host = try! JSONDecoder().decode(HostInfo.self, from: Data("""
        {"host": "h", "release": "6.1", "machine": "x86_64", "hostCPUs": 2, "pcpus": 2, "scheduler": "credit",
         "defaultEngine": "interp", "engines": ["interp"], "domains": 2, "uptimeSeconds": 5, "pid": 42}
        """.utf8))

    static func domain(_ name: String, id: UInt32, state: String, cpu: UInt64, vcpus: Int = 1) -> DomainInfo {
        DomainInfo(name: name, id: id, memoryMiB: 16, vcpus: vcpus, state: state, paused: state.contains("p"),
                   cpuNanoseconds: cpu, engine: "interp", kernel: "cpuhog", weight: nil, cap: nil, consoleBytes: 120)
    }

    @Test("the frame: summary by state, xentop's columns, CPU(%) from the CPU time between two samples")
    func frame() {
        let first = TopSample(domains: [Self.domain("hog", id: 1, state: "r-----", cpu: 2_000_000_000),
                                        Self.domain("idle", id: 2, state: "--p---", cpu: 500_000_000)],
                              nanoseconds: 10_000_000_000)
        // Two seconds later: hog got 1.5 s of CPU (75 %), the new domain has no previous sample.
        let second = TopSample(domains: [Self.domain("hog", id: 1, state: "-b----", cpu: 3_500_000_000),
                                         Self.domain("idle", id: 2, state: "--p---", cpu: 500_000_000),
                                         Self.domain("averylongname", id: 3, state: "r-----", cpu: 7_000_000_000, vcpus: 4)],
                               nanoseconds: 12_000_000_000)
        #expect(ToolstackFormat.top(previous: nil, current: first, host: Self.host, clock: "03:58:12") == """
            visor top - 03:58:12   visor serve pid 42: credit on 2 pCPUs, 2 host CPUs
            2 domains: 1 running, 0 blocked, 1 paused, 0 shutdown, 0 crashed, 0 dying
                  NAME  STATE   CPU(sec) CPU(%)     MEM(k) VCPUS  ENGINE CONSOLE(B)
                   hog r-----          2    0.0      16384     1  interp        120
                  idle --p---          0    0.0      16384     1  interp        120

            """)
        #expect(ToolstackFormat.top(previous: first, current: second, host: Self.host, clock: "03:58:14") == """
            visor top - 03:58:14   visor serve pid 42: credit on 2 pCPUs, 2 host CPUs
            3 domains: 1 running, 1 blocked, 1 paused, 0 shutdown, 0 crashed, 0 dying
                  NAME  STATE   CPU(sec) CPU(%)     MEM(k) VCPUS  ENGINE CONSOLE(B)
                   hog -b----          4   75.0      16384     1  interp        120
                  idle --p---          0    0.0      16384     1  interp        120
            averylongn r-----          7    0.0      16384     4  interp        120

            """)
    }

    @Test("visor top -b -i 2 against a daemon: two frames, the hog's row, and CPU(%) it got in between")
    func batchAgainstDaemon() throws {
        let daemon = try ServedDaemon(pcpus: 1)
        let created = try daemon.visor(["create", try daemon.config("hog")])
        #expect(created.status == 0, "create: \(created.stderr)")
        let top = try daemon.visor(["top", "--batch", "--iterations", "2", "--delay", "1"])
        #expect(top.status == 0, "top: \(top.stderr)")
        let frames = top.stdout.components(separatedBy: "visor top - ").dropFirst()
        #expect(frames.count == 2, "\(top.stdout)")
        // The only domain on its own pCPU runs all the time it is given: a share above zero in
        // the second frame (how much depends on the host, so only that it was charged).
        let hogRow = frames.last?.split(separator: "\n").first { $0.hasPrefix("       hog ") }
        let percent = hogRow.flatMap { Double($0.split(separator: " ")[3]) }
        #expect(percent.map { $0 > 0 } == true, "\(top.stdout)")
        #expect(frames.first?.contains("1 domain: ") == true)

        let bad = try daemon.visor(["top", "--delay", "0"])
        #expect(bad.status == 64)
        #expect(bad.stderr.contains("--delay must be between 0.1 and 3600 seconds"))
        _ = try daemon.visor(["destroy", "hog"])
    }
}
