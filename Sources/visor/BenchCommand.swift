// `visor bench`: benchmarks of Visor's hot paths, each beside its reference in the same run.

import ArgumentParser
import Visor

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure Visor's hot paths against a reference, in one run.",
        subcommands: [ExitsBenchCommand.self, CPUBenchCommand.self, InterruptBenchCommand.self, SchedBenchCommand.self,
                      SharesBenchCommand.self, PVBenchCommand.self, HostileBenchCommand.self])
}

struct ExitsBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exits",
        abstract: "Exit round trip: port writes at CPL0 and CPL3 under Visor and under a minimal C VMM.")

    @Option(help: "Port writes per privilege level per round.")
    var count: UInt64 = 20_000

    @Option(help: "Rounds; the report shows medians.")
    var rounds: Int = 3

    func validate() throws {
        guard count > 0, count <= 100_000_000 else { throw ValidationError("--count must be between 1 and 100000000") }
        guard rounds > 0, rounds <= 100 else { throw ValidationError("--rounds must be between 1 and 100") }
    }

    func run() throws {
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

    @Option(help: "The engine to measure.")
    var engine: String = "kvm"

    @Flag(help: "Also run the guest under QEMU's TCG and print ratios.")
    var qemu = false

    @Flag(help: "A tenth of the work: for a quick look, not for figures.")
    var quick = false

    func validate() throws {
        if let problem = EngineRegistry.problem(withName: engine) { throw ValidationError(problem) }
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

    func validate() throws {
    }

    func run() throws {
        try reportingFailure { try InterruptBenchmark.run(engineNames: engineSelection.names, quick: quick, withQEMU: qemu).text }
    }
}

struct SchedBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sched",
        abstract: "Host cost of one scheduling decision (credit, credit2, rtds, null) with 8, 64 and 512 vCPUs, and the scheduler's share of a pCPU in the weights scenario.",
        discussion: "Pure policies on a manual clock: no guest, no KVM needed. 4 pCPUs, N CPU hogs over 4 domains; ns per decision are medians over rounds.")

    @Option(help: "Rounds; the report shows medians.")
    var rounds: Int = 5

    @Flag(help: "Fewer decisions per round and 1 simulated second: for a quick look, not for figures.")
    var quick = false

    func validate() throws {
        guard rounds > 0, rounds <= 100 else { throw ValidationError("--rounds must be between 1 and 100") }
    }

    func run() throws {
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
        discussion: "Each scenario runs built-in guests (cpuhog, sleeper) as domains on a one-pCPU pool for --seconds; shares are pCPU time held ÷ wall time.")

    @OptionGroup var engineSelection: EngineSelection

    @Option(help: "Seconds per scenario.")
    var seconds: Double = 10

    @Option(help: "The scheduler: credit or credit2 (the ones with weights and caps).")
    var sched: String = "credit"

    func validate() throws {
        guard seconds >= 0.5, seconds <= 600 else { throw ValidationError("--seconds must be between 0.5 and 600") }
        guard sched == "credit" || sched == "credit2" else {
            throw ValidationError("--sched '\(sched)': choose credit or credit2 (the schedulers with weights and caps)")
        }
    }

    func run() throws {
        let kind: SchedulerKind = sched == "credit" ? .credit : .credit2
        try reportingFailure { try ShareBenchmark.run(engineNames: engineSelection.names, seconds: seconds, scheduler: kind).text }
    }
}

struct PVBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pv",
        abstract: "Paravirtual vs native per engine: hypercall vs port-I/O exit, PV console vs the UART, PV timer vs the APIC timer.",
        discussion: "Runs the minios guest's bench command booted PV and booted native (pv=off) on each engine; the guest times itself, Visor counts the console's exits.")

    @OptionGroup var engineSelection: EngineSelection

    @Option(help: "Round trips per measurement.")
    var iterations: Int = 1000

    func validate() throws {
        guard (10...1_000_000).contains(iterations) else { throw ValidationError("--iterations must be between 10 and 1000000") }
    }

    func run() throws {
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

/// `--engine NAME` (repeatable) for the benchmarks that run on several engines.
struct EngineSelection: ParsableArguments {
    @Option(name: .customLong("engine"), help: "An engine to measure (repeatable; default: kvm when /dev/kvm opens, and interp).")
    var engines: [String] = []

    func validate() throws {
        for engine in engines {
            if let problem = EngineRegistry.problem(withName: engine) { throw ValidationError(problem) }
        }
    }

    /// The engines asked for, or every engine this host can run.
    var names: [String] { engines.isEmpty ? EngineRegistry.availableNames() : engines }
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
