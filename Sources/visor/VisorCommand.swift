// `visor`: the command line, in the manner of Xen's `xl`. Thin: parsing here, work in `Visor`.

import ArgumentParser
import Visor

@main
struct VisorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "visor",
        abstract: "A hypervisor in Swift, after the design of Xen.",
        discussion: """
            Visor runs x86-64 guest kernels on a choice of CPU-virtualization engines.
            Engines: kvm (hardware-assisted, through /dev/kvm), interp (emulation: a software x86-64 CPU) and bt \
            (binary translation: guest code rewritten into host code, the rest on interp's software CPU).
            Start with `visor run`, which boots the built-in demo guest.
            `visor serve` runs a daemon that keeps domains; `create`, `list`, `pause`, `unpause`, \
            `shutdown`, `reboot`, `destroy`, `console`, `vcpu-list`, `vcpu-pin`, `sched-credit`, `sched-credit2`, `sched-rtds`, \
            `info`, `top` and `dmesg` drive it, \
            as Xen's `xl` does.
            """,
        subcommands: [RunCommand.self, GuestsCommand.self, BenchCommand.self, ServeCommand.self,
                      CreateCommand.self, ListCommand.self, PauseCommand.self, UnpauseCommand.self,
                      ShutdownCommand.self, RebootCommand.self, DestroyCommand.self, ConsoleCommand.self, VCPUListCommand.self, VCPUPinCommand.self,
                      SchedCreditCommand.self, SchedCredit2Command.self, SchedRTDSCommand.self,
                      InfoCommand.self, TopCommand.self, DmesgCommand.self])
}
