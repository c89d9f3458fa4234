// `visor bench linux`: what the user is told when something is missing (on every build), and
// that a real run prints its table (release builds: a debug build's interp takes over ten
// minutes per boot). The figures themselves belong in BENCHMARKS.md, never in a test.

import Foundation
import Testing
@testable import Visor
@testable import VisorBench

@Suite("visor bench linux: what the user is told")
struct LinuxBenchCLITests {
    @Test func anUnfetchedGuestSaysToRunTheFetch() throws {
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("visor-nolinux-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: empty) }
        let r = try runProcess("/usr/bin/env", ["VISOR_GUESTS_OUT=\(empty.path)", Host.visorPath, "bench", "linux",
                                                "--rounds", "1"])
        #expect(r.status == ExitStatus.unavailable, "stderr: \(r.stderr)")
        #expect(r.stderr.contains("the 'linux' guest is not fetched yet"))
        #expect(r.stderr.contains("run Guests/linux/fetch first"))
        #expect(r.stdout.isEmpty, "nothing booted, no table")
    }

    @Test func aMissingQEMUIsNamedBeforeAnythingBoots() throws {
        let r = try runProcess("/usr/bin/env", ["VISOR_QEMU=/nonexistent/qemu-system-x86_64", Host.visorPath, "bench",
                                                "linux", "--qemu", "--rounds", "1"])
        #expect(r.status == ExitStatus.unavailable, "stderr: \(r.stderr)")
        #expect(r.stderr.contains("VISOR_QEMU names '/nonexistent/qemu-system-x86_64', which is not an executable file"))
        #expect(r.stdout.isEmpty)
    }

    @Test func helpSaysWhatIsMeasured() throws {
        let r = try runVisor(["bench", "linux", "--help"])
        #expect(r.status == 0)
        let help = r.stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        #expect(help.contains("--engine") && help.contains("--qemu") && help.contains("--rounds") && help.contains("--vcpus"))
        #expect(help.contains("until the /init marker line appears"))
        #expect(help.contains("Guests/linux/fetch"))
        let bench = try runVisor(["bench", "--help"])
        #expect(bench.stdout.contains("linux"), "listed among the benchmarks")
    }
}

@Suite("The Linux benchmark's console watch and table")
struct LinuxBenchmarkUnitTests {
    @Test("the marker, then the first prompt after it, found across chunk boundaries")
    func watchFindsMarkerThenPrompt() {
        var watch = LinuxConsoleWatch()
        // A prompt-like text before the marker does not count: the shell comes after /init.
        var events = watch.feed(Array("[ 0.1] / # not yet\r\nvisor-linux: /init is run".utf8))
        #expect(events.marker == false && events.prompt == false)
        events = watch.feed(Array("ning on 6.1.0-57-cloud-amd64 (2 CPUs)\r\n".utf8))
        #expect(events.marker == true && events.prompt == false)
        #expect(watch.kernelRelease == "6.1.0-57-cloud-amd64")
        events = watch.feed(Array("~ # ".utf8))
        #expect(events.prompt == false)
        events = watch.feed(Array("/ ".utf8))
        #expect(events.prompt == false)
        events = watch.feed(Array("# ".utf8))
        #expect(events.prompt == true)
        events = watch.feed(Array("/ # ".utf8))
        #expect(events.prompt == false, "only the first prompt is an event")
    }

    @Test("medians per figure, and ratios Visor / QEMU in the table")
    func tableShowsMediansAndRatios() {
        func t(_ m: Double, _ p: Double) -> LinuxBootTimes {
            LinuxBootTimes(markerWall: m, markerCPU: m / 2, powerOffWall: p, powerOffCPU: p / 2)
        }
        let report = LinuxBenchmarkReport(engine: "interp", vcpus: 1, memoryMiB: 128, commandLine: "console=ttyS0",
                                          kernelRelease: "6.1.0-57-cloud-amd64",
                                          rows: [.init(guest: "linux", format: "bzImage",
                                                       visor: [t(30, 31), t(10, 11), t(20, 21)],
                                                       qemu: [t(2, 3), t(4, 5), t(1, 2)])])
        let lines = report.text.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ") }
        #expect(lines.contains("bzImage visor interp 20.00 10.00 21.00 10.50"))
        #expect(lines.contains("bzImage QEMU TCG 2.00 1.00 3.00 1.50"))
        #expect(lines.contains("bzImage interp / QEMU 10.00× 10.00× 7.00× 7.00×"))
        #expect(report.text.contains("6.1.0-57-cloud-amd64"))
        #expect(report.text.contains("medians of 3 rounds"))
        #expect(lines.contains("bzImage visor interp: 31.00 11.00 21.00; QEMU TCG: 3.00 5.00 2.00"))
    }
}

@Suite("visor bench linux prints its table", .serialized,
       .enabled(if: LinuxGuest.interpRunsLinux, "the interp CPU lacks the FPU, FXSR, SSE or SSE2 that Linux requires"),
       .enabled(if: LinuxGuest.releaseBuild, "a debug build's software CPU takes over ten minutes to boot Linux: run swift test -c release --filter LinuxBenchRunTests"))
struct LinuxBenchRunTests {
    @Test(.enabled(if: LinuxGuest.bzImageFetched, LinuxGuest.notFetched), .enabled(if: Host.qemuPath != nil, Host.noQEMU))
    func oneRoundBesideQEMU() throws {
        // The hang guard is a generous bound on a loaded machine, not a figure.
        let r = try runVisor(["bench", "linux", "--engine", "interp", "--qemu", "--rounds", "1", "--timeout", "15m"],
                             timeout: 2000)
        #expect(!r.timedOut, "visor had to be killed: \(r.stderr)")
        #expect(r.status == 0, "stderr: \(r.stderr)")
        let lines = r.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first?.contains("Linux boot: Debian's kernel 6.1.0-") == true, "the release the guest's marker gave")
        #expect(lines.contains { $0.hasPrefix("bzImage") && $0.contains("visor interp") })
        #expect(lines.contains { $0.hasPrefix("bzImage") && $0.contains("QEMU TCG") })
        #expect(lines.contains { $0.hasPrefix("bzImage") && $0.contains("interp / QEMU") && $0.contains("×") })
        // Each boot reached the marker before it powered off (the progress lines on stderr).
        for platform in ["on interp", "on QEMU TCG"] {
            let progress = r.stderr.split(separator: "\n").first { $0.contains("bzImage \(platform):") }
            let numbers = progress.map { $0.split(separator: " ").compactMap { Double($0) } } ?? []
            #expect(numbers.count == 4, "\(platform): \(r.stderr)")
            if numbers.count == 4 { #expect(numbers[0] <= numbers[2] && numbers[1] <= numbers[3], "\(platform): \(r.stderr)") }
        }
    }
}

@Suite("visor bench io: one short run beside QEMU (release build)",
       .enabled(if: LinuxGuest.releaseBuild, "a debug build's software CPU takes over ten minutes to boot Linux: run swift test -c release --filter IOBenchRunTests"))
struct IOBenchRunTests {
    @Test(.enabled(if: LinuxGuest.bzImageFetched, LinuxGuest.notFetched), .enabled(if: Host.qemuPath != nil, Host.noQEMU),
          .enabled(if: geteuid() == 0 && FileManager.default.fileExists(atPath: "/dev/net/tun"),
                   "the TCP half makes a network namespace and a TAP: needs root and /dev/net/tun"))
    func oneRunBesideQEMU() throws {
        // The hang guard is a generous bound on a loaded machine, not a figure.
        let r = try runVisor(["bench", "io", "--qemu", "--size", "1", "--jobs", "2", "--tcp-size", "1", "--timeout", "15m"],
                             timeout: 2000)
        #expect(!r.timedOut, "visor had to be killed: \(r.stderr)")
        #expect(r.status == 0, "stderr: \(r.stderr)")
        let lines = r.stdout.split(separator: "\n").map(String.init)
        for phase in ["seq-write", "seq-read", "rand-read", "rand-write"] {
            // IOPS is a positive number on both platforms, and the ratio is printed.
            for run in ["visor interp", "QEMU TCG"] {
                let row = lines.first { $0.hasPrefix(phase) && $0.contains(run) }
                let iops = row.flatMap { $0.split(separator: " ").compactMap { Double($0) }.first }
                #expect((iops ?? 0) > 0, "\(phase) on \(run): \(r.stdout)")
            }
            #expect(lines.contains { $0.hasPrefix(phase) && $0.contains("interp / QEMU") && $0.contains("×") }, "\(r.stdout)")
        }
        // 256 requests per phase with one extra for the partition scan at boot: the counts are
        // Visor's own, so requests, notifications and interrupts are all there.
        #expect(lines.contains { $0.hasPrefix("visor's disk, whole run") && $0.contains("notifications") }, "\(r.stdout)")
        #expect(lines.contains { $0.hasPrefix("guest → host") && $0.contains("QEMU TCG") }, "\(r.stdout)")
        #expect(lines.contains { $0.hasPrefix("host → guest") && $0.contains("interp / QEMU") }, "\(r.stdout)")
        #expect(lines.contains { $0.contains("virtio-net 0 (TAP vbtap0") && $0.contains("frames in") }, "\(r.stdout)")
    }
}

/// How `visor bench io` reads the guest's lines and Visor's `--stats`.
@Suite struct IOBenchParsingTests {
    @Test func phasesFromTheConsole() throws {
        let console = "noise\r\niobench seq-write requests=2048 seconds=0.500000 interrupts=1024\r\n"
            + "iobench seq-read requests=2048 seconds=1.000000 interrupts=-1\r\n"
            + "iobench rand-read requests=2048 seconds=2.000000 interrupts=2048\n"
            + "iobench rand-write requests=2048 seconds=0.250000 interrupts=7\n"
        let result = try IOBenchmark.results(console, what: "test")
        #expect(result.phases.map(\.phase) == ["seq-write", "seq-read", "rand-read", "rand-write"])
        #expect(result.phases[0].iops == 4096 && result.phases[0].interrupts == 1024)
        #expect(result.phases[1].interrupts == nil, "-1: the guest found no virtio line")
        #expect(result.phases[3].mibPerSecond == 32)
        #expect(throws: (any Error).self) { try IOBenchmark.results("iobench seq-write requests=1 seconds=1 interrupts=1", what: "t") }
        // A kernel message printed onto the end of a result line (seen once under QEMU).
        let interleaved = try #require(IOPhaseResult(
            line: "iobench seq-write requests=256 seconds=0.026239 interrupts=182[    1.875442] tsc: Refined TSC clocksource"))
        #expect(interleaved.requests == 256 && interleaved.interrupts == 182)
    }

    @Test func diskCountersFromStats() {
        let stats = "exits: 5\nvirtio-blk 0 (/tmp/x.img): requestq 8193 buffers, 8057 notifications, 8000 interrupts\n"
        let counters = IOBenchmark.deviceCounters(stats)
        #expect(counters?.completions == 8193 && counters?.notifications == 8057 && counters?.interrupts == 8000)
        #expect(counters?.polled == 0)
        let polled = IOBenchmark.deviceCounters("virtio-blk 0 (/tmp/x.img): requestq 8193 buffers, 40 notifications, 8193 interrupts, 8150 passes found by polling")
        #expect(polled?.completions == 8193 && polled?.notifications == 40 && polled?.interrupts == 8193 && polled?.polled == 8150)
        #expect(IOBenchmark.deviceCounters("virtio-net 0 (TAP t): receiveq 1 buffers, 1 notifications, 1 interrupts") == nil)
    }
}
