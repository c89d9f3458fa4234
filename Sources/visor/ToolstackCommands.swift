// The xl-style clients of `visor serve`: create, list, pause, unpause, shutdown, reboot, destroy, console, info,
// dmesg, vcpu-list, vcpu-pin, sched-credit, sched-credit2, sched-rtds. Each parses its arguments and calls VisorAPI's `ToolstackClient`; with no daemon
// running they say so and how to start one (status 69).

import ArgumentParser
import Foundation
import VisorAPI

/// `--socket`, which every client command takes.
struct DaemonSocket: ParsableArguments {
    @Option(parsing: .unconditional,
            help: "The daemon's socket (default: $XDG_RUNTIME_DIR/visor.sock, else /run/visor/visor.sock).")
    var socket: String?

    var client: ToolstackClient { ToolstackClient(socketPath: socket) }
}

/// Runs a client command's body: prints what it returns, or its failure and status.
func clientCommand(_ body: () throws(CommandFailure) -> String?) throws {
    do {
        if let text = try body() { FileHandle.standardOutput.write(Data(text.utf8)) }
    } catch {
        Launcher.printError(error.message)
        throw ExitCode(error.status)
    }
}

struct CreateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Create a domain on the daemon from an xl.cfg file and start it.",
        discussion: "The keys are those of `visor run`'s configuration files. A file whose name ends in .json is a JSON object of the same keys ({\"name\": \"a\", \"kernel\": \"cpuhog\", \"memory\": 16}; `visor list -l` shows a domain's). With -c, attach to its console (Ctrl-] detaches).")

    @Argument(help: "The domain configuration file (xl.cfg syntax, or JSON when it ends in .json).")
    var file: String

    @Flag(name: .customShort("c"), help: "Attach to the domain's console once it is created.")
    var attachConsole = false

    @OptionGroup var daemon: DaemonSocket

    func run() throws {
        try clientCommand { () throws(CommandFailure) in
            func line(_ created: DomainInfo) -> String { "created domain '\(created.name)' (id \(created.id))\n" }
            guard attachConsole else { return line(try daemon.client.create(configurationFile: file)) }
            let end = try daemon.client.createAndAttach(configurationFile: file) { created in
                FileHandle.standardError.write(Data(line(created).utf8))
            }
            if let end { Launcher.printError(end) }
            return nil
        }
    }
}

struct ListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the daemon's domains (xl's columns: Name ID Mem VCPUs State Time(s)).",
        discussion: "State letters: r running on a pCPU, b blocked or waiting for one, p paused, s shut down, c crashed, d dying. Time(s) is the CPU time the scheduler charged. A NAME limits the list to that domain. With -l, each domain's configuration as created (its xl.cfg keys, which `visor create` takes back as a .json file), state, vCPUs (state, pCPU, CPU time, affinity, scheduling parameters) and, once it has ended, how (a crash's reason and register dump), as JSON.")

    @Argument(help: "Domains to show (default: all).")
    var names: [String] = []

    @Flag(name: .shortAndLong, help: "The long listing: configuration, state and vCPUs of each domain, as JSON.")
    var long = false

    @Flag(help: "Print the domains as JSON, as the API returns them.")
    var json = false

    @OptionGroup var daemon: DaemonSocket

    func run() throws {
        try clientCommand { () throws(CommandFailure) in
            let client = daemon.client
            if long { return prettyJSON(try client.details(names)) }
            var domains: [DomainInfo] = []
            if names.isEmpty {
                domains = try client.list()
            } else {
                for name in names { domains.append(try client.domain(name)) }
            }
            if json { return prettyJSON(domains) }
            return ToolstackFormat.list(domains)
        }
    }
}

/// JSON as `visor list --json` and `-l` print it: indented, keys sorted.
func prettyJSON<T: Encodable>(_ value: T) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    return String(decoding: (try? encoder.encode(value)) ?? Data("[]".utf8), as: UTF8.self) + "\n"
}

struct PauseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pause", abstract: "Pause a domain: its vCPUs leave their pCPUs until unpaused.")
    @Argument(help: "The domain's name or ID.") var name: String
    @OptionGroup var daemon: DaemonSocket
    func run() throws { try clientCommand { () throws(CommandFailure) in _ = try daemon.client.pause(name); return nil } }
}

struct UnpauseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "unpause", abstract: "Let a paused domain run again.")
    @Argument(help: "The domain's name or ID.") var name: String
    @OptionGroup var daemon: DaemonSocket
    func run() throws { try clientCommand { () throws(CommandFailure) in _ = try daemon.client.unpause(name); return nil } }
}

/// `visor shutdown` and `visor reboot`: what both take.
struct ShutdownOptionsGroup: ParsableArguments {
    @Argument(help: "The domain's name or ID.") var name: String

    @Flag(name: .customShort("w"), help: "Wait until the domain has done it (ended, or been booted again).")
    var wait = false

    @Option(name: [.customShort("t"), .long], parsing: .unconditional,
            help: "Seconds the guest has; then the daemon makes it happen (shutdown: destroy; reboot: reset).")
    var timeout: String?

    func seconds() throws -> Int? {
        try timeout.map {
            try OptionValue.wholeNumber($0, option: "--timeout", in: 1...Toolstack.maximumShutdownTimeoutSeconds,
                                        allowed: "a time limit is 1 to \(Toolstack.maximumShutdownTimeoutSeconds) seconds")
        }
    }

    func run(reboot: Bool, daemon: DaemonSocket) throws {
        let limit = try seconds()
        try clientCommand { () throws(CommandFailure) in
            let client = daemon.client
            let answer = try client.requestShutdown(name, reboot: reboot, timeoutSeconds: limit)
            if wait { try client.waitForEnd(of: answer.domain.name, id: answer.domain.id) }
            return nil
        }
    }
}

struct ShutdownCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shutdown",
        abstract: "Ask a domain's guest to power off.",
        discussion: "Through the PV shutdown request when the guest listens for it, else the ACPI power button; a guest that listens for neither is refused (use destroy). What follows is its on_poweroff (destroy by default). With -t, a guest still running after that many seconds is destroyed.")
    @OptionGroup var options: ShutdownOptionsGroup
    @OptionGroup var daemon: DaemonSocket
    func validate() throws { _ = try options.seconds() }
    func run() throws { try options.run(reboot: false, daemon: daemon) }
}

struct RebootCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reboot",
        abstract: "Ask a domain's guest to reboot.",
        discussion: "Through the PV shutdown request (ACPI has no reboot button, so a guest without PV is refused). What follows is its on_reboot (restart by default: booted again under a new ID). With -t, a guest still running after that many seconds is reset: stopped and booted again.")
    @OptionGroup var options: ShutdownOptionsGroup
    @OptionGroup var daemon: DaemonSocket
    func validate() throws { _ = try options.seconds() }
    func run() throws { try options.run(reboot: true, daemon: daemon) }
}

struct DestroyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "destroy", abstract: "Stop a domain at once and free it (returns when it is gone).")
    @Argument(help: "The domain's name or ID.") var name: String
    @OptionGroup var daemon: DaemonSocket
    func run() throws { try clientCommand { () throws(CommandFailure) in _ = try daemon.client.destroy(name); return nil } }
}

struct ConsoleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "console",
        abstract: "Attach to a domain's console: its recent and new output here, keys to the guest; Ctrl-] detaches.",
        discussion: "The domain keeps running after a detach. Several consoles may be attached to one domain; each sees all output, and one of them at a time is the writer whose keys reach the guest: a second `visor console` is refused while one is attached, unless it only watches (--read-only).")
    @Argument(help: "The domain's name or ID.") var name: String
    @Flag(name: [.customShort("r"), .long], help: "Only watch: do not become the console's writer (keys other than Ctrl-] are ignored).")
    var readOnly = false
    @OptionGroup var daemon: DaemonSocket
    func run() throws {
        try clientCommand { () throws(CommandFailure) in
            if let end = try daemon.client.console(name, readOnly: readOnly) { Launcher.printError(end) }
            return nil
        }
    }
}

struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "info", abstract: "Show the host and the daemon's pool.")
    @OptionGroup var daemon: DaemonSocket
    func run() throws {
        try clientCommand { () throws(CommandFailure) in
            let client = daemon.client
            return ToolstackFormat.info(try client.hostInfo(), socket: client.client.socketPath)
        }
    }
}

struct DmesgCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "dmesg", abstract: "Show the daemon's log.")
    @OptionGroup var daemon: DaemonSocket
    func run() throws {
        try clientCommand { () throws(CommandFailure) in
            try daemon.client.dmesg().map { $0 + "\n" }.joined()
        }
    }
}

/// `visor sched-credit` and `sched-credit2`: a domain's weight and cap, shown or set at run time.
struct SharesOptions: ParsableArguments {
    @Option(name: .customShort("d"), parsing: .unconditional, help: "The domain (name or ID); without it, every domain is shown.")
    var domain: String?

    @Option(name: .customShort("w"), parsing: .unconditional, help: "Set the weight, 1-65535 (256 is the default share).")
    var weight: String?

    @Option(name: .customShort("c"), parsing: .unconditional,
            help: "Set the cap: the most CPU the domain may use, in % of one pCPU (0: none; at most 100 per vCPU).")
    var cap: String?

    @OptionGroup var daemon: DaemonSocket

    func values() throws -> (weight: Int?, cap: Int?) {
        let w = try weight.map {
            try OptionValue.wholeNumber($0, option: "-w", in: 1...65535, allowed: "a weight is 1 to 65535")
        }
        let c = try cap.map {
            try OptionValue.wholeNumber($0, option: "-c", in: 0...(100 * Domain.maximumVCPUs),
                                        allowed: "a cap is 0 (none) to 100 per vCPU")
        }
        return (w, c)
    }

    func run(scheduler: String) throws {
        let (w, c) = try values()
        try clientCommand { () throws(CommandFailure) in
            try daemon.client.shares(scheduler: scheduler, domain: domain, weight: w, cap: c)
        }
    }
}

struct SchedCreditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sched-credit",
        abstract: "Show or set domains' credit weight and cap while they run (the daemon runs --sched credit).")
    @OptionGroup var options: SharesOptions
    func validate() throws { _ = try options.values() }
    func run() throws { try options.run(scheduler: "credit") }
}

struct SchedCredit2Command: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sched-credit2",
        abstract: "Show or set domains' credit2 weight and cap while they run (the daemon runs --sched credit2).")
    @OptionGroup var options: SharesOptions
    func validate() throws { _ = try options.values() }
    func run() throws { try options.run(scheduler: "credit2") }
}

/// `visor sched-rtds [-d DOMAIN [-v VCPU|all]... [-p PERIOD -b BUDGET [-e EXTRATIME]]...]`, as xl's.
struct SchedRTDSCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sched-rtds",
        abstract: "Show or set RTDS periods, budgets and extratime per domain or per vCPU while they run (the daemon runs --sched rtds).",
        discussion: """
            Without -d: every vCPU of every domain. With -d alone: the domain's row, which shows the \
            defaults a domain-wide change starts from (as Xen reports it; -v all shows what each vCPU \
            uses). With -v (a vCPU number or all, repeatable): those vCPUs. With -p, -b or -e: the \
            change is made first, on the listed vCPUs or, without -v, on every vCPU of the domain \
            (fields not given come from the defaults for a domain-wide change, and from each vCPU's \
            current values with -v); then the changed vCPUs are shown. Give -p, -b and -e once for \
            every listed vCPU, or once per -v, in order. Periods and budgets are in microseconds: \
            the budget is at most the period, both at least 10. Extratime 1 lets a vCPU run past its \
            budget when a pCPU is idle.
            """)

    @Option(name: .customShort("d"), parsing: .unconditional, help: ArgumentHelp("The domain (name or ID).", valueName: "domain"))
    var domain: String?

    @Option(name: .customShort("v"), parsing: .unconditionalSingleValue, help: ArgumentHelp("A vCPU number, or all (repeatable).", valueName: "vcpu"))
    var vcpus: [String] = []

    @Option(name: .customShort("p"), parsing: .unconditionalSingleValue, help: ArgumentHelp("The period in µs (repeatable, one per -v).", valueName: "period"))
    var periods: [String] = []

    @Option(name: .customShort("b"), parsing: .unconditionalSingleValue, help: ArgumentHelp("The budget in µs (repeatable, one per -v).", valueName: "budget"))
    var budgets: [String] = []

    @Option(name: .customShort("e"), parsing: .unconditionalSingleValue, help: ArgumentHelp("Extratime: 1 or 0 (repeatable, one per -v).", valueName: "extratime"))
    var extratimes: [String] = []

    @OptionGroup var daemon: DaemonSocket

    /// The changes to make, one per listed vCPU or a single one for all; none when only showing.
    func changes() throws -> [SchedParameters] {
        for v in vcpus where v != "all" {
            _ = try OptionValue.wholeNumber(v, option: "-v", in: 0...(Domain.maximumVCPUs - 1),
                                            allowed: "a vCPU is 0 to \(Domain.maximumVCPUs - 1), or all")
        }
        if vcpus.contains("all") && vcpus.count > 1 { throw ValidationError("-v all names every vCPU: give it alone") }
        let microseconds = "a whole number of µs, at most \(UInt32.max)"
        let p = try periods.map { try OptionValue.wholeNumber($0, option: "-p", in: 0...Int(UInt32.max), allowed: microseconds) }
        let b = try budgets.map { try OptionValue.wholeNumber($0, option: "-b", in: 0...Int(UInt32.max), allowed: microseconds) }
        let e = try extratimes.map { try OptionValue.wholeNumber($0, option: "-e", in: 0...1, allowed: "extratime is 1 or 0") == 1 }
        let count = max(p.count, b.count, e.count)
        guard count > 0 else { return [] }
        guard domain != nil else { throw ValidationError("-p, -b and -e need a domain: -d NAME") }
        let listed = max(vcpus.count, 1)
        for (option, given) in [("-p", p.count), ("-b", b.count), ("-e", e.count)] where given != 0 {
            guard given == 1 || given == listed, given == count else {
                throw ValidationError("\(option) is given \(given) time\(given == 1 ? "" : "s") for \(listed) vCPU\(listed == 1 ? "" : "s") (-v) "
                                      + "and the other values \(count) times: give each once, or once per -v")
            }
        }
        return (0..<count).map { i in
            SchedParameters(scheduler: "rtds", periodMicroseconds: p.isEmpty ? nil : p[i],
                            budgetMicroseconds: b.isEmpty ? nil : b[i], extratime: e.isEmpty ? nil : e[i])
        }
    }

    func validate() throws {
        _ = try changes()
        if domain == nil && !vcpus.isEmpty { throw ValidationError("-v needs a domain: -d NAME") }
    }

    func run() throws {
        let changes = try changes()
        try clientCommand { () throws(CommandFailure) in
            try daemon.client.rtds(domain: domain, vcpus: vcpus, changes: changes)
        }
    }
}

struct VCPUListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vcpu-list",
        abstract: "List vCPUs: the pCPU each holds, its state, CPU time and hard / soft affinity (xl's columns).")
    @Argument(help: "Domains to show (default: all).") var names: [String] = []
    @OptionGroup var daemon: DaemonSocket
    func run() throws {
        try clientCommand { () throws(CommandFailure) in
            var all: [VCPUStatus] = []
            if names.isEmpty { all = try daemon.client.vcpus(nil) }
            for name in names { all += try daemon.client.vcpus(name) }
            return ToolstackFormat.vcpus(all)
        }
    }
}

struct VCPUPinCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vcpu-pin",
        abstract: "Set a vCPU's hard (and soft) affinity to pCPUs of the daemon's pool while it runs.",
        discussion: "VCPU is a number or all. Cpu lists as in xl.cfg's cpus=: all, 2, 0-3, 0-3,^1; - leaves one unchanged. A vCPU on a pCPU outside its new hard affinity moves at once.")
    @Argument(help: "The domain's name or ID.") var name: String
    @Argument(help: "The vCPU number, or all.") var vcpu: String
    @Argument(help: "The hard affinity: pCPUs it may run on.") var hard: String
    @Argument(help: "The soft affinity: pCPUs it prefers.") var soft: String?
    @OptionGroup var daemon: DaemonSocket
    func run() throws {
        try clientCommand { () throws(CommandFailure) in
            _ = try daemon.client.pin(name, vcpu: vcpu, hard: hard, soft: soft)
            return nil
        }
    }
}
