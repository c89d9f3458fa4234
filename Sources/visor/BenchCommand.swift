// `visor bench`: benchmarks of Visor's hot paths and of a Linux boot, each beside its reference
// in the same run.

import ArgumentParser
import Foundation
import Visor
import VisorBench

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure Visor's hot paths and a Linux boot against a reference, in one run.",
        subcommands: [ExitsBenchCommand.self, CPUBenchCommand.self, InterruptBenchCommand.self, SchedBenchCommand.self,
                      SharesBenchCommand.self, PVBenchCommand.self, HostileBenchCommand.self, LinuxBenchCommand.self, IOBenchCommand.self,
                      LifecycleBenchCommand.self])
}

struct ExitsBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exits",
        abstract: "Exit round trip: port writes at CPL0 and CPL3 under Visor and under a minimal C VMM.")

    @Option(parsing: .unconditional, help: "Port writes per privilege level per round, 1-100000000.")
    var count: String = "20000"

    @Option(parsing: .unconditional, help: "Rounds, 1-100; the report shows medians.")
    var rounds: String = "3"

    func values() throws -> (count: UInt64, rounds: Int) {
        (try OptionValue.wholeNumber(count, option: "--count", in: 1...100_000_000,
                                     allowed: "give 1 to 100000000 port writes"),
         try BenchRounds.read(rounds))
    }

    func validate() throws { _ = try values() }

    func run() throws {
        let (count, rounds) = try values()
        guard let engine = EngineRegistry.engine(named: "kvm") else { throw ExitCode(ExitStatus.unavailable) }
        do {
            let result = try ExitBenchmark.run(count: count, rounds: rounds, engine: engine)
            print(result.report)
        } catch {
            Launcher.printError("\(error)")
            throw ExitCode(ExitStatus.internalFailure)
        }
    }
}

struct CPUBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cpu",
        abstract: "Guest MIPS of five loops (ALU, 8 MiB copy, 16 MiB sieve, calls, jump table) on an engine.",
        discussion: "With --qemu, the same guest ELF also runs under qemu-system-x86_64 -accel tcg in the same run, and the ratio per loop and its geometric mean are printed.")

    @Option(parsing: .unconditional, help: "The engine to measure: kvm, interp or bt.")
    var engine: String = "kvm"

    @Flag(help: "Also run the guest under QEMU's TCG and print ratios.")
    var qemu = false

    @Flag(help: "A tenth of the work: for a quick look, not for figures.")
    var quick = false

    func validate() throws {
        _ = try OptionValue.engine(engine)
    }

    func run() throws {
        try reportingFailure { try CPUBenchmark.run(engineName: engine, quick: quick, withQEMU: qemu).text }
    }
}

struct InterruptBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "irq",
        abstract: "Timer-interrupt latency (deadline to handler entry) and IPI round trip, per engine.",
        discussion: "Runs the sleeper guest (one-shot APIC timer) and the smp guest on two vCPUs on each engine, and with --qemu the same ELFs under qemu-system-x86_64 -accel tcg in the same run. Figures are the guests' own TSC measurements.")

    @OptionGroup var engineSelection: EngineSelection

    @Flag(help: "Also run the guests under QEMU's TCG and print ratios.")
    var qemu = false

    @Flag(help: "Fewer samples: for a quick look, not for figures.")
    var quick = false

    func run() throws {
        try reportingFailure { try InterruptBenchmark.run(engineNames: engineSelection.names, quick: quick, withQEMU: qemu).text }
    }
}

struct SchedBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sched",
        abstract: "Host cost of one scheduling decision (credit, credit2, rtds, null) with 8, 64 and 512 vCPUs, and the scheduler's share of a pCPU in the weights scenario.",
        discussion: "Pure policies on a manual clock: no guest, no KVM needed. 4 pCPUs, N CPU hogs over 4 domains; ns per decision are medians over rounds.")

    @Option(parsing: .unconditional, help: "Rounds, 1-100; the report shows medians.")
    var rounds: String = "5"

    @Flag(help: "Fewer decisions per round and 1 simulated second: for a quick look, not for figures.")
    var quick = false

    func validate() throws { _ = try BenchRounds.read(rounds) }

    func run() throws {
        let rounds = try BenchRounds.read(rounds)
        do {
            print(try SchedBenchmark.run(rounds: rounds, quick: quick).text)
        } catch {
            Launcher.printError("\(error)")
            throw ExitCode(ExitStatus.internalFailure)
        }
    }
}

struct SharesBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shares",
        abstract: "The scheduler on real engines: weight 256:512 shares, a 50 % cap, and a sleeper's wake-up latency next to a CPU hog, on one pCPU.",
        discussion: "Each scenario runs built-in guests (cpuhog, sleeper) as domains on a one-pCPU pool for --seconds; shares are the CPU time the pool charged (what the vCPU threads got while they held the pCPU) ÷ wall time. The weights row also gives the two hogs' parts of what the pool charged and of their threads' CPU time as the kernel counts it; --busy N runs N spinning threads beside every scenario.")

    @OptionGroup var engineSelection: EngineSelection

    @Option(parsing: .unconditional, help: "Seconds per scenario, 0.5-600.")
    var seconds: String = "10"

    @Option(parsing: .unconditional, help: "The scheduler: credit or credit2 (the ones with weights and caps).")
    var sched: String = "credit"

    @Option(parsing: .unconditional, help: "Threads spinning in the process beside each scenario (other work on the host), 0-64.")
    var busy: String = "0"

    func values() throws -> (seconds: Double, scheduler: SchedulerKind, busy: Int) {
        let seconds = try OptionValue.decimal(seconds, option: "--seconds", in: 0.5...600,
                                              allowed: "give 0.5 to 600 seconds per scenario")
        guard sched == "credit" || sched == "credit2" else {
            throw ValidationError("--sched '\(sched)' is not offered here: choose credit or credit2 (the schedulers with weights and caps)")
        }
        let busy: Int = try OptionValue.wholeNumber(busy, option: "--busy", in: 0...64, allowed: "give 0 to 64 threads")
        return (seconds, sched == "credit" ? .credit : .credit2, busy)
    }

    func validate() throws { _ = try values() }

    func run() throws {
        let (seconds, kind, busy) = try values()
        try reportingFailure {
            try ShareBenchmark.run(engineNames: engineSelection.names, seconds: seconds, scheduler: kind, busyLoops: busy).text
        }
    }
}

struct PVBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pv",
        abstract: "Paravirtual vs native per engine: hypercall vs port-I/O exit, PV console vs the UART, PV timer vs the APIC timer.",
        discussion: "Runs the minios guest's bench command booted PV and booted native (pv=off) on each engine; the guest times itself, Visor counts the console's exits.")

    @OptionGroup var engineSelection: EngineSelection

    @Option(parsing: .unconditional, help: "Round trips per measurement, 10-1000000.")
    var iterations: String = "1000"

    func values() throws -> Int {
        try OptionValue.wholeNumber(iterations, option: "--iterations", in: 10...1_000_000,
                                    allowed: "give 10 to 1000000 round trips")
    }

    func validate() throws { _ = try values() }

    func run() throws {
        let iterations = try values()
        try reportingFailure { try PVBenchmark.run(engineNames: engineSelection.names, iterations: iterations).text }
    }
}

struct HostileBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hostile",
        abstract: "Each hostile guest beside a CPU hog on one pCPU: the hog's share, and how long a stop takes.",
        discussion: "Runs the hostile guest in each mode (\(HostileBenchmark.modes.joined(separator: ", "))) beside cpuhog with an equal share of a one-pCPU pool (credit) for --seconds from the moment its attack starts, then stops both as --timeout, Ctrl-] and signals do. Prints the hog's share of the pCPU (fair: 50 %), its part of the time the pool handed out, the hostile domain's share and outcome, and the stop latency.")

    @OptionGroup var engineSelection: EngineSelection

    @Option(name: .customLong("mode"), help: "A mode to measure (repeatable; default: every mode).")
    var modes: [String] = []

    @Option(help: "Seconds per mode.")
    var seconds: Double = 5

    func validate() throws {
        guard seconds >= 0.5, seconds <= 600 else { throw ValidationError("--seconds must be between 0.5 and 600") }
        for mode in modes where !HostileBenchmark.modes.contains(mode) {
            throw ValidationError("--mode '\(mode)': choose one of \(HostileBenchmark.modes.joined(separator: ", "))")
        }
    }

    func run() throws {
        try reportingFailure {
            try HostileBenchmark.run(engineNames: engineSelection.names, modes: modes.isEmpty ? HostileBenchmark.modes : modes,
                                     seconds: seconds).text
        }
    }
}

struct LinuxBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "linux",
        abstract: "Boot time of Debian's Linux guest to its /init marker and to power-off: wall and host CPU time.",
        discussion: """
            Boots the fetched Linux guest (Guests/linux/fetch: Debian's kernel, the busybox initramfs, \
            console=ttyS0, 128 MiB) as `visor run linux` does, in a child process, and measures from its start \
            until the /init marker line appears on the console and until it has exited after the guest powered \
            off (`poweroff -f` is typed at the shell's first prompt). CPU time is the child's user + system \
            time. With --qemu the same kernel, initramfs and command line also boot under \
            qemu-system-x86_64 -accel tcg (or VISOR_QEMU), rounds alternating, and the table shows the \
            ratios Visor / QEMU of the medians. With --pvh, vmlinux through its PVH entry (linux-pvh) is \
            measured too. Use a release build: a debug build's interp takes over ten minutes per boot. \
            Exits 69 when the guest is not fetched, or QEMU or the engine is missing.
            """)

    @Option(parsing: .unconditional, help: "The engine to measure: interp, bt or kvm (on a PVM /dev/kvm Linux is far too slow).")
    var engine: String = "interp"

    @Flag(help: "Also boot the same kernel under QEMU's TCG, in the same run, and print ratios.")
    var qemu = false

    @Flag(help: "Also boot vmlinux through its PVH entry (linux-pvh).")
    var pvh = false

    @Option(parsing: .unconditional, help: "Rounds, 1-100; the report shows medians.")
    var rounds: String = "3"

    @Option(parsing: .unconditional, help: "Virtual CPUs of the guest (QEMU's -smp), 1-64.")
    var vcpus: String = "1"

    @Option(parsing: .unconditional, help: "How long one boot may take before it is killed as hung (a guard, not a figure).")
    var timeout: String = "15m"

    func values() throws -> (rounds: Int, vcpus: Int, timeout: Double) {
        _ = try OptionValue.engine(engine)
        let limit = try OptionValue.duration(timeout, option: "--timeout")
        let (seconds, attoseconds) = limit.components
        return (try BenchRounds.read(rounds),
                try OptionValue.wholeNumber(vcpus, option: "--vcpus", in: 1...Domain.maximumVCPUs,
                                            allowed: "a domain has 1 to \(Domain.maximumVCPUs) vCPUs"),
                Double(seconds) + Double(attoseconds) / 1e18)
    }

    func validate() throws { _ = try values() }

    func run() throws {
        let (rounds, vcpus, timeout) = try values()
        do {
            let report = try LinuxBenchmark.run(visor: try LinuxBenchmark.thisExecutable(), engine: engine, vcpus: vcpus,
                                                rounds: rounds, withQEMU: qemu, pvh: pvh, timeoutSeconds: timeout) {
                FileHandle.standardError.write(Data("visor bench linux: \($0)\n".utf8))
            }
            print(report.text)
        } catch let error as BenchmarkUnavailable {
            Launcher.printError(error.description)
            throw ExitCode(ExitStatus.unavailable)
        } catch {
            Launcher.printError("\(error)")
            throw ExitCode(ExitStatus.internalFailure)
        }
    }
}

struct IOBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "io",
        abstract: "Block I/O through virtio-blk from inside Debian's Linux guest: IOPS, and notifications and interrupts per request.",
        discussion: """
            Boots the fetched Linux guest (Guests/linux/fetch) with a fresh sparse scratch image as its disk \
            (/dev/vda) and, at the shell's first prompt, runs visor-iobench (Guests/linux/iobench.c, in the \
            initramfs): 4 KiB requests with O_DIRECT over the first --size MiB, sequential write, sequential \
            read, random read, random write, from --jobs threads, timed by the guest's own clock. The table \
            shows IOPS and MiB/s per phase, and the interrupts the device's line took per request (the \
            guest's /proc/interrupts). Visor's line adds its --stats counts over the whole run: QueueNotify \
            notifications and interrupts per request, and the passes its worker found requests for by \
            polling the ring. Then TCP through virtio-net: the benchmark makes a network \
            namespace of its own with a TAP (10.77.0.1/24; the guest is 10.77.0.2), runs the guest inside it, \
            and a thread of its own in the namespace times --tcp-size MiB from the guest (dd | nc) and to the \
            guest (nc -l); this needs root and /dev/net/tun, and is left out with the reason otherwise, or \
            with --no-network. With --qemu, the same kernel, initramfs, workload and \
            virtio-blk device (on QEMU's virtio-pci transport) under qemu-system-x86_64 -accel tcg (or \
            VISOR_QEMU), in the same run, and the ratio. Use a release build. Exits 69 when the guest is not fetched, or \
            QEMU or the engine is missing.
            """)

    @Option(parsing: .unconditional, help: "The engine to measure: interp, bt or kvm (on a PVM /dev/kvm Linux is far too slow).")
    var engine: String = "interp"

    @Flag(help: "Also run the same workload under QEMU's TCG (virtio-blk-pci), in the same run.")
    var qemu = false

    @Option(parsing: .unconditional, help: "MiB of the scratch disk the requests cover, 1-4096.")
    var size: String = "16"

    @Option(parsing: .unconditional, help: "Threads issuing requests in the guest, 1-64: more keep several requests in flight.")
    var jobs: String = "1"

    @Flag(help: "Leave out the TCP half (it needs root and /dev/net/tun, for a network namespace and a TAP of its own).")
    var noNetwork = false

    @Option(parsing: .unconditional, help: "MiB moved over TCP in each direction, 1-1024.")
    var tcpSize: String = "8"

    @Option(parsing: .unconditional, help: "How long one boot may take before it is killed as hung (a guard, not a figure).")
    var timeout: String = "15m"

    func values() throws -> (size: Int, jobs: Int, tcpSize: Int, timeout: Double) {
        _ = try OptionValue.engine(engine)
        let limit = try OptionValue.duration(timeout, option: "--timeout")
        let (seconds, attoseconds) = limit.components
        return (try OptionValue.wholeNumber(size, option: "--size", in: 1...4096, allowed: "give 1 to 4096 MiB"),
                try OptionValue.wholeNumber(jobs, option: "--jobs", in: 1...64, allowed: "give 1 to 64 threads"),
                try OptionValue.wholeNumber(tcpSize, option: "--tcp-size", in: 1...1024, allowed: "give 1 to 1024 MiB"),
                Double(seconds) + Double(attoseconds) / 1e18)
    }

    func validate() throws { _ = try values() }

    func run() throws {
        let (size, jobs, tcpSize, timeout) = try values()
        do {
            let report = try IOBenchmark.run(visor: try LinuxBenchmark.thisExecutable(), engine: engine, sizeMiB: size,
                                             jobs: jobs, withQEMU: qemu, network: !noNetwork, networkMiB: tcpSize,
                                             timeoutSeconds: timeout) {
                FileHandle.standardError.write(Data("visor bench io: \($0)\n".utf8))
            }
            print(report.text)
        } catch let error as BenchmarkUnavailable {
            Launcher.printError(error.description)
            throw ExitCode(ExitStatus.unavailable)
        } catch {
            Launcher.printError("\(error)")
            throw ExitCode(ExitStatus.internalFailure)
        }
    }
}

/// `--engine NAME` (repeatable) for the benchmarks that run on several engines.
struct EngineSelection: ParsableArguments {
    @Option(name: .customLong("engine"), parsing: .unconditionalSingleValue,
            help: "An engine to measure: kvm, interp or bt (repeatable; default: kvm when /dev/kvm opens, interp and bt).")
    var engines: [String] = []

    func validate() throws {
        for engine in engines { _ = try OptionValue.engine(engine) }
    }

    /// The engines asked for, or every engine this host can run.
    var names: [String] { engines.isEmpty ? EngineRegistry.availableNames() : engines }
}

/// `--rounds`, as the benchmarks that repeat take it.
enum BenchRounds {
    static func read(_ text: String) throws -> Int {
        try OptionValue.wholeNumber(text, option: "--rounds", in: 1...100, allowed: "give 1 to 100 rounds")
    }
}

/// Prints the benchmark's report; a failure becomes `visor: message` and status 70.
func reportingFailure(_ body: () throws -> String) throws {
    do {
        print(try body())
    } catch {
        Launcher.printError("\(error)")
        throw ExitCode(ExitStatus.internalFailure)
    }
}
