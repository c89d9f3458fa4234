// `visor bench linux`: how long Debian's Linux guest (Guests/linux/fetch) takes to boot, to
// the marker line its /init prints and to power-off, in wall time and host CPU time; with
// `--qemu`, the same kernel, initramfs and command line under `qemu-system-x86_64 -accel tcg`
// in the same run, rounds interleaved.
//
// Every boot is a child process with its console on pipes: `visor run linux` (this very
// binary, so that Visor pays what a user's `visor run` pays: process start, reading the kernel
// and initrd, boot, teardown) or QEMU. The benchmark reads the console as it comes, notes the
// time and the child's CPU time (/proc/PID/stat) when the marker appears, waits for the
// shell's prompt, types `poweroff -f`, and takes the final figures from wait4(2) once the child
// has exited. Both sides are measured by the same code.

import Foundation
import Visor

/// One boot's figures, in seconds since the child was spawned.
public struct LinuxBootTimes: Sendable, Equatable {
    /// Wall and host CPU (user + system, every thread of the child) time until the marker line
    /// of Guests/linux/init had appeared on the console.
    public var markerWall: Double
    public var markerCPU: Double
    /// The same until the child had exited after the guest powered off.
    public var powerOffWall: Double
    public var powerOffCPU: Double

    public init(markerWall: Double, markerCPU: Double, powerOffWall: Double, powerOffCPU: Double) {
        self.markerWall = markerWall; self.markerCPU = markerCPU
        self.powerOffWall = powerOffWall; self.powerOffCPU = powerOffCPU
    }

    /// Each figure's median over `rounds` (nil when there are none).
    static func median(_ rounds: [LinuxBootTimes]) -> LinuxBootTimes? {
        guard !rounds.isEmpty else { return nil }
        func m(_ key: KeyPath<LinuxBootTimes, Double>) -> Double {
            let sorted = rounds.map { $0[keyPath: key] }.sorted()
            let mid = sorted.count / 2
            return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
        }
        return LinuxBootTimes(markerWall: m(\.markerWall), markerCPU: m(\.markerCPU),
                              powerOffWall: m(\.powerOffWall), powerOffCPU: m(\.powerOffCPU))
    }
}

/// A benchmark that cannot start on this host: the guest is not fetched, QEMU or the engine is
/// missing. `visor bench linux` exits 69 (unavailable) with the message.
public struct BenchmarkUnavailable: Error, CustomStringConvertible {
    public var description: String
}

/// `visor bench linux`'s results: per guest format, each platform's rounds.
public struct LinuxBenchmarkReport: Sendable {
    public struct Row: Sendable {
        /// The built-in guest (`linux`, `linux-pvh`) and what it is, for the table.
        public var guest: String
        public var format: String
        public var visor: [LinuxBootTimes]
        public var qemu: [LinuxBootTimes]?
    }

    public var engine: String
    public var vcpus: Int
    public var memoryMiB: Int
    public var commandLine: String
    /// `uname -r` as the guest's marker line gave it, when it did.
    public var kernelRelease: String?
    public var rows: [Row]

    public var text: String {
        func col(_ s: String, _ w: Int) -> String { s.padding(toLength: w, withPad: " ", startingAt: 0) }
        func seconds(_ value: Double) -> String { String(format: "%.2f", value) }
        func ratio(_ a: Double, _ b: Double) -> String { b > 0 ? String(format: "%.2f×", a / b) : "-" }
        let rounds = rows.first?.visor.count ?? 0
        var lines = [
            "Linux boot: Debian's kernel \(kernelRelease ?? "(release not seen)") with the busybox initramfs, "
                + "'\(commandLine)', \(memoryMiB) MiB, \(vcpus) vCPU\(vcpus == 1 ? "" : "s")",
            "medians of \(rounds) round\(rounds == 1 ? "" : "s"), seconds from the process start; "
                + "cpu is host CPU time (user + system) of the whole process",
            col("guest", 16) + col("run", 16) + col("/init wall", 12) + col("/init cpu", 12)
                + col("off wall", 12) + "off cpu",
        ]
        func line(_ guest: String, _ run: String, _ cells: [String]) -> String {
            col(guest, 16) + col(run, 16) + cells.dropLast().map { col($0, 12) }.joined() + (cells.last ?? "")
        }
        for row in rows {
            guard let v = LinuxBootTimes.median(row.visor) else { continue }
            lines.append(line(row.format, "visor \(engine)", [v.markerWall, v.markerCPU, v.powerOffWall, v.powerOffCPU].map(seconds)))
            if let qemuRounds = row.qemu, let q = LinuxBootTimes.median(qemuRounds) {
                lines.append(line(row.format, "QEMU TCG", [q.markerWall, q.markerCPU, q.powerOffWall, q.powerOffCPU].map(seconds)))
                lines.append(line(row.format, "\(engine) / QEMU",
                                  [ratio(v.markerWall, q.markerWall), ratio(v.markerCPU, q.markerCPU),
                                   ratio(v.powerOffWall, q.powerOffWall), ratio(v.powerOffCPU, q.powerOffCPU)]))
            }
        }
        lines.append("each round, wall seconds to power-off:")
        for row in rows {
            var each = "  \(row.format) visor \(engine): " + row.visor.map { seconds($0.powerOffWall) }.joined(separator: " ")
            if let q = row.qemu { each += "; QEMU TCG: " + q.map { seconds($0.powerOffWall) }.joined(separator: " ") }
            lines.append(each)
        }
        return lines.joined(separator: "\n")
    }
}

public enum LinuxBenchmark {
    /// The guest RAM of every boot: `visor run`'s default, and QEMU's `-m`.
    static let memoryMiB = 128

    /// The guest formats measured: the bzImage always, vmlinux through PVH with `pvh`.
    static func guests(pvh: Bool) -> [(name: String, format: String)] {
        [("linux", "bzImage")] + (pvh ? [("linux-pvh", "vmlinux (PVH)")] : [])
    }

    /// What must be here before any boot starts, checked in one place so that a missing piece is
    /// reported at once rather than after minutes of booting: QEMU (with `withQEMU`), the engine,
    /// and the fetched guest's files. Returns each guest's files.
    static func prerequisites(engine: String, withQEMU: Bool, pvh: Bool) throws
        -> (qemu: String?, files: [String: FetchedGuest.Files]) {
        var qemu: String?
        if withQEMU {
            switch QEMUReference.located {
            case .success(let path): qemu = path
            case .failure(let problem): throw BenchmarkUnavailable(description: problem.description)
            }
        }
        if let problem = EngineRegistry.problem(withName: engine) { throw BenchmarkUnavailable(description: problem) }
        guard EngineRegistry.availableNames().contains(engine) else {
            throw BenchmarkUnavailable(description: "the \(engine) engine is not available here: /dev/kvm cannot be opened")
        }
        var files: [String: FetchedGuest.Files] = [:]
        for guest in guests(pvh: pvh) {
            do {
                guard let found = try GuestCatalog.standard().fetchedGuest(named: guest.name) else {
                    throw BenchmarkUnavailable(description: "no fetched guest is called '\(guest.name)'")
                }
                files[guest.name] = found
            } catch let error as GuestCatalogError {
                throw BenchmarkUnavailable(description: error.description)
            }
        }
        return (qemu, files)
    }

    /// Boots the Linux guest `rounds` times on `engine` through `visor` (the path of this Visor's
    /// executable) and, with `withQEMU`, as often under QEMU's TCG, alternating; with `pvh`, also
    /// vmlinux through its PVH entry. `timeoutSeconds` bounds each boot (a hang guard, not a
    /// figure). `progress` is told each boot's result as it comes.
    public static func run(visor: String, engine: String, vcpus: Int, rounds: Int, withQEMU: Bool, pvh: Bool,
                           timeoutSeconds: Double,
                           progress: (String) -> Void = { _ in }) throws -> LinuxBenchmarkReport {
        let (qemu, files) = try prerequisites(engine: engine, withQEMU: withQEMU, pvh: pvh)
        // A child that dies while the shell's input is written must give EPIPE, not end Visor.
        signal(SIGPIPE, SIG_IGN)
        var report = LinuxBenchmarkReport(engine: engine, vcpus: vcpus, memoryMiB: memoryMiB,
                                          commandLine: files["linux"]?.commandLine ?? "", kernelRelease: nil,
                                          rows: guests(pvh: pvh).map {
                                              .init(guest: $0.name, format: $0.format, visor: [], qemu: withQEMU ? [] : nil)
                                          })
        for round in 1...rounds {
            for (index, row) in report.rows.enumerated() {
                guard let guest = files[row.guest] else { continue }
                let visorArguments = ["run", row.guest, "--engine", engine, "--vcpus", "\(vcpus)",
                                      "--memory", "\(memoryMiB)M"]
                let booted = try boot(visor, visorArguments, what: "visor run \(row.guest) --engine \(engine)",
                                      timeoutSeconds: timeoutSeconds)
                report.rows[index].visor.append(booted.times)
                report.kernelRelease = report.kernelRelease ?? booted.kernelRelease
                progress("round \(round)/\(rounds): \(row.format) on \(engine): \(describe(booted.times))")
                if let qemu {
                    let arguments = ["-accel", "tcg", "-m", "\(memoryMiB)", "-smp", "\(vcpus)", "-display", "none",
                                     "-nodefaults", "-no-reboot", "-serial", "stdio",
                                     "-kernel", guest.kernel.path, "-initrd", guest.initrd.path,
                                     "-append", guest.commandLine]
                    let reference = try boot(qemu, arguments, what: "QEMU (\(row.format))", timeoutSeconds: timeoutSeconds)
                    report.rows[index].qemu?.append(reference.times)
                    progress("round \(round)/\(rounds): \(row.format) on QEMU TCG: \(describe(reference.times))")
                }
            }
        }
        return report
    }

    /// The executable of this process (`visor` when the CLI runs the benchmark), whose `run`
    /// command the Visor boots use.
    public static func thisExecutable() throws -> String {
        var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = buffer.withUnsafeMutableBufferPointer { bytes in
            bytes.baseAddress.map { $0.withMemoryRebound(to: CChar.self, capacity: bytes.count) {
                readlink("/proc/self/exe", $0, bytes.count - 1) } } ?? -1
        }
        guard length > 0 else {
            throw BenchmarkUnavailable(description: "cannot find visor's own executable (/proc/self/exe): \(String(cString: strerror(errno)))")
        }
        return String(decoding: buffer[0..<length], as: UTF8.self)
    }

    static func describe(_ t: LinuxBootTimes) -> String {
        String(format: "/init at %.2f s (cpu %.2f s), power-off at %.2f s (cpu %.2f s)",
               t.markerWall, t.markerCPU, t.powerOffWall, t.powerOffCPU)
    }

    /// One boot: spawns `path` with `arguments`, reads its console until the marker and the
    /// prompt, types `poweroff -f`, and waits for it to exit with status 0.
    static func boot(_ path: String, _ arguments: [String], what: String,
                     timeoutSeconds: Double) throws -> (times: LinuxBootTimes, kernelRelease: String?) {
        let started = monotonicNanoseconds()
        func since() -> Double { Double(monotonicNanoseconds() &- started) / 1e9 }
        let child = try ConsoleChild.spawn(path, arguments)
        defer { child.closePipes() }
        var watch = LinuxConsoleWatch()
        var marker: (wall: Double, cpu: Double)?
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
                let events = watch.feed(buffer[0..<count])
                if events.marker {
                    marker = (since(), ConsoleChild.cpuSeconds(of: child.pid) ?? .nan)
                }
                if events.prompt && !typed {
                    typed = true
                    child.write(Array("poweroff -f\n".utf8))
                }
            }
        }
        let (status, cpu) = child.wait()
        let wall = since()
        guard status == 0, let marker else {
            throw BenchmarkError.guestFailed("\(what) exited with status \(status) "
                + (marker == nil ? "before the /init marker" : "after the /init marker")
                + "; the console's end:\n\(watch.tail)")
        }
        return (LinuxBootTimes(markerWall: marker.wall, markerCPU: marker.cpu, powerOffWall: wall, powerOffCPU: cpu),
                watch.kernelRelease)
    }
}

/// Reads a Linux guest's console as it comes, for the two moments the benchmark waits for: the
/// marker line of Guests/linux/init, and the shell's first prompt after it.
struct LinuxConsoleWatch {
    static let marker = Array("visor-linux: /init is running on ".utf8)
    static let prompt = Array("/ # ".utf8)
    static let tailLimit = 4096

    private(set) var sawMarker = false
    private(set) var sawPrompt = false
    /// The console's last `tailLimit` bytes, for error messages.
    private var recent: [UInt8] = []
    /// What followed the marker on its line, while it is read.
    private var markerRest: [UInt8] = []
    private var markerLineDone = false

    /// Reads `bytes`; says whether the marker or the prompt (after the marker) completed in them.
    mutating func feed(_ bytes: some Sequence<UInt8>) -> (marker: Bool, prompt: Bool) {
        var events = (marker: false, prompt: false)
        for byte in bytes {
            recent.append(byte)
            if recent.count > 2 * Self.tailLimit { recent.removeFirst(recent.count - Self.tailLimit) }
            if sawMarker && !markerLineDone {
                if byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") || markerRest.count >= 200 {
                    markerLineDone = true
                } else {
                    markerRest.append(byte)
                }
            }
            if !sawMarker, byte == Self.marker.last, recent.ends(with: Self.marker) {
                sawMarker = true
                events.marker = true
            } else if sawMarker, !sawPrompt, byte == Self.prompt.last, recent.ends(with: Self.prompt) {
                sawPrompt = true
                events.prompt = true
            }
        }
        return events
    }

    /// The kernel release from the marker line ("… is running on 6.1.0-… (1 CPUs)").
    var kernelRelease: String? {
        guard markerLineDone else { return nil }
        let word = markerRest.prefix { $0 != UInt8(ascii: " ") }
        return word.isEmpty ? nil : String(decoding: word, as: UTF8.self)
    }

    var tail: String {
        String(decoding: recent.suffix(Self.tailLimit), as: UTF8.self).replacingOccurrences(of: "\r", with: "")
    }
}

extension Array where Element == UInt8 {
    func ends(with suffix: [UInt8]) -> Bool {
        count >= suffix.count && self[(count - suffix.count)...].elementsEqual(suffix)
    }
}
