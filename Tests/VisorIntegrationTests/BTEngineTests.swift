// The `bt` engine (issue 13) as a whole, through `visor`: every built-in guest gives on bt what
// it gives on interp (each run on both, side by side, and compared), systest with no skips,
// SMP guests on 2-4 vCPUs, the hostile guests and the shutdown requests (extensions of their
// suites: the same checks as on interp and kvm), xl.cfg's `engine = "bt"` through `visor run`
// and the toolstack, and `--stats`, whose bt section shows that guest code really ran translated. The suites that run
// on every engine (`Host.engines`: interrupts, PV, stops, console input, scheduling, NMIs,
// HPET, QEMU side by side) include bt as well.

import Foundation
import Testing
@testable import Visor
import VisorAPI
import VisorCore

/// One built-in guest run, as `visor run GUEST ARGUMENTS --engine E`.
struct BTGuestCase: Sendable, CustomTestStringConvertible {
    enum Comparison: Sendable {
        /// Standard output byte for byte.
        case exact
        /// The checks' verdicts (`BTGuestCase.verdicts`): the guest also prints timings.
        case verdicts
        /// cpubench's `result=` per loop (it also prints TSC ticks).
        case cpubenchResults
    }

    var guest: String
    var arguments: [String] = []
    /// The status the guest ends with on interp (and so must on bt).
    var status: Int32 = 0
    var comparison: Comparison
    var testDescription: String { ([guest] + arguments).joined(separator: " ") }

    static let all: [BTGuestCase] = [
        BTGuestCase(guest: "hello", comparison: .exact),
        BTGuestCase(guest: "hello", arguments: ["--cmdline", "exit=5"], status: 11, comparison: .exact),
        BTGuestCase(guest: "demo", arguments: ["--cmdline", "a b"], comparison: .exact),
        BTGuestCase(guest: "triplefault", status: 2, comparison: .exact),
        BTGuestCase(guest: "exitbench", arguments: ["--cmdline", "n=500"], comparison: .exact),
        BTGuestCase(guest: "systest", comparison: .verdicts),
        BTGuestCase(guest: "emufail", comparison: .verdicts),
        BTGuestCase(guest: "tasks", comparison: .verdicts),
        BTGuestCase(guest: "hpet", comparison: .verdicts),
        BTGuestCase(guest: "pvtest", comparison: .verdicts),
        BTGuestCase(guest: "pvtest", arguments: ["--vcpus", "2"], comparison: .verdicts),
        BTGuestCase(guest: "nmi", arguments: ["--vcpus", "2"], comparison: .verdicts),
        BTGuestCase(guest: "smp", arguments: ["--vcpus", "3", "--cmdline", "cpus=3 pings=20"], comparison: .verdicts),
        BTGuestCase(guest: "cpubench", arguments: ["--cmdline", InterpBootTests.smallCPUBench], comparison: .cpubenchResults),
    ]

    /// The lines that judge a check (a word PASS, FAIL or SKIP, or a guest's closing "all
    /// passed"), in order.
    static func verdicts(_ output: String) -> [Substring] {
        output.split(separator: "\n").filter { line in
            line.split(separator: " ").contains { $0 == "PASS" || $0 == "FAIL" || $0 == "SKIP" }
                || line.contains("all checks passed") || line.contains("all passed")
        }
    }
}

@Suite("bt runs every built-in guest as interp does", .serialized, .timeLimit(.minutes(10)))
struct BTGuestTests {
    @Test("a built-in guest ends the same and prints the same on bt as on interp", arguments: BTGuestCase.all)
    func sameAsInterp(_ c: BTGuestCase) throws {
        let command = ["run", c.guest] + c.arguments + ["--timeout", "120s"]
        let interp = try runVisor(command + ["--engine", "interp"], timeout: 180)
        let bt = try runVisor(command + ["--engine", "bt"], timeout: 180)
        let report = "interp: status \(interp.status)\n\(interp.stdout)\(interp.stderr)\nbt: status \(bt.status)\n\(bt.stdout)\(bt.stderr)"
        // The case means what it says on interp, then bt must do the same.
        #expect(interp.status == c.status, "\(report)")
        #expect(bt.status == interp.status, "\(report)")
        switch c.comparison {
        case .exact:
            #expect(!bt.stdout.isEmpty && bt.stdout == interp.stdout, "\(report)")
        case .verdicts:
            let expected = BTGuestCase.verdicts(interp.stdout)
            #expect(!expected.isEmpty && !expected.contains { $0.contains("FAIL") }, "\(report)")
            #expect(BTGuestCase.verdicts(bt.stdout) == expected, "\(report)")
        case .cpubenchResults:
            let expected = InterpBootTests.cpubenchResults(interp.stdout)
            #expect(expected.count == 5, "\(report)")
            #expect(InterpBootTests.cpubenchResults(bt.stdout) == expected, "\(report)")
        }
        if c.status == 2 {
            #expect(bt.stderr.contains("triple fault") && bt.stderr.contains("rip="), "\(report)")
        }
    }

    @Test("systest passes every check on bt, skipping none, as on interp")
    func systest() throws {
        let r = try runVisor(["run", "--engine", "bt", "systest"])
        #expect(r.status == 0, "stdout: \(r.stdout) stderr: \(r.stderr)")
        #expect(r.stdout.contains("systest: all checks passed"))
        #expect(!r.stdout.contains("FAIL"))
        #expect(!r.stdout.contains("SKIP"), "bt runs on the software CPU, which follows the SDM where the hosts depart from it")
        #expect(r.stdout.split(separator: "\n").filter { $0.hasPrefix("PASS") }.count >= 22)
        #expect(r.stdout.contains("systest: compatibility-mode checks (Intel rules)"))
    }

    @Test("smp on bt: every vCPU comes up through INIT/SIPI and answers IPIs", arguments: [2, 4])
    func smp(vcpus: Int) throws {
        let r = try runVisor(["run", "--engine", "bt", "smp", "--vcpus", "\(vcpus)", "--cmdline", "cpus=\(vcpus)",
                              "--timeout", "120s"], timeout: 180)
        #expect(r.status == 0, "stdout: \(r.stdout) stderr: \(r.stderr)")
        #expect(r.stdout.contains("smp: PASS"), "\(r.stdout)")
        for cpu in 0..<vcpus { #expect(r.stdout.contains("cpu \(cpu) (apic id "), "\(r.stdout)") }
        #expect(r.stdout.split(separator: "\n").filter { $0.hasSuffix(") up") }.count == vcpus, "\(r.stdout)")
    }

    @Test("--timeout preempts a bt vCPU in a long translated loop")
    func timeout() throws {
        let r = try runVisor(["run", "--engine", "bt", "cpubench", "--cmdline", "alu=100000000000", "--timeout", "1s"],
                             timeout: 60)
        #expect(!r.timedOut)
        #expect(r.status == 6, "stderr: \(r.stderr)")
    }
}

// MARK: --stats

/// The counts of `--stats`' bt section (nil when it has none).
struct BTStatsSection {
    var blocksTranslated: UInt64
    var instructionsTranslated: UInt64
    var entries: UInt64
    var instructionsRetired: UInt64
    var instructionsTranslatedRun: UInt64
    var instructionsInterpreted: UInt64

    init?(_ stderr: String) {
        let lines = stderr.split(separator: "\n")
        guard let made = lines.first(where: { $0.hasPrefix("bt: translated ") }),
              let ran = lines.first(where: { $0.hasPrefix("bt: entered translated code ") }) else { return nil }
        /// The whole numbers of a line, in order.
        func numbers(_ line: Substring) -> [UInt64] {
            line.split(whereSeparator: { !$0.isNumber && $0 != "." }).compactMap { UInt64($0) }
        }
        let m = numbers(made), r = numbers(ran)
        // "bt: translated B blocks of I guest instructions, ..." and
        // "bt: entered translated code N times; instructions T: X translated (P %), Y by the interpreter".
        guard m.count >= 2, r.count >= 4 else { return nil }
        blocksTranslated = m[0]
        instructionsTranslated = m[1]
        entries = r[0]
        instructionsRetired = r[1]
        instructionsTranslatedRun = r[2]
        instructionsInterpreted = r[r.count - 1]
    }
}

@Suite("visor run --stats on bt", .serialized, .timeLimit(.minutes(5)))
struct BTStatisticsTests {
    @Test("--stats on bt prints the translator's section: blocks translated and run, most of demo's instructions translated")
    func section() throws {
        let r = try runVisor(["run", "--engine", "bt", "demo", "--stats"])
        #expect(r.status == 0, "stderr: \(r.stderr)")
        let stats = try #require(BTStatsSection(r.stderr), "no bt section in:\n\(r.stderr)")
        #expect(stats.blocksTranslated > 0 && stats.instructionsTranslated >= stats.blocksTranslated, "\(r.stderr)")
        #expect(stats.entries > 0, "\(r.stderr)")
        // The mechanism is used: translated code retired guest instructions, and the counts add up.
        #expect(stats.instructionsTranslatedRun > 0, "\(r.stderr)")
        #expect(stats.instructionsTranslatedRun + stats.instructionsInterpreted == stats.instructionsRetired, "\(r.stderr)")
        // demo's sieve is plain integer code, which the translator covers: most of the run.
        #expect(stats.instructionsTranslatedRun > stats.instructionsInterpreted, "\(r.stderr)")
        // The rest of --stats is there as on every engine.
        #expect(r.stderr.contains("exits: "), "\(r.stderr)")
    }

    @Test("the bt section sums every vCPU's counts (smp on 2 vCPUs)")
    func smp() throws {
        let r = try runVisor(["run", "--engine", "bt", "smp", "--vcpus", "2", "--cmdline", "cpus=2 pings=20", "--stats",
                              "--timeout", "120s"], timeout: 180)
        #expect(r.status == 0, "stderr: \(r.stderr)")
        let stats = try #require(BTStatsSection(r.stderr), "no bt section in:\n\(r.stderr)")
        #expect(stats.instructionsTranslatedRun > 0, "\(r.stderr)")
        #expect(stats.instructionsTranslatedRun + stats.instructionsInterpreted == stats.instructionsRetired, "\(r.stderr)")
    }

    @Test("interp's --stats has no bt section")
    func notOnInterp() throws {
        let r = try runVisor(["run", "--engine", "interp", "hello", "--stats"])
        #expect(r.status == 0, "stderr: \(r.stderr)")
        #expect(r.stderr.contains("exits: "), "\(r.stderr)")
        #expect(BTStatsSection(r.stderr) == nil && !r.stderr.contains("bt: "), "\(r.stderr)")
    }
}

// MARK: xl.cfg and the toolstack

@Suite("bt through xl.cfg and the toolstack", .serialized, .timeLimit(.minutes(10)))
struct BTConfigurationTests {
    @Test("engine = \"bt\" in an xl.cfg file parses as bt")
    func parses() throws {
        let spec = try XLConfig.parse("name = \"d\"\nkernel = \"demo\"\nengine = \"bt\"\n", path: "a.cfg").spec
        #expect(spec.engine == "bt")
    }

    @Test("visor run with an xl.cfg naming bt, beside one on interp: both run their guests to the end")
    func run() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("visor-bt-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let onBT = dir.appendingPathComponent("onbt.cfg").path
        try "name = \"onbt\"\nkernel = \"pvtest\"\nvcpus = 2\nengine = \"bt\"\n".write(toFile: onBT, atomically: true, encoding: .utf8)
        let onInterp = dir.appendingPathComponent("oninterp.cfg").path
        try "name = \"oninterp\"\nkernel = \"hello\"\nengine = \"interp\"\n".write(toFile: onInterp, atomically: true, encoding: .utf8)
        let r = try runVisor(["run", onBT, onInterp, "--stats", "--timeout", "120s"], timeout: 180)
        #expect(r.status == 0, "stdout: \(r.stdout)\nstderr: \(r.stderr)")
        #expect(r.stdout.contains("[onbt] pvtest: all checks passed"), "\(r.stdout)")
        #expect(r.stdout.contains("[oninterp] Hello from a Visor guest!"), "\(r.stdout)")
        // --stats: the bt domain's section follows its own header, and the interp domain has none.
        let sections = r.stderr.components(separatedBy: "oninterp:\n")
        #expect(sections.count == 2, "\(r.stderr)")
        #expect(BTStatsSection(sections.first ?? "").map { $0.instructionsTranslatedRun > 0 } == true, "\(r.stderr)")
        #expect(BTStatsSection(sections.last ?? "") == nil, "\(r.stderr)")
    }

    @Test("the toolstack: a bt domain from an xl.cfg runs beside an interp one, is listed with its engine, and a bt domain that crashes stops neither")
    func toolstack() throws {
        let daemon = try ServedDaemon()
        #expect(try daemon.client.hostInfo().engines.contains("bt"))
        _ = try daemon.client.create(configurationFile: try daemon.config("onbt", engine: "bt"))
        _ = try daemon.client.create(configurationFile: try daemon.config("oninterp"))
        #expect(waitUntil(seconds: 180) { ((try? daemon.cpu("onbt")) ?? 0) > 0 && ((try? daemon.cpu("oninterp")) ?? 0) > 0 })
        let listed = try daemon.client.list()
        #expect(listed.map(\.name) == ["onbt", "oninterp"] && listed.map(\.engine) == ["bt", "interp"])
        // Both guests run their code: each has written its banner.
        #expect(waitUntil(seconds: 180) {
            ((try? daemon.client.domain("onbt"))?.consoleBytes ?? 0) > 0 && ((try? daemon.client.domain("oninterp"))?.consoleBytes ?? 0) > 0
        })
        // A bt guest that powers off ends as it does on interp.
        _ = try daemon.client.create(configurationFile: try daemon.config("hibt", kernel: "hello", extra: "", engine: "bt"))
        #expect(waitUntil(seconds: 180) {
            ((try? daemon.client.dmesg()) ?? []).contains { $0.contains("'hibt' ended: powered off") }
        })
        // One that triple faults is destroyed (on_crash's default); the others run on.
        let before = (try daemon.cpu("onbt"), try daemon.cpu("oninterp"))
        _ = try daemon.client.create(configurationFile: try daemon.config("btcrash", kernel: "triplefault", extra: "", engine: "bt"))
        #expect(waitUntil(seconds: 180) {
            ((try? daemon.client.dmesg()) ?? []).contains { $0.contains("'btcrash' ended: crashed: vCPU 0: triple fault") }
        })
        #expect(waitUntil(seconds: 180) {
            ((try? daemon.cpu("onbt")) ?? 0) > before.0 && ((try? daemon.cpu("oninterp")) ?? 0) > before.1
        })
        #expect(try daemon.client.list().map(\.name) == ["onbt", "oninterp"])
        #expect(daemon.terminate() == 0, "\(daemon.process.stderr)")
    }
}

// MARK: Hostile guests on bt

extension HostileGuestStopTests {
    @Test("Ctrl-] and SIGTERM stop each hostile guest on bt", arguments: persistentHostileModes)
    func stopsOnBT(mode: String) throws {
        try checkStops(mode: mode, engine: "bt")
    }

    @Test("a triple fault crashes the hostile domain at once, status 2 (bt)")
    func tripleFaultOnBT() throws {
        try checkTripleFault(engine: "bt")
    }

    @Test("the hostile variants: resetting the other vCPU, code outside RAM, a second vCPU started with garbage (bt)")
    func variantsOnBT() throws {
        try checkVariants(engine: "bt")
    }
}

extension HostileGuestNeighbourTests {
    /// Among them xmodify: vCPU 1 rewrites code vCPU 0 runs, which on bt is translated code;
    /// after a serializing CPUID vCPU 0 must run what was last written (stale=0).
    @Test("a cpuhog beside each hostile guest on one pCPU keeps its share; --timeout stops both (bt)",
          arguments: allHostileModes)
    func neighbourOnBT(mode: String) throws {
        try checkNeighbour(mode: mode, engine: "bt")
    }
}

// MARK: Shutdown requests on bt

extension ShutdownRequestGuestTests {
    @Test("minios (PV) powers off on request (bt)")
    func pvPowerOffBT() throws { try powerOff(engine: "bt", pv: true) }
    @Test("minios (pv=off) powers off on the ACPI power button (bt)")
    func nativePowerOffBT() throws { try powerOff(engine: "bt", pv: false) }
    @Test("minios (PV) reboots on request (bt)")
    func pvRebootBT() throws { try pvReboot(engine: "bt") }
    @Test("minios (pv=off) cannot be asked to reboot and keeps running (bt)")
    func nativeRebootBT() throws { try nativeRebootRefused(engine: "bt") }
    @Test("cpuhog ends as asked while it spins (bt)", arguments: CPUHogCase.all)
    func cpuhogBT(_ c: CPUHogCase) throws { try cpuhog(engine: "bt", c) }
    @Test("a guest that listens to neither is asked nothing and keeps running (bt)", arguments: ["bsp=halt", "bsp=block"])
    func deafBT(commandLine: String) throws { try deaf(engine: "bt", commandLine: commandLine) }
}

// MARK: CPUID on bt

extension CPUIDFeatureTests {
    @Test("every feature bt advertises runs on bt, and every probe that runs is advertised")
    func btRunsWhatItAdvertises() throws {
        let machine = ProbeMachine(engine: try #require(EngineRegistry.engine(named: "bt")))
        var state = X86State()
        #expect(try machine.run([0x0f, 0x0b], user: true, state: &state) == .exception(6), "the harness sees #UD")
        let advertised = try machine.advertisedFeatures()
        for probe in CPUIDProbes.all {
            let outcome = try machine.run(probe)
            if advertised.contains(probe.feature) {
                #expect(outcome == .completed, "bt advertises \(probe) but the probe \(outcome)")
            } else {
                #expect(outcome != .completed, "bt executes \(probe) but does not advertise it")
            }
        }
    }
}

// MARK: A kernel in low memory

extension LowKernelTests {
    @Test("a kernel at 0x8000 over the usual boot stack and information boots on bt")
    func bootsOnBT() throws {
        let file = try Self.write(Self.kernel(at: 0x8000, memorySize: 0x2000), name: "low-kernel-bt")
        defer { try? FileManager.default.removeItem(at: file) }
        let r = try runVisor(["run", "--engine", "bt", file.path, "--cmdline", "low kernel ok"])
        #expect(r.stdout == "low kernel ok\n", "stderr: \(r.stderr)")
        #expect(r.status == 0)
    }
}

// MARK: Linux's early boot on bt

extension LinuxEarlyBootTests {
    @Test("bzImage on bt: decompressed, command line, e820, initrd, ACPI RSDP",
          .enabled(if: LinuxGuest.bzImageFetched, LinuxGuest.notFetched))
    func bzImageEarlyBootOnBT() throws {
        try expectBzImageEarlyBoot(engine: "bt")
    }
}

extension LinuxShellTests {
    @Test("the bzImage to its shell on bt", .enabled(if: LinuxGuest.bzImageFetched, LinuxGuest.notFetched))
    func bzImageToTheShellOnBT() throws { try shellSession("linux", vcpus: 1, engine: "bt") }
}

@Suite("visor bench cpu on bt", .serialized, .timeLimit(.minutes(5)))
struct BTCPUBenchTests {
    @Test("bench cpu --engine bt --quick --qemu prints a row per loop with both engines' MIPS, their ratio and the geometric mean",
          .enabled(if: Host.qemuPath != nil, Host.noQEMU))
    func table() throws {
        let r = try runVisor(["bench", "cpu", "--engine", "bt", "--quick", "--qemu"], timeout: 240)
        #expect(r.status == 0, "stderr: \(r.stderr)")
        #expect(r.stdout.contains("bt MIPS") && r.stdout.contains("QEMU TCG MIPS"), "\(r.stdout)")
        for loop in ["alu", "copy", "sieve", "calls", "dispatch"] {
            let row = r.stdout.split(separator: "\n").first { $0.hasPrefix(loop + " ") }
            let fields = try #require(row, "no \(loop) row in:\n\(r.stdout)").split(separator: " ")
            // loop, instructions, bt MIPS, QEMU MIPS, ratio: all positive numbers.
            #expect(fields.count == 5, "\(row ?? "")")
            for f in fields.dropFirst() { #expect((Double(f) ?? 0) > 0, "\(row ?? "")") }
        }
        #expect(r.stdout.contains("geometric mean bt / QEMU:"), "\(r.stdout)")
    }
}
