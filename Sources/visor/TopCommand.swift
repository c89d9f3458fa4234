// `visor top`: the daemon's domains as a live table, refreshed, like Xen's `xentop`.

import ArgumentParser
import Foundation
import VisorAPI

struct TopCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "top",
        abstract: "Show the daemon's domains as a table refreshed every few seconds (like xentop).",
        discussion: """
            Columns: NAME, STATE (xl's letters r b p s c d), CPU(sec) charged by the scheduler, CPU(%) \
            of one host CPU since the last refresh (over 100 for several vCPUs), MEM(k), VCPUS, ENGINE, \
            and CONSOLE(B), the bytes the guest wrote to its console. On a terminal the screen is redrawn \
            until Ctrl-C; with --batch (or when the output is not a terminal) frames follow each other.
            """)

    @Option(name: [.customShort("d"), .long], help: "Seconds between refreshes (0.1 to 3600).")
    var delay: Double = 3

    @Flag(name: [.customShort("b"), .long], help: "Batch mode: print frames one after the other, no screen control.")
    var batch = false

    @Option(name: [.customShort("i"), .long], help: "Stop after this many frames (default: until Ctrl-C).")
    var iterations: Int?

    @OptionGroup var daemon: DaemonSocket

    func validate() throws {
        guard delay.isFinite, delay >= 0.1, delay <= 3600 else {
            throw ValidationError("--delay must be between 0.1 and 3600 seconds, not \(delay)")
        }
        if let iterations, iterations < 1 { throw ValidationError("--iterations must be 1 or more, not \(iterations)") }
    }

    func run() throws {
        let redraw = !batch && isatty(STDOUT_FILENO) == 1
        let clock = DateFormatter()
        clock.dateFormat = "HH:mm:ss"
        var previous: TopSample?
        var frame = 0
        try clientCommand { () throws(CommandFailure) in
            let client = daemon.client
            while iterations.map({ frame < $0 }) ?? true {
                if frame > 0 { usleep(UInt32(delay * 1_000_000)) }
                let host = try client.hostInfo()
                let sample = TopSample(domains: try client.list(), nanoseconds: DispatchTime.now().uptimeNanoseconds)
                let text = ToolstackFormat.top(previous: previous, current: sample, host: host,
                                               clock: clock.string(from: Date()))
                FileHandle.standardOutput.write(Data(((redraw ? "\u{1b}[H\u{1b}[2J" : frame > 0 ? "\n" : "") + text).utf8))
                previous = sample
                frame += 1
            }
            return nil
        }
    }
}
