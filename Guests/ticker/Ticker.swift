// ticker: the local APIC timer in periodic mode. Checks that `ticks` interrupts arrive at `hz`
// and that their mean period, measured with the TSC between the first and the last tick, is
// within ±20% of the programmed one (generous: software engines and exit-heavy hosts jitter).
//
// Command line: hz=<ticks per second> (default 100), ticks=<count> (default 50); both >= 1.
// Output:
//   ticker: hz=<hz> ticks=<n> vector=0x40
//   ticker: tick <k>                          (five or so progress lines)
//   ticker: period_ns programmed=<ns> measured=<ns>
//   ticker: PASS | ticker: FAIL (...)
// `programmed` is the period the APIC was given (count × divider at the timer's input clock),
// `measured` the mean TSC interval between consecutive ticks (from arming to the only tick
// when ticks=1). Exit 0 on PASS, 1 on FAIL. No watchdog: if the timer never fires the guest
// halts for good (the host's timeout catches it).

let tickVector: UInt32 = 0x40

/// Written by the handler only; read with gk_load64.
nonisolated(unsafe) var tickCount: UInt64 = 0
nonisolated(unsafe) var firstTickTSC: UInt64 = 0
nonisolated(unsafe) var lastTickTSC: UInt64 = 0

func guestMain() {
    let hz = max(GuestKit.multiboot?.unsignedArgument("hz") ?? 100, 1)
    let ticks = max(GuestKit.multiboot?.unsignedArgument("ticks") ?? 50, 1)
    Platform.setUp()
    put("ticker: hz=")
    put(hz)
    put(" ticks=")
    put(ticks)
    put(" vector=")
    putHex(tickVector, digits: 2)
    putLine()

    Interrupts.register(vector: tickVector) { _ in
        let t = gk_rdtsc()
        if tickCount == 0 { firstTickTSC = t }
        lastTickTSC = t
        gk_store64(&tickCount, tickCount &+ 1)
    }

    let periodNs = 1_000_000_000 / hz
    let inputTicks = Timing.apicTicks(nanoseconds: periodNs)
    Interrupts.disable()
    let armed = gk_rdtsc()
    let programmedTicks = APIC.startPeriodic(inputTicks: inputTicks, vector: tickVector)
    let programmedNs = Timing.mulDiv(programmedTicks, 1_000_000, Timing.apicKHz)

    let reportEvery = max(ticks / 5, 1)
    var nextReport = reportEvery
    while true {
        let n = gk_load64(&tickCount)
        if n >= ticks { break }
        if n >= nextReport {
            put("ticker: tick ")
            put(n)
            putLine()
            nextReport = (n / reportEvery + 1) * reportEvery
        }
        Interrupts.waitForInterrupt()
    }
    APIC.stopTimer()
    Interrupts.enable()

    let n = gk_load64(&tickCount)
    let first = gk_load64(&firstTickTSC)
    let last = gk_load64(&lastTickTSC)
    let measuredNs: UInt64
    if n >= 2 {
        measuredNs = Timing.nanoseconds(tscTicks: last &- first) / (n - 1)
    } else {
        measuredNs = Timing.nanoseconds(tscTicks: last &- armed)
    }
    put("ticker: tick ")
    put(n)
    putLine()
    put("ticker: period_ns programmed=")
    put(programmedNs)
    put(" measured=")
    put(measuredNs)
    putLine()

    let low = programmedNs - programmedNs / 5
    let high = programmedNs + programmedNs / 5
    if n >= ticks && measuredNs >= low && measuredNs <= high {
        putLine("ticker: PASS")
        GuestKit.exit(0)
    }
    put("ticker: FAIL (mean period outside ")
    put(low)
    put("-")
    put(high)
    putLine(" ns)")
    GuestKit.exit(1)
}
