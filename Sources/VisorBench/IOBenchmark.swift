// `visor bench io`: block I/O through virtio-blk from inside Debian's Linux guest, measured by
// the guest itself; with `--qemu`, the same kernel, initramfs, workload and a virtio-blk device
// under QEMU's TCG (on virtio-pci: see `run`), in the same run.
//
// Each boot is a child process with its console on pipes (as in `visor bench linux`): the
// guest gets a fresh scratch image as its disk (/dev/vda), the shell's first prompt is answered
// with `visor-iobench /dev/vda SIZE JOBS virtio0` (Guests/linux/iobench.c, in the initramfs),
// which prints one line per phase — sequential write, sequential read, random read, random
// write, 4 KiB requests with O_DIRECT — with the guest's own clock and the interrupts the
// device's line took, and then `poweroff -f`. Visor's side also reports, from `--stats`, the
// notifications (QueueNotify exits) and interrupts per request over the whole run: what the
// rings buy is fewer than one of each per request when several are in flight.

import Foundation
import Visor

/// One phase as the guest measured it.
public struct IOPhaseResult: Sendable, Equatable {
    public var phase: String
    public var requests: Int
    public var seconds: Double
    /// Interrupts the device's line took during the phase (nil when the guest could not tell).
    public var interrupts: Int?

    public var iops: Double { seconds > 0 ? Double(requests) / seconds : 0 }
    /// MiB per second of 4 KiB requests.
    public var mibPerSecond: Double { iops * 4096 / 1_048_576 }

    /// Parses `iobench PHASE requests=N seconds=S interrupts=I`. A kernel message the console
    /// printed right after it, on the same line ("interrupts=182[    1.875442] tsc: ..."), is
    /// ignored: the number ends at its last digit.
    init?(line: Substring) {
        let words = line.split(separator: " ")
        guard words.count >= 5, words[0] == "iobench" else { return nil }
        func value(_ word: Substring, _ key: String) -> Substring? {
            word.hasPrefix(key + "=") ? word.dropFirst(key.count + 1) : nil
        }
        func leadingInteger(_ text: Substring) -> Int? {
            let sign = text.hasPrefix("-") ? 1 : 0
            let digits = text.dropFirst(sign).prefix { $0.isASCII && $0.isNumber }
            return digits.isEmpty ? nil : Int(text.prefix(sign + digits.count))
        }
        guard let requests = value(words[2], "requests").flatMap({ Int($0) }),
              let seconds = value(words[3], "seconds").flatMap({ Double($0) }),
              let interrupts = value(words[4], "interrupts").flatMap(leadingInteger)
        else { return nil }
        phase = String(words[1])
        self.requests = requests
        self.seconds = seconds
        self.interrupts = interrupts < 0 ? nil : interrupts
    }
}

/// One boot's results: the phases, and for Visor the device's counters from `--stats`.
public struct IORunResult: Sendable {
    public var phases: [IOPhaseResult]
    public var notifications: UInt64?
    public var completions: UInt64?
    public var deviceInterrupts: UInt64?
    /// Passes over the disk's queue the worker's poll found requests for (no notification).
    public var polledPasses: UInt64?
    /// TCP through virtio-net, when the network half ran.
    public var tcp: TCPResult?
    /// Visor's `--stats` lines of its virtio devices, as printed.
    public var deviceLines: [String] = []
}

public struct IOBenchmarkReport: Sendable {
    public var engine: String
    public var sizeMiB: Int
    public var jobs: Int
    public var visor: IORunResult
    public var qemu: IORunResult?
    /// Why the network half did not run, when it did not.
    public var networkSkipped: String?

    public var text: String {
        func col(_ s: String, _ w: Int) -> String { s.padding(toLength: w, withPad: " ", startingAt: 0) }
        var lines = [
            "Block I/O: virtio-blk on virtio-mmio, Debian's Linux guest, 4 KiB requests with O_DIRECT over "
                + "\(sizeMiB) MiB of a scratch raw image, \(jobs) thread\(jobs == 1 ? "" : "s") in the guest; "
                + "guest-measured",
            col("phase", 12) + col("run", 14) + col("IOPS", 10) + col("MiB/s", 9) + "interrupts/request",
        ]
        func perRequest(_ count: Int?, _ requests: Int) -> String {
            guard let count, requests > 0 else { return "-" }
            return String(format: "%.2f", Double(count) / Double(requests))
        }
        for phase in visor.phases {
            lines.append(col(phase.phase, 12) + col("visor \(engine)", 14) + col(String(format: "%.0f", phase.iops), 10)
                         + col(String(format: "%.2f", phase.mibPerSecond), 9) + perRequest(phase.interrupts, phase.requests))
            guard let q = qemu?.phases.first(where: { $0.phase == phase.phase }) else { continue }
            lines.append(col(phase.phase, 12) + col("QEMU TCG", 14) + col(String(format: "%.0f", q.iops), 10)
                         + col(String(format: "%.2f", q.mibPerSecond), 9) + perRequest(q.interrupts, q.requests))
            lines.append(col(phase.phase, 12) + col("\(engine) / QEMU", 14)
                         + (q.iops > 0 ? String(format: "%.2f×", phase.iops / q.iops) : "-"))
        }
        if let n = visor.notifications, let c = visor.completions, let i = visor.deviceInterrupts, c > 0 {
            lines.append(String(format: "visor's disk, whole run (boot included): %llu requests, %llu notifications (%.2f per request), "
                                + "%llu interrupts (%.2f per request), %llu passes found by the worker's poll",
                                c, n, Double(n) / Double(c), i, Double(i) / Double(c), visor.polledPasses ?? 0))
        }
        if let tcp = visor.tcp {
            lines.append("TCP through virtio-net and a TAP, host-timed: guest → host \(tcp.uploadBytes >> 20) MiB, host → guest \(tcp.downloadBytes >> 20) MiB")
            lines.append(col("direction", 16) + col("run", 14) + "MiB/s")
            for (name, pick) in [("guest → host", \TCPResult.uploadMiBPerSecond), ("host → guest", \TCPResult.downloadMiBPerSecond)] {
                let v = tcp[keyPath: pick]
                lines.append(col(name, 16) + col("visor \(engine)", 14) + String(format: "%.2f", v))
                if let q = qemu?.tcp?[keyPath: pick] {
                    lines.append(col(name, 16) + col("QEMU TCG", 14) + String(format: "%.2f", q))
                    lines.append(col(name, 16) + col("\(engine) / QEMU", 14) + (q > 0 ? String(format: "%.2f×", v / q) : "-"))
                }
            }
        } else if let why = networkSkipped {
            lines.append("TCP: not measured: \(why)")
        }
        if !visor.deviceLines.isEmpty {
            lines.append("visor --stats, whole run:")
            lines += visor.deviceLines.map { "  " + $0 }
        }
        return lines.joined(separator: "\n")
    }
}

public enum IOBenchmark {
    static let memoryMiB = 128
    /// The phases Guests/linux/iobench.c prints, in order.
    static let phases = ["seq-write", "seq-read", "rand-read", "rand-write"]

    /// Runs the block benchmark once on `engine` through `visor` (this executable) and, with
    /// `withQEMU`, once under QEMU's TCG.
    public static func run(visor: String, engine: String, sizeMiB: Int, jobs: Int, withQEMU: Bool, network wantsNetwork: Bool,
                           networkMiB: Int, timeoutSeconds: Double, progress: (String) -> Void = { _ in }) throws -> IOBenchmarkReport {
        let (qemu, files) = try LinuxBenchmark.prerequisites(engine: engine, withQEMU: withQEMU, pvh: false)
        guard let guest = files["linux"] else { throw BenchmarkUnavailable(description: "the linux guest is not fetched") }
        signal(SIGPIPE, SIG_IGN)
        var networkSkipped: String? = wantsNetwork ? BenchNetwork.unavailableReason : "not asked for (--no-network)"
        let network = networkSkipped == nil ? try BenchNetwork() : nil
        defer { network?.remove() }
        if network == nil, let why = networkSkipped { progress("TCP is not measured: \(why)") }
        let transferBytes = networkMiB << 20
        // The kernel's messages off the console first: one printed in the middle of a result line
        // (QEMU's guest refined its TSC calibration just then, once) hid that phase's result.
        var script = "dmesg -n 1; visor-iobench /dev/vda \(sizeMiB) \(jobs) virtio0; "
        if network != nil { script += BenchNetwork.guestScript(uploadBytes: transferBytes, downloadBytes: transferBytes) }
        script += "poweroff -f\n"

        /// One boot with the peer beside it when the network half runs.
        func boot(_ path: String, _ arguments: [String], what: String) throws -> (String, TCPResult?) {
            guard let network else {
                return (try session(path, arguments, script: script, what: what, timeoutSeconds: timeoutSeconds), nil)
            }
            let peer = TCPPeer(network: network, uploadBytes: transferBytes, downloadBytes: transferBytes,
                               deadline: monotonicNanoseconds() &+ UInt64(timeoutSeconds * 1e9))
            let wrapped = network.inside(path, arguments)
            let output = try session(wrapped.path, wrapped.arguments, script: script, what: what, timeoutSeconds: timeoutSeconds)
            switch peer.result() {
            case .success(let tcp): return (output, tcp)
            case .failure(let error): throw error
            }
        }

        let scratch = try ScratchImage(sizeMiB: sizeMiB)
        defer { scratch.remove() }
        // root=initramfs: the scratch disk is not a root disk (Visor would give the guest
        // root=/dev/vda with a disk), so the guest stays in its initramfs as under QEMU.
        var visorArguments = ["run", "linux", "--engine", engine, "--memory", "\(memoryMiB)M", "--disk", scratch.path,
                              "--cmdline", "root=initramfs", "--stats"]
        if let network { visorArguments += ["--net", "tap=\(network.tap)"] }
        let (visorOutput, visorTCP) = try boot(visor, visorArguments, what: "visor run linux --engine \(engine)")
        var visorResult = try results(visorOutput, what: "visor (\(engine))")
        let counters = deviceCounters(visorOutput)
        visorResult.notifications = counters?.notifications
        visorResult.completions = counters?.completions
        visorResult.deviceInterrupts = counters?.interrupts
        visorResult.polledPasses = counters?.polled
        visorResult.tcp = visorTCP
        visorResult.deviceLines = visorOutput.split(whereSeparator: \.isNewline).filter { $0.hasPrefix("virtio-") }.map(String.init)
        progress("visor \(engine): " + visorResult.phases.map { "\($0.phase) \(Int($0.iops.rounded())) IOPS" }.joined(separator: ", ")
                 + (visorTCP.map { String(format: "; TCP %.2f MiB/s up, %.2f MiB/s down", $0.uploadMiBPerSecond, $0.downloadMiBPerSecond) } ?? ""))

        var qemuResult: IORunResult?
        if let qemu {
            try scratch.recreate()
            // QEMU's pc machine (as `visor bench linux` boots it) with the disk on virtio-pci: the
            // same virtio-blk device and driver, another transport (a notification is one exit
            // on either). Its microvm machine, which has virtio-mmio, left this kernel stalled
            // after a failed TSC calibration on a loaded host, in some boots and not others.
            let arguments = ["-accel", "tcg", "-m", "\(memoryMiB)", "-smp", "1",
                             "-display", "none", "-nodefaults", "-no-reboot", "-serial", "stdio",
                             "-kernel", guest.kernel.path, "-initrd", guest.initrd.path, "-append", guest.commandLine,
                             "-drive", "id=scratch,file=\(scratch.path),format=raw,if=none,cache=writeback",
                             "-device", "virtio-blk-pci,drive=scratch"]
                + (network.map { ["-netdev", "tap,id=net0,ifname=\($0.tap),script=no,downscript=no", "-device", "virtio-net-pci,netdev=net0"] } ?? [])
            let (output, tcp) = try boot(qemu, arguments, what: "QEMU")
            var result = try results(output, what: "QEMU")
            result.tcp = tcp
            qemuResult = result
            progress("QEMU TCG: " + result.phases.map { "\($0.phase) \(Int($0.iops.rounded())) IOPS" }.joined(separator: ", ")
                     + (tcp.map { String(format: "; TCP %.2f MiB/s up, %.2f MiB/s down", $0.uploadMiBPerSecond, $0.downloadMiBPerSecond) } ?? ""))
        }
        if network != nil { networkSkipped = nil }
        return IOBenchmarkReport(engine: engine, sizeMiB: sizeMiB, jobs: jobs, visor: visorResult, qemu: qemuResult,
                                 networkSkipped: networkSkipped)
    }

    /// The four phases from a console transcript, or an error naming what is missing.
    static func results(_ output: String, what: String) throws -> IORunResult {
        let parsed = output.split(whereSeparator: \.isNewline).compactMap { IOPhaseResult(line: $0) }
        let missing = phases.filter { name in !parsed.contains { $0.phase == name } }
        guard missing.isEmpty else {
            throw BenchmarkError.guestFailed("\(what): the guest printed no result for \(missing.joined(separator: ", ")); "
                + "the console's end:\n\(String(output.suffix(3000)))")
        }
        return IORunResult(phases: phases.compactMap { name in parsed.first { $0.phase == name } })
    }

    /// The first virtio-blk device's counters from `--stats` ("virtio-blk 0 (…): requestq N
    /// buffers, M notifications, K interrupts[, P passes found by polling]"; P is 0 when absent).
    static func deviceCounters(_ output: String) -> (notifications: UInt64, completions: UInt64, interrupts: UInt64, polled: UInt64)? {
        for line in output.split(whereSeparator: \.isNewline) where line.hasPrefix("virtio-blk 0 ") {
            guard let queue = line.range(of: "): requestq ") else { continue }
            let words = line[queue.upperBound...].split(separator: " ")
            func number(before word: String) -> UInt64? {
                guard let index = words.firstIndex(where: { $0.hasPrefix(word) }), index > 0 else { return nil }
                return UInt64(words[index - 1])
            }
            if let c = number(before: "buffers"), let n = number(before: "notifications"), let i = number(before: "interrupts") {
                return (n, c, i, number(before: "passes") ?? 0)
            }
        }
        return nil
    }

    /// Boots `path`, types `script` at the shell's first prompt, and returns everything the
    /// child wrote once it has exited with status 0.
    static func session(_ path: String, _ arguments: [String], script: String, what: String,
                        timeoutSeconds: Double) throws -> String {
        let started = monotonicNanoseconds()
        let child = try ConsoleChild.spawn(path, arguments)
        defer { child.closePipes() }
        var watch = LinuxConsoleWatch()
        var transcript: [UInt8] = []
        var typed = false
        let deadline = started &+ UInt64(timeoutSeconds * 1e9)
        var buffer = [UInt8](repeating: 0, count: 65536)
        reading: while true {
            guard monotonicNanoseconds() < deadline else {
                child.kill()
                throw BenchmarkError.guestFailed("\(what) did not power off within \(Int(timeoutSeconds)) s "
                    + "(it was killed); the console's end:\n\(watch.tail)")
            }
            switch child.read(into: &buffer, waitingMilliseconds: 100) {
            case .endOfFile: break reading
            case .nothingYet: continue
            case .bytes(let count):
                transcript.append(contentsOf: buffer[0..<count])
                if watch.feed(buffer[0..<count]).prompt && !typed {
                    typed = true
                    child.write(Array(script.utf8))
                }
            }
        }
        let (status, _) = child.wait()
        guard status == 0, typed else {
            throw BenchmarkError.guestFailed("\(what) exited with status \(status)"
                + (typed ? "" : " before the shell's prompt") + "; the console's end:\n\(watch.tail)")
        }
        return String(decoding: transcript, as: UTF8.self)
    }
}

/// A sparse raw image of the benchmark's size in the temporary folder, removed afterwards.
final class ScratchImage {
    let path: String
    let bytes: Int64

    init(sizeMiB: Int) throws {
        path = NSTemporaryDirectory() + "visor-bench-io-\(getpid()).img"
        bytes = Int64(sizeMiB) * 1_048_576
        try recreate()
    }

    /// Empties the image (a new sparse file), so each platform starts from the same disk.
    func recreate() throws {
        unlink(path)
        let fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0o600)
        guard fd >= 0 else { throw BenchmarkError.guestFailed("cannot create the scratch image \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard ftruncate(fd, off_t(bytes)) == 0 else {
            throw BenchmarkError.guestFailed("cannot size the scratch image \(path): \(String(cString: strerror(errno)))")
        }
    }

    func remove() { unlink(path) }
}
