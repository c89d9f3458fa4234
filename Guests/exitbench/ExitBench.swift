// exitbench: the exit round-trip benchmark.
//
// Command line: `n=<count>` (default 100000). Protocol (also in Guests/README.md):
//   port 0x511, 32-bit out: phase markers 1 = CPL0 loop starts, 2 = CPL0 loop ended,
//                           3 = CPL3 loop starts, 4 = CPL3 loop ended
//   port 0x510,  8-bit out: the timed loop, n writes per phase (value: low byte ignored)
// Phases 1-2 run at CPL0; then the guest drops to CPL3 (IOPL 3) for phases 3-4 and
// powers off from there (0x604 <- 0x2000, status 0).

/// The benchmark's two ports; the only place in the guests that names them.
enum ExitBenchPorts {
    /// 8-bit writes, n per phase: each one is one exit.
    static let tick: UInt16 = 0x510
    /// 32-bit writes of the phase markers 1...4.
    static let marker: UInt16 = 0x511
}

let defaultCount: UInt64 = 100_000
nonisolated(unsafe) var count: UInt64 = defaultCount

func guestMain() {
    count = GuestKit.multiboot?.unsignedArgument("n") ?? defaultCount
    put("exitbench: n=")
    put(count)
    putLine()
    Console.flush()

    Port.outl(ExitBenchPorts.marker, 1)
    gk_outb_repeat(ExitBenchPorts.tick, 0, count)
    Port.outl(ExitBenchPorts.marker, 2)

    GuestKit.enterUserMode(userPhase)
}

/// Runs at CPL3 with IOPL 3.
func userPhase() {
    Port.outl(ExitBenchPorts.marker, 3)
    gk_outb_repeat(ExitBenchPorts.tick, 0, count)
    Port.outl(ExitBenchPorts.marker, 4)
    put("exitbench: done at CPL")
    put(GuestKit.cpl)
    putLine()
    GuestKit.exit(0)
}
