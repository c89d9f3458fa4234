// `visor run`: boot one kernel with its serial console on this terminal.

import ArgumentParser
import Foundation
import Visor

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Boot a kernel with its serial console on this terminal.",
        discussion: """
            KERNEL is a multiboot (ELF32 or ELF64) or plain ELF64 x86-64 kernel, a Linux bzImage \
            (the 64-bit boot protocol) or an uncompressed Linux vmlinux with a PVH entry note, or \
            the name of a built-in guest (see `visor guests`). Without KERNEL, the built-in `demo` \
            guest runs. `linux` is Debian's kernel with a busybox shell, downloaded and built by \
            Guests/linux/fetch; its command line is console=ttyS0 followed by --cmdline (and \
            console=hvc0 with --console virtio, where its shell runs on the virtio console). With \
            --disk IMAGE it runs from that ext4 disk, root=/dev/vda being added unless --cmdline names a \
            root= (the fetch makes one: .build/guests/linux/root.img; Guests/linux/mkrootfs makes others).

            In place of KERNEL, one or more domain configuration files (*.cfg, Xen's xl.cfg \
            syntax: name, kernel, ramdisk, extra/cmdline, memory, vcpus, cpus, cpus_soft, \
            cpu_weight, cap, disk, vif ('bridge=BR' makes a TAP vifN.I, brings it up and adds \
            it to bridge BR; 'vifname=NAME' uses the TAP NAME; mac=), and Visor's engine and console) run as domains sharing the pCPUs; their console \
            lines are prefixed with the domain name and a table of CPU shares ends the run. \
            For example: visor run a.cfg b.cfg --pcpus 1 --sched credit --for 10s

            Visor exits with the guest's status: 0 when the guest powers off, (v << 1) | 1 when it \
            writes v to the debug-exit port 0xf4 (QEMU's isa-debug-exit), 2 when it crashes, \
            4 when every vCPU halts with interrupts off or waits for a start-up IPI (nothing can wake it), 6 when stopped (--timeout, Ctrl-] or a signal). \
            Visor's own: 64 for a bad option, 65 for a bad kernel, initrd or module, 69 when the engine \
            is unavailable or a fetched guest has not been fetched, \
            70 for an internal error.

            On an interactive terminal, keys go to the guest; press Ctrl-] to stop it. Keys the guest \
            does not take yet wait in a 4 KiB backlog; beyond that, or left at the end, they are \
            dropped (--stats counts them).
            """)

    @Argument(help: "A kernel image path or built-in guest name; or one or more xl.cfg domain files (*.cfg).")
    var kernels: [String] = []

    @Option(parsing: .unconditional, help: "The CPU-virtualization engine: kvm (hardware-assisted), interp (a software CPU) or bt (binary translation: guest code rewritten into host code, the rest on interp's software CPU).")
    var engine: String = "kvm"

    @Option(parsing: .unconditional,
            help: "Guest RAM, \(RunOptionLimits.memoryRange): a whole number with an optional unit K, M or G (a bare number is MiB), e.g. 128M, 1G.")
    var memory: String = "128M"

    @Option(parsing: .unconditional, help: "The kernel command line (for a fetched guest such as `linux`: added to its own).")
    var cmdline: String = ""

    @Option(parsing: .unconditional,
            help: "A Linux kernel's initial RAM disk (a multiboot kernel gets it as its first module), as QEMU's -initrd.")
    var initrd: String?

    @Option(name: .customLong("disk"), parsing: .unconditionalSingleValue,
            help: "A raw disk image as a virtio-blk disk (repeatable; Linux names them vda, vdb, ...): FILE, or FILE,ro for a read-only disk.")
    var disks: [String] = []

    @Option(name: .customLong("net"), parsing: .unconditionalSingleValue,
            help: "A network interface, virtio-net on a host TAP (repeatable, after the disks; Linux names them eth0, eth1, ...; at most 5 disks and interfaces in all): tap=NAME[,mac=XX:XX:XX:XX:XX:XX]. An existing TAP is used as it is; otherwise Visor creates it (needs CAP_NET_ADMIN) and it goes away when Visor ends. The address defaults to one derived from the domain's name.")
    var networks: [String] = []
    @Option(parsing: .unconditional,
            help: "The console device: serial (the 16550 UART, Linux's ttyS0) or virtio (a virtio-console, Linux's hvc0, which moves whole buffers per exit; a Linux kernel gets console=hvc0 and the 16550 keeps the lines from before its driver loads). For xl.cfg files, the default of those without console =.")
    var console: String = "serial"

    @Option(name: .customLong("module"), parsing: .unconditionalSingleValue,
            help: "A multiboot module to load (repeatable); an optional ' args' after the path becomes its string.")
    var modules: [String] = []

    @Option(parsing: .unconditional,
            help: "Virtual CPUs (1-\(Domain.maximumVCPUs)). vCPU 0 boots; the guest starts the others with INIT and start-up IPIs.")
    var vcpus: String = "1"

    @Flag(help: "Print exits by reason and the time spent when the guest ends (on interp also the sensitive-but-unprivileged instructions run, by CPL).")
    var stats = false

    @Option(parsing: .unconditional, help: "Stop the guest after this long, e.g. 10s, 500ms, 2m (it did not finish: status 6).")
    var timeout: String?

    @Option(name: .customLong("for"), parsing: .unconditional,
            help: "Run for this long, e.g. 10s, then stop the domains and print the share table (status 0).")
    var runFor: String?

    @Option(parsing: .unconditional,
            help: "Physical CPUs the domains share, 1-\(Self.maximumPCPUs); the default is the host's CPU count.")
    var pcpus: String = "\(HostCPU.count)"

    @Option(parsing: .unconditional, help: "The VM scheduler: credit, credit2, rtds or null.")
    var sched: String = "credit2"

    @Option(parsing: .unconditional,
            help: "Write every scheduling decision to this file as Chrome trace-event JSON (open it in Perfetto or chrome://tracing).")
    var trace: String?

    static let maximumPCPUs = 256

    @Flag(name: .customLong("pin-pcpus"), help: "Bind pCPU i to the i-th host CPU this process may use (sched_setaffinity), so cpus= and vcpu-pin name real processors; --pcpus at most that many.")
    var pinPCPUs = false

    /// The config files among the arguments (all of them, or none).
    var configurationFiles: [String] { kernels.allSatisfy { $0.hasSuffix(".cfg") } ? kernels : [] }

    /// The options as the launcher takes them; throws the first bad value's message.
    func request() throws -> RunRequest {
        let vcpuCount = try OptionValue.wholeNumber(vcpus, option: "--vcpus", in: 1...Domain.maximumVCPUs,
                                                    allowed: "a domain has 1 to \(Domain.maximumVCPUs) vCPUs")
        let pcpuCount = try OptionValue.wholeNumber(pcpus, option: "--pcpus", in: 1...Self.maximumPCPUs,
                                                    allowed: "the pool has 1 to \(Self.maximumPCPUs) pCPUs")
        guard let kind = try? SchedulerKind(name: sched), kind != .arinc653 else {
            throw ValidationError("--sched '\(sched)' is not a scheduler: choose credit, credit2, rtds or null")
        }
        if let trace, let problem = RunOptionLimits.traceProblem(trace) {
            throw ValidationError("--trace '\(trace)': \(problem)")
        }
        if kernels.count > 1 && configurationFiles.isEmpty {
            throw ValidationError("several arguments must all be xl.cfg files (*.cfg); a kernel runs alone: \(kernels.joined(separator: " "))")
        }
        if !disks.isEmpty && !configurationFiles.isEmpty {
            throw ValidationError("--disk is for a kernel on the command line; an xl.cfg file names its disks with disk = [ ... ]")
        }
        if !networks.isEmpty && !configurationFiles.isEmpty {
            throw ValidationError("--net is for a kernel on the command line; an xl.cfg file names its interfaces with vif = [ ... ]")
        }
        let networkConfigurations: [NetworkConfiguration]
        do {
            networkConfigurations = try networks.map { text throws(NetSpecError) in try NetworkConfiguration(option: text) }
        } catch {
            throw ValidationError(error.description)
        }
        let diskConfigurations: [DiskConfiguration]
        do {
            diskConfigurations = try disks.map { text throws(DiskSpecError) in try DiskConfiguration(option: text) }
        } catch {
            throw ValidationError(error.description)
        }
        var request = RunRequest(kernel: kernels.first ?? "demo", configurationFiles: configurationFiles,
                          engine: try OptionValue.engine(engine), memoryBytes: try OptionValue.guestRAM(memory),
                          commandLine: cmdline, modules: modules, initrd: initrd,
                          timeout: try timeout.map { try OptionValue.duration($0, option: "--timeout") },
                          runFor: try runFor.map { try OptionValue.duration($0, option: "--for") },
                          printStatistics: stats, vcpuCount: vcpuCount, pcpuCount: pcpuCount,
                          scheduler: kind, tracePath: trace,
                          pinPCPUs: try OptionValue.pinnable(pcpuCount, pin: pinPCPUs))
        request.disks = diskConfigurations
        request.networks = networkConfigurations
        guard let consoleDevice = ConsoleDevice(rawValue: console) else {
            throw ValidationError("--console \(ConsoleDevice.problem(withName: console) ?? console)")
        }
        request.console = consoleDevice
        return request
    }

    func validate() throws {
        _ = try request()
    }

    func run() throws {
        throw ExitCode(Launcher.run(try request()))
    }
}
