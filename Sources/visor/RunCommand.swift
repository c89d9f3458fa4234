// `visor run`: boot one kernel with its serial console on this terminal.

import ArgumentParser
import Foundation
import Visor

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Boot a kernel with its serial console on this terminal.",
        discussion: """
            KERNEL is a multiboot (ELF32 or ELF64) or plain ELF64 x86-64 kernel, or the name of a \
            built-in guest (see `visor guests`). Without KERNEL, the built-in `demo` guest runs.

            In place of KERNEL, one or more domain configuration files (*.cfg, Xen's xl.cfg \
            syntax: name, kernel, ramdisk, extra/cmdline, memory, vcpus, cpus, cpus_soft, \
            cpu_weight, cap, and Visor's engine) run as domains sharing the pCPUs; their console \
            lines are prefixed with the domain name and a table of CPU shares ends the run. \
            For example: visor run a.cfg b.cfg --pcpus 1 --sched credit --for 10s

            Visor exits with the guest's status: 0 when the guest powers off, (v << 1) | 1 when it \
            writes v to the debug-exit port 0xf4 (QEMU's isa-debug-exit), 2 when it crashes, \
            4 when every vCPU halts with interrupts off (nothing can wake it), 6 when stopped (--timeout, Ctrl-] or a signal), \
            65 for a bad kernel or option, 69 when the engine is unavailable.

            On an interactive terminal, keys go to the guest; press Ctrl-] to stop it. Keys the guest \
            does not take yet wait in a 4 KiB backlog; beyond that, or left at the end, they are \
            dropped (--stats counts them).
            """)

    @Argument(help: "A kernel image path or built-in guest name; or one or more xl.cfg domain files (*.cfg).")
    var kernels: [String] = []

    @Option(help: "The CPU-virtualization engine: kvm (hardware-assisted) or interp (a software CPU).")
    var engine: String = "kvm"

    @Option(help: "Guest RAM, e.g. 128M, 1G (a bare number is MiB).")
    var memory: String = "128M"

    @Option(help: "The kernel command line.")
    var cmdline: String = ""

    @Option(name: .customLong("module"), help: "A multiboot module to load (repeatable); an optional ' args' after the path becomes its string.")
    var modules: [String] = []

    @Option(help: "Virtual CPUs (1-\(Domain.maximumVCPUs)). vCPU 0 boots; the guest starts the others with INIT and start-up IPIs.")
    var vcpus: Int = 1

    @Flag(help: "Print exits by reason and the time spent when the guest ends.")
    var stats = false

    @Option(help: "Stop the guest after this long, e.g. 10s, 500ms (it did not finish: status 6).")
    var timeout: String?

    @Option(name: .customLong("for"), help: "Run for this long, then stop the domains and print the share table (status 0).")
    var runFor: String?

    @Option(help: "Physical CPUs the domains share (default: the host's CPU count, here \(HostCPU.count)).")
    var pcpus: Int = HostCPU.count

    @Option(help: "The VM scheduler: credit, credit2, rtds or null.")
    var sched: String = "credit2"

    @Option(help: "Write every scheduling decision to this file as Chrome trace-event JSON (open it in Perfetto or chrome://tracing).")
    var trace: String?

    /// The config files among the arguments (all of them, or none).
    var configurationFiles: [String] { kernels.allSatisfy { $0.hasSuffix(".cfg") } ? kernels : [] }

    func validate() throws {
        guard ByteSize.parse(memory) != nil else {
            throw ValidationError("--memory '\(memory)' is not a size: use a number with an optional unit K, M or G, e.g. 256M")
        }
        if let timeout, DurationText.parse(timeout) == nil {
            throw ValidationError("--timeout '\(timeout)' is not a duration: use e.g. 10s, 500ms or 2m")
        }
        if let problem = EngineRegistry.problem(withName: engine) { throw ValidationError(problem) }
        guard (1...Domain.maximumVCPUs).contains(vcpus) else {
            throw ValidationError("--vcpus \(vcpus) is out of range: a domain has 1 to \(Domain.maximumVCPUs) vCPUs")
        }
        if let runFor, DurationText.parse(runFor) == nil {
            throw ValidationError("--for '\(runFor)' is not a duration: use e.g. 10s, 500ms or 2m")
        }
        guard (1...256).contains(pcpus) else {
            throw ValidationError("--pcpus \(pcpus) is out of range: use 1 to 256")
        }
        guard let kind = (try? SchedulerKind(name: sched)), kind != .arinc653 else {
            throw ValidationError("--sched '\(sched)' is not a scheduler: choose credit, credit2, rtds or null")
        }
        _ = kind
        if kernels.count > 1 && configurationFiles.isEmpty {
            throw ValidationError("several arguments must all be xl.cfg files (*.cfg); a kernel runs alone: \(kernels.joined(separator: " "))")
        }
    }

    func run() throws {
        let request = RunRequest(kernel: kernels.first ?? "demo", configurationFiles: configurationFiles,
                                 engine: engine, memoryBytes: ByteSize.parse(memory) ?? 0,
                                 commandLine: cmdline, modules: modules,
                                 timeout: timeout.flatMap(DurationText.parse),
                                 runFor: runFor.flatMap(DurationText.parse), printStatistics: stats,
                                 vcpuCount: vcpus, pcpuCount: pcpus,
                                 scheduler: (try? SchedulerKind(name: sched)) ?? .credit2, tracePath: trace)
        let status = Launcher.run(request)
        throw ExitCode(status)
    }
}
