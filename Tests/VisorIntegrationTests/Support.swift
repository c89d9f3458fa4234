// What the integration tests share: where the visor binary is, whether KVM and QEMU are here,
// and running a process with a time limit.

import Foundation
import Testing
import Visor
import VisorBench

enum Host {
    /// What `VISOR_TEST_WITHOUT` names ("kvm qemu tmux objdump", separated by spaces or commas):
    /// treated as missing, so that the skips a machine without them gets can be seen on one
    /// that has them.
    static let pretendMissing: Set<String> = Set(
        (ProcessInfo.processInfo.environment["VISOR_TEST_WITHOUT"] ?? "")
            .split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init))

    /// True when /dev/kvm can be opened. When it cannot, say so loudly: the tests that need it
    /// are reported as skipped (`.enabled(if: Host.kvmAvailable, Host.noKVM)`), never as passed,
    /// and tests that run on every engine run on `interp` and `bt` only.
    static let kvmAvailable: Bool = {
        if pretendMissing.contains("kvm") {
            FileHandle.standardError.write(Data("*** VISOR_TEST_WITHOUT: behaving as if /dev/kvm were missing.\n".utf8))
            return false
        }
        let fd = open("/dev/kvm", O_RDWR | O_CLOEXEC)
        if fd >= 0 { close(fd); return true }
        FileHandle.standardError.write(Data("""
            *** SKIPPING every test that needs /dev/kvm: it cannot be opened here (errno \(errno)).
            *** Those tests are reported as skipped, not passed; tests run on every engine run on interp and bt only.

            """.utf8))
        return false
    }()
    static let noKVM = skipReason("kvm", "needs /dev/kvm, which cannot be opened here")

    /// The engines a test that runs "on every engine" runs on here.
    static var engines: [String] { kvmAvailable ? ["kvm", "interp", "bt"] : ["interp", "bt"] }

    /// The path of `name` on PATH, nil when it is not there or `VISOR_TEST_WITHOUT` names `alias`.
    static func executable(_ name: String, alias: String) -> String? {
        guard !pretendMissing.contains(alias) else { return nil }
        let directories = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":")
        return directories.map { $0 + "/" + name }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static let qemuPath: String? = executable("qemu-system-x86_64", alias: "qemu")
    static let noQEMU = skipReason("qemu", "needs qemu-system-x86_64, which is not on PATH (apt-get install qemu-system-x86)")

    /// tmux, which the interactive console tests type through.
    static let tmuxPath: String? = executable("tmux", alias: "tmux")
    static let noTmux = skipReason("tmux", "needs tmux, which is not on PATH (apt-get install tmux)")

    /// GNU objdump (binutils), which disassembles the hypercall page.
    static let objdumpPath: String? = executable("objdump", alias: "objdump")
    static let noObjdump = skipReason("objdump", "needs GNU objdump, which is not on PATH (apt-get install binutils)")

    /// Why a test that needs `alias` is skipped: `why`, or that `VISOR_TEST_WITHOUT` said so.
    static func skipReason(_ alias: String, _ why: String) -> Comment {
        Comment(rawValue: pretendMissing.contains(alias) ? "\(why.prefix { $0 != "," }) (VISOR_TEST_WITHOUT=\(alias))" : why)
    }

    /// The folder with the built products: the test runner sits there beside `visor`.
    static let productsDirectory: URL = {
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        if url.lastPathComponent.hasSuffix(".xctest") || url.path.contains(".xctest/") {
            while !url.lastPathComponent.hasSuffix(".xctest") { url.deleteLastPathComponent() }
            url.deleteLastPathComponent()
        }
        return url
    }()

    static var visorPath: String { productsDirectory.appendingPathComponent("visor").path }
}

/// The checkout these tests were compiled from: its README, docs and Guests/ sources.
enum Checkout {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
}

struct ProcessResult {
    var status: Int32
    var stdout: String
    var stderr: String
    var timedOut: Bool
}

/// Runs a program with no standard input and kills it after `timeout` seconds; optionally sends
/// it `signal` once `after` seconds have passed since its standard output first contained
/// `signalAfterOutput` (since it started, when that is nil), so that a signal meant for a
/// running guest does not arrive, on a slow machine, before the guest has started.
func runProcess(_ path: String, _ arguments: [String], timeout: Double = 60,
                signal: (number: Int32, after: Double)? = nil, signalAfterOutput: String? = nil) throws -> ProcessResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let deadline = Date().addingTimeInterval(timeout)
    // Drain both pipes concurrently so a chatty child never blocks on a full pipe; standard
    // output as it comes, so the signal can wait for a line.
    let outLock = NSLock()
    nonisolated(unsafe) var outData = Data(), errData = Data()
    let group = DispatchGroup()
    DispatchQueue.global().async(group: group) {
        while case let chunk = out.fileHandleForReading.availableData, !chunk.isEmpty {
            outLock.withLock { outData.append(chunk) }
        }
    }
    DispatchQueue.global().async(group: group) { errData = err.fileHandleForReading.readDataToEndOfFile() }
    var timedOut = false
    var signalAt = signalAfterOutput == nil ? signal.map { Date().addingTimeInterval($0.after) } : nil
    var awaitedOutput = signal == nil ? nil : signalAfterOutput.map { Data($0.utf8) }
    while process.isRunning {
        if let awaited = awaitedOutput, let signal, outLock.withLock({ outData.range(of: awaited) != nil }) {
            signalAt = Date().addingTimeInterval(signal.after)
            awaitedOutput = nil
        }
        if let at = signalAt, Date() > at, let signal {
            kill(process.processIdentifier, signal.number)
            signalAt = nil
        }
        if Date() > deadline { timedOut = true; process.terminate(); kill(process.processIdentifier, SIGKILL); break }
        usleep(10_000)
    }
    process.waitUntilExit()
    group.wait()
    return ProcessResult(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                         stderr: String(decoding: errData, as: UTF8.self), timedOut: timedOut)
}

func runVisor(_ arguments: [String], timeout: Double = 60, signal: (number: Int32, after: Double)? = nil,
              signalAfterOutput: String? = nil) throws -> ProcessResult {
    try runProcess(Host.visorPath, arguments, timeout: timeout, signal: signal, signalAfterOutput: signalAfterOutput)
}

/// The ELF image of a built-in guest, building it if needed.
func guestImage(_ name: String) throws -> String {
    try GuestCatalog.standard().image(named: name).path
}

/// A `hello` domain on interp that is created but never run: what the host does to a domain
/// (console input, shutdown requests) can be offered to it and its state read back.
func idleHelloDomain() throws -> Domain {
    let engine = try #require(EngineRegistry.engine(named: "interp"))
    let kernel = try [UInt8](Data(contentsOf: URL(fileURLWithPath: guestImage("hello"))))
    return try Domain(configuration: DomainConfiguration(name: "hello", kernelDescription: "hello",
                                                         kernel: kernel, engine: engine),
                      consoleOutput: { _ in })
}

/// What `runMeasuringCPU` saw: exit status, output, and the child's CPU and wall time.
struct MeasuredRun {
    var status: Int32
    var stdout: String
    var cpuSeconds: Double
    var wallSeconds: Double
}

/// Runs a program to completion with its standard output captured in a temporary file and
/// returns the CPU time (user + system) the kernel charged to it, from wait4(2).
func runMeasuringCPU(_ path: String, _ arguments: [String]) throws -> MeasuredRun {
    let start = Date()
    let r = try spawnAndWait(path, arguments)
    func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
    return MeasuredRun(status: r.status, stdout: r.stdout,
                       cpuSeconds: seconds(r.usage.ru_utime) + seconds(r.usage.ru_stime),
                       wallSeconds: Date().timeIntervalSince(start))
}

/// Runs a program to completion with every signal unblocked and at its default action, and
/// returns its status and standard output. Test threads (Swift concurrency, dispatch) run with
/// signals blocked and a spawned child inherits that mask; a daemon such as the tmux server
/// started that way never sees SIGCHLD and stalls.
///
/// The program starts through bash (dash cannot close descriptors above 9), which first
/// closes every descriptor above 2: a child that outlives the call (the tmux server) must not
/// keep a pipe another test thread has open at that moment (Foundation's pipes are not
/// close-on-exec), or that test waits forever for end-of-file (GuestCatalog's `make` did,
/// holding the guest build lock).
func runUnmasked(_ path: String, _ arguments: [String]) throws -> (status: Int32, stdout: String) {
    let closeOthers = #"for fd in /proc/$$/fd/*; do n=${fd##*/}; [ "$n" -gt 2 ] 2>/dev/null && eval "exec $n>&-"; done; exec "$0" "$@""#
    let r = try spawnAndWait("/bin/bash", ["-c", closeOthers, path] + arguments)
    return (r.status, r.stdout)
}

/// Runs a program (see `spawnUnmasked`) with standard input from /dev/null, standard output to a
/// temporary file and standard error discarded; waits with wait4.
private func spawnAndWait(_ path: String, _ arguments: [String]) throws -> (status: Int32, stdout: String, usage: rusage) {
    let outputPath = FileManager.default.temporaryDirectory
        .appendingPathComponent("visor-spawn-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).out").path
    defer { unlink(outputPath) }
    let pid = try spawnUnmasked(path, arguments) { actions in
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    }
    var status: Int32 = 0
    var usage = rusage()
    while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
    return (shellStatus(status),
            (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "", usage)
}

/// What the sleeper guest printed. Its own verdict (`sleeper: PASS`) also bounds the worst
/// wake-up latency at 50 ms, a wall-clock figure a loaded host breaks; the tests check what
/// must hold anywhere (every sleep ran to its end, no timer fired early) and leave latency to
/// `visor bench irq` and `visor bench shares`.
struct SleeperReport {
    var sleeps: UInt64
    var elapsedNanoseconds: UInt64
    var expectedNanoseconds: UInt64
    var early: UInt64
    var averageLatencyNanoseconds: UInt64
    var maxLatencyNanoseconds: UInt64

    /// Nil when the guest did not get as far as its figures.
    init?(_ stdout: String) {
        func fields(_ prefix: String) -> [String: UInt64]? {
            guard let line = stdout.split(separator: "\n").first(where: { $0.hasPrefix(prefix) }) else { return nil }
            var out: [String: UInt64] = [:]
            for field in line.dropFirst(prefix.count).split(separator: " ") {
                let parts = field.split(separator: "=", maxSplits: 1)
                if parts.count == 2, let value = UInt64(parts[1]) { out[String(parts[0])] = value }
            }
            return out
        }
        guard let mode = fields("sleeper: mode="), let latency = fields("sleeper: latency_ns "),
              let timing = fields("sleeper: elapsed_ns="),
              let count = mode["count"], let average = latency["avg"], let maximum = latency["max"],
              let expected = timing["expected_ns"], let early = timing["early"],
              let elapsedLine = stdout.split(separator: "\n").first(where: { $0.hasPrefix("sleeper: elapsed_ns=") }),
              let elapsed = UInt64(elapsedLine.dropFirst("sleeper: elapsed_ns=".count).prefix { $0.isNumber })
        else { return nil }
        sleeps = count
        elapsedNanoseconds = elapsed
        expectedNanoseconds = expected
        self.early = early
        averageLatencyNanoseconds = average
        maxLatencyNanoseconds = maximum
    }

    /// The guest ended as it does when its only complaint is the latency bound, or passed.
    static func endedWell(_ r: ProcessResult) -> Bool {
        r.status == 0 && r.stdout.contains("sleeper: PASS")
            || r.status == 3 && r.stdout.contains("sleeper: FAIL (max latency")
    }
}

/// Expects a sleeper run to have made every sleep, none shorter than asked and no timer early.
func expectSleeperWokeOnTime(_ r: ProcessResult, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(SleeperReport.endedWell(r), "stdout: \(r.stdout)\nstderr: \(r.stderr)", sourceLocation: sourceLocation)
    guard let report = SleeperReport(r.stdout) else {
        Issue.record("the sleeper printed no figures: \(r.stdout)\nstderr: \(r.stderr)", sourceLocation: sourceLocation)
        return
    }
    #expect(report.early == 0, "timer interrupts came early: \(r.stdout)", sourceLocation: sourceLocation)
    #expect(report.elapsedNanoseconds >= report.expectedNanoseconds, "the sleeps took less than asked: \(r.stdout)",
            sourceLocation: sourceLocation)
}

/// Expects a ticker run to have taken all its periodic timer interrupts, none sooner than the
/// programmed period allows. The guest's own verdict also bounds the mean period at +20 %, which
/// a loaded host breaks (ticks that come late are lost, as a periodic APIC timer loses them);
/// a mean period shorter than programmed (more than the guest's 20 % tolerance) is a bug anywhere.
func expectTickerTicked(_ r: ProcessResult, sourceLocation: SourceLocation = #_sourceLocation) {
    guard let line = r.stdout.split(separator: "\n").first(where: { $0.hasPrefix("ticker: period_ns ") }) else {
        Issue.record("the ticker printed no period: \(r.stdout)\nstderr: \(r.stderr)", sourceLocation: sourceLocation)
        return
    }
    var fields: [String: UInt64] = [:]
    for field in line.split(separator: " ") {
        let parts = field.split(separator: "=", maxSplits: 1)
        if parts.count == 2, let value = UInt64(parts[1]) { fields[String(parts[0])] = value }
    }
    guard let programmed = fields["programmed"], let measured = fields["measured"] else {
        Issue.record("unreadable ticker line: \(line)", sourceLocation: sourceLocation)
        return
    }
    let passed = r.status == 0 && r.stdout.contains("ticker: PASS")
    let onlyLate = r.status == 3 && r.stdout.contains("ticker: FAIL (mean period") && measured > programmed
    #expect(passed || onlyLate, "stdout: \(r.stdout)\nstderr: \(r.stderr)", sourceLocation: sourceLocation)
    #expect(measured >= programmed - programmed / 5, "ticks came too fast: \(line)", sourceLocation: sourceLocation)
}
