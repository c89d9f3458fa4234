// sleeper: `count` sleeps of `ms` milliseconds each on the local APIC timer, the CPU halted
// (`sti; hlt`) until the timer interrupt. Checks that no timer interrupt came before its
// deadline and that the worst wake-up latency stays under 50 ms.
//
// Command line: ms=<milliseconds> (default 10), count=<sleeps> (default 20),
// warmup=<sleeps> (default 0: sleeps made first and left out of the figures, e.g. while a
// scheduler still charges the guest for its boot), mode=oneshot|deadline (default: deadline when CPUID.1:ECX[24] reports TSC-deadline, else
// oneshot; deadline asked for but missing falls back to oneshot with a note).
// Output:
//   sleeper: mode=<oneshot|deadline> ms=<ms> count=<n>
//   sleeper: wake latency min=<us>us avg=<us>us max=<us>us
//   sleeper: latency_ns min=<ns> avg=<ns> max=<ns>
//   sleeper: timer-latency_ns min=<ns> avg=<ns> max=<ns>
//   sleeper: elapsed_ns=<ns> expected_ns=<ns> early=<fires>
//   sleeper: PASS | sleeper: FAIL (...)
// latency = TSC once the CPU runs again after the wake-up minus the deadline; timer-latency =
// TSC at the timer handler's entry minus the deadline (signed: negative would be early).
// An early fire is a timer interrupt before its deadline by more than the tolerance
// (2 us + 0.1% of the sleep; clock rounding between the TSC and the timer); `Timer.sleep`
// re-arms after one, so the sleep itself never ends early. Exit 0 on PASS, 1 on FAIL.

func guestMain() {
    let ms = max(GuestKit.multiboot?.unsignedArgument("ms") ?? 10, 1)
    let count = max(GuestKit.multiboot?.unsignedArgument("count") ?? 20, 1)
    let warmup = GuestKit.multiboot?.unsignedArgument("warmup") ?? 0
    let requested = GuestKit.multiboot?.argument("mode")
    Platform.setUp()
    let hasDeadline = APIC.hasTSCDeadline
    if let requested, requested.utf8.elementsEqual("oneshot".utf8) {
        Timer.useTSCDeadline = false
    } else if let requested, requested.utf8.elementsEqual("deadline".utf8) {
        if !hasDeadline { putLine("sleeper: TSC-deadline mode not available (CPUID.1:ECX[24] = 0), using oneshot") }
        Timer.useTSCDeadline = hasDeadline
    } else if let requested {
        put("sleeper: unknown mode ")
        put(requested)
        putLine(", using the default")
    }
    put("sleeper: mode=")
    put(Timer.useTSCDeadline ? "deadline" : "oneshot")
    put(" ms=")
    put(ms)
    put(" count=")
    put(count)
    putLine()

    let sleepNs = ms * 1_000_000
    let toleranceNs = 2_000 + sleepNs / 1000
    var minLatency = UInt64.max, maxLatency: UInt64 = 0, sumLatency: UInt64 = 0
    var minTimer = Int64.max, maxTimer = Int64.min, sumTimer: Int64 = 0
    var early: UInt64 = 0
    var earliestNs: Int64 = 0
    for _ in 0..<warmup { _ = Timer.sleep(nanoseconds: sleepNs) }
    let start = gk_rdtsc()
    for _ in 0..<count {
        let wake = Timer.sleep(nanoseconds: sleepNs)
        let latency = Timing.nanoseconds(tscTicks: wake.woke &- wake.deadline)
        minLatency = min(minLatency, latency)
        maxLatency = max(maxLatency, latency)
        sumLatency &+= latency
        let timer = Timing.nanoseconds(tscDelta: Int64(bitPattern: wake.fired &- wake.deadline))
        minTimer = min(minTimer, timer)
        maxTimer = max(maxTimer, timer)
        sumTimer &+= timer
        let firstFire = Timing.nanoseconds(tscDelta: Int64(bitPattern: wake.earliestFire &- wake.deadline))
        if firstFire < -Int64(toleranceNs) {
            early += 1
            earliestNs = min(earliestNs, firstFire)
        }
    }
    let elapsed = Timing.nanoseconds(tscTicks: gk_rdtsc() &- start)
    let avgLatency = sumLatency / count
    let avgTimer = sumTimer / Int64(count)

    put("sleeper: wake latency min=")
    put(minLatency / 1000)
    put("us avg=")
    put(avgLatency / 1000)
    put("us max=")
    put(maxLatency / 1000)
    putLine("us")
    put("sleeper: latency_ns min=")
    put(minLatency)
    put(" avg=")
    put(avgLatency)
    put(" max=")
    put(maxLatency)
    putLine()
    put("sleeper: timer-latency_ns min=")
    put(minTimer)
    put(" avg=")
    put(avgTimer)
    put(" max=")
    put(maxTimer)
    putLine()
    put("sleeper: elapsed_ns=")
    put(elapsed)
    put(" expected_ns=")
    put(sleepNs * count)
    put(" early=")
    put(early)
    putLine()

    if early == 0 && maxLatency < 50_000_000 {
        putLine("sleeper: PASS")
        GuestKit.exit(0)
    }
    put("sleeper: FAIL (")
    if early != 0 {
        put(early)
        put(" early timer interrupts, earliest ")
        put(earliestNs)
        put(" ns")
    } else {
        put("max latency ")
        put(maxLatency)
        put(" ns >= 50 ms")
    }
    putLine(")")
    GuestKit.exit(1)
}
