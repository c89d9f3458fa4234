// `visor serve`: the toolstack daemon, in the foreground. The work is in VisorAPI's `Daemon`.

import ArgumentParser
import VisorAPI

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the toolstack daemon: a CPU pool and its domains, driven over an HTTP+JSON API on a Unix socket.",
        discussion: """
            The daemon runs in the foreground and logs to standard error (`visor dmesg` shows the \
            same log). It listens on --socket, by default $XDG_RUNTIME_DIR/visor.sock or else \
            /run/visor/visor.sock, created with mode 0600; a stale socket left by a daemon that died \
            is replaced, a live one is refused. SIGTERM or SIGINT destroys the domains and stops it \
            (status 0). The API is described in docs/api.yaml; `visor create`, `list`, `pause`, \
            `unpause`, `destroy`, `console`, `vcpu-list`, `vcpu-pin`, `sched-credit`, \
            `sched-credit2`, `sched-rtds`, `info` and `dmesg` are its clients. A domain that \
            powers off or crashes is destroyed (xl's default on_poweroff and on_crash); its end is \
            in the log. Status 69 when the socket cannot be claimed, 64 for a bad option.
            """)

    @Option(parsing: .unconditional, help: "The Unix socket to listen on.")
    var socket: String?

    @Option(parsing: .unconditional,
            help: "Physical CPUs the domains share, 1-\(RunCommand.maximumPCPUs); the default is the host's CPU count.")
    var pcpus: String = "\(HostCPU.count)"

    @Option(parsing: .unconditional, help: "The VM scheduler: credit, credit2, rtds or null.")
    var sched: String = "credit2"

    @Option(parsing: .unconditional, help: "The engine for domains whose configuration names none: kvm, interp or bt.")
    var engine: String = "kvm"

    @Flag(name: .customLong("pin-pcpus"), help: "Bind pCPU i to the i-th host CPU this process may use (sched_setaffinity), so cpus= and vcpu-pin name real processors; --pcpus at most that many.")
    var pinPCPUs = false

    func request() throws -> ServeRequest {
        let pcpuCount = try OptionValue.wholeNumber(pcpus, option: "--pcpus", in: 1...RunCommand.maximumPCPUs,
                                                    allowed: "the pool has 1 to \(RunCommand.maximumPCPUs) pCPUs")
        guard let kind = try? SchedulerKind(name: sched), kind != .arinc653 else {
            throw ValidationError("--sched '\(sched)' is not a scheduler: choose credit, credit2, rtds or null")
        }
        if let socket, socket.isEmpty { throw ValidationError("--socket '': give the path of the socket to create") }
        return ServeRequest(socketPath: SocketLocation.resolve(socket), pcpuCount: pcpuCount, scheduler: kind,
                            defaultEngine: try OptionValue.engine(engine),
                            pinPCPUs: try OptionValue.pinnable(pcpuCount, pin: pinPCPUs))
    }

    func validate() throws { _ = try request() }

    func run() throws {
        throw ExitCode(Daemon.run(try request()))
    }
}
