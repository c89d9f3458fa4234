// cpuhog: a CPU-bound guest for scheduling experiments. It drops to CPL3 (where KVM's PVM
// backend runs natively) and spins in a four-instruction register loop (spin.S) for `ms`
// milliseconds of TSC time, checking the TSC every `batch` iterations, with interrupts off
// and no exits besides the console. The only failure is a broken clock (no iterations).
//
// Command line: ms=<milliseconds> (default 500), batch=<iterations between TSC reads>
// (default 100000).
// Output:
//   cpuhog: ms=<ms> batch=<n>
//   cpuhog: iterations=<n> elapsed_ns=<ns> per_ms=<iterations per ms>
//   cpuhog: PASS | cpuhog: FAIL (no iterations)
// Exit (from CPL3 through the ports): 0 on PASS, 1 on FAIL.

nonisolated(unsafe) var hogMs: UInt64 = 500
nonisolated(unsafe) var hogBatch: UInt64 = 100_000

func guestMain() {
    hogMs = max(GuestKit.multiboot?.unsignedArgument("ms") ?? hogMs, 1)
    hogBatch = max(GuestKit.multiboot?.unsignedArgument("batch") ?? hogBatch, 1)
    APIC.enable()                   // the calibration path needs the APIC timer
    Timing.discover()
    put("cpuhog: ms=")
    put(hogMs)
    put(" batch=")
    put(hogBatch)
    putLine()
    GuestKit.enterUserMode(hogMain)
}

/// Runs at CPL3 with IF = 0.
func hogMain() {
    let start = gk_rdtsc()
    let end = start &+ Timing.tscTicks(nanoseconds: hogMs * 1_000_000)
    var iterations: UInt64 = 0
    var state: UInt64 = 0x9e37_79b9_7f4a_7c15
    var now = start
    while now < end {
        state = hog_spin(hogBatch, state)
        iterations &+= hogBatch
        now = gk_rdtsc()
    }
    let elapsed = Timing.nanoseconds(tscTicks: now &- start)
    put("cpuhog: iterations=")
    put(iterations)
    put(" elapsed_ns=")
    put(elapsed)
    put(" per_ms=")
    put(elapsed == 0 ? 0 : Timing.mulDiv(iterations, 1_000_000, elapsed))
    put(" state=")
    putHex(state, digits: 16)
    putLine()
    if iterations == 0 {
        putLine("cpuhog: FAIL (no iterations)")
        GuestKit.exit(1)
    }
    putLine("cpuhog: PASS")
    GuestKit.exit(0)
}
