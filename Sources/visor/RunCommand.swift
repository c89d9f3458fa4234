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

            Visor exits with the guest's status: 0 when the guest powers off, (v << 1) | 1 when it \
            writes v to the debug-exit port 0xf4 (QEMU's isa-debug-exit), 2 when it crashes, \
            4 when every vCPU halts with interrupts off (nothing can wake it), 6 when stopped (--timeout, Ctrl-] or a signal), \
            65 for a bad kernel or option, 69 when the engine is unavailable.

            On an interactive terminal, keys go to the guest; press Ctrl-] to stop it.
            """)

    @Argument(help: "A kernel image path, or the name of a built-in guest.")
    var kernel: String = "demo"

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

    @Option(help: "Stop the guest after this long, e.g. 10s, 500ms.")
    var timeout: String?

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
    }

    func run() throws {
        let request = RunRequest(kernel: kernel, engine: engine, memoryBytes: ByteSize.parse(memory) ?? 0,
                                 commandLine: cmdline, modules: modules,
                                 timeout: timeout.flatMap(DurationText.parse), printStatistics: stats,
                                 vcpuCount: vcpus)
        let status = Launcher.run(request)
        throw ExitCode(status)
    }
}
