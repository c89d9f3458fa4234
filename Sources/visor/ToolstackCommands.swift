// The xl-style clients of `visor serve`: create, list, pause, unpause, destroy, console, info,
// dmesg. Each parses its arguments and calls VisorAPI's `ToolstackClient`; with no daemon
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
        discussion: "The keys are those of `visor run`'s configuration files. With -c, attach to its console (Ctrl-] detaches).")

    @Argument(help: "The domain configuration file (xl.cfg syntax).")
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
        discussion: "State letters: r running on a pCPU, b blocked or waiting for one, p paused, d dying. Time(s) is the CPU time the scheduler charged. A NAME limits the list to that domain.")

    @Argument(help: "Domains to show (default: all).")
    var names: [String] = []

    @Flag(help: "Print the domains as JSON, as the API returns them.")
    var json = false

    @OptionGroup var daemon: DaemonSocket

    func run() throws {
        try clientCommand { () throws(CommandFailure) in
            let client = daemon.client
            var domains: [DomainInfo] = []
            if names.isEmpty {
                domains = try client.list()
            } else {
                for name in names { domains.append(try client.domain(name)) }
            }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                return String(decoding: (try? encoder.encode(domains)) ?? Data("[]".utf8), as: UTF8.self) + "\n"
            }
            return ToolstackFormat.list(domains)
        }
    }
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
        discussion: "The domain keeps running after a detach. Several consoles may be attached to one domain; each sees all output.")
    @Argument(help: "The domain's name or ID.") var name: String
    @OptionGroup var daemon: DaemonSocket
    func run() throws {
        try clientCommand { () throws(CommandFailure) in
            if let end = try daemon.client.console(name) { Launcher.printError(end) }
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
