// smp: brings up every application processor (INIT, SIPI, SIPI; see GuestKit/SMP.swift), has
// each one report in, then plays IPI ping-pong between the BSP and each AP in turn: the BSP
// sends a fixed IPI (vector 0x40) to the AP, whose handler answers with a fixed IPI (vector
// 0x41) to the BSP, whose handler counts the pong; the BSP halts (`sti; hlt`) in between.
// Round trips are timed with the TSC on the BSP.
//
// Command line: cpus=<N> (expected CPUs, BSP included; when given, start-up stops waiting as
// soon as N are up and the check requires exactly N), pings=<per AP> (default 100).
// Output:
//   cpu 0 (apic id <X>) up                    (the BSP, then one line per AP as it arrives)
//   cpu <N> (apic id <X>) up
//   smp: cpus=<online> expected=<N|any>
//   smp: cpu <N> apic <X> pings=<sent> pongs=<received> avg_ns=<ns>
//   smp: ipi_roundtrip_ns avg=<ns> min=<ns> max=<ns> count=<pongs>
//   smp: PASS | smp: FAIL (...)
// PASS when at least one AP came up (and exactly `cpus` CPUs when given) and every ping got
// its pong within 1 s per AP (a timer watchdog; a lost IPI does not hang the guest). Exit 0
// on PASS, 1 on FAIL. With a single CPU there is nothing to check: FAIL, unless cpus=1 was
// given (then PASS with no round trips).

let pingVector: UInt32 = 0x40
let pongVector: UInt32 = 0x41

nonisolated(unsafe) var bspAPICID: UInt64 = 0
nonisolated(unsafe) var pongCount: UInt64 = 0
nonisolated(unsafe) var readyCount: UInt64 = 0

/// Runs on each AP once it is in long mode with its APIC enabled, interrupts off.
let apMain: APEntry = { index in
    Console.lock()
    put("cpu ")
    put(index)
    put(" (apic id ")
    put(APIC.id)
    putLine(") up")
    Console.unlock()
    _ = gk_fetch_add64(&readyCount, 1)
    // Returns to GuestKit's idle loop (`sti; hlt`), where pings arrive.
}

func guestMain() {
    let expected = GuestKit.multiboot?.unsignedArgument("cpus").map { Int($0) }
    let pings = GuestKit.multiboot?.unsignedArgument("pings") ?? 100
    Platform.setUp()
    gk_store64(&bspAPICID, UInt64(APIC.id))

    Interrupts.register(vector: pingVector) { _ in
        APIC.sendIPI(vector: pongVector, to: UInt32(truncatingIfNeeded: gk_load64(&bspAPICID)))
    }
    Interrupts.register(vector: pongVector) { _ in
        gk_store64(&pongCount, pongCount &+ 1)
    }

    Console.withLock {
        put("cpu 0 (apic id ")
        put(gk_load64(&bspAPICID))
        putLine(") up")
    }
    let online = SMP.start(expected: expected, entry: apMain)
    // Every AP that came up finishes its line before the ping-pong starts.
    _ = Timer.wait(nanoseconds: 1_000_000_000) { gk_load64(&readyCount) >= UInt64(online - 1) }

    Console.withLock {
        put("smp: cpus=")
        put(online)
        put(" expected=")
        if let expected { put(expected) } else { put("any") }
        putLine()
    }

    var failures = 0
    var total: UInt64 = 0, pongs: UInt64 = 0
    var minRT = UInt64.max, maxRT: UInt64 = 0
    for index in UInt32(1)..<UInt32(SMP.maxCPUs) where SMP.isOnline(index) {
        let apic = SMP.apicID(ofCPU: index)
        var sum: UInt64 = 0, got: UInt64 = 0, sent: UInt64 = 0
        Interrupts.disable()
        let deadline = Timer.arm(afterNanoseconds: 1_000_000_000)      // watchdog for this AP
        for _ in 0..<pings {
            let before = gk_load64(&pongCount)
            let t0 = gk_rdtsc()
            APIC.sendIPI(vector: pingVector, to: apic)
            sent += 1
            var timedOut = false
            while gk_load64(&pongCount) == before {
                if Timer.hasFired && gk_rdtsc() >= deadline {
                    timedOut = true
                    break
                }
                Interrupts.waitForInterrupt()
            }
            if timedOut { break }
            let rt = gk_rdtsc() &- t0
            sum &+= rt
            got += 1
            minRT = min(minRT, rt)
            maxRT = max(maxRT, rt)
        }
        Timer.cancel()
        Interrupts.enable()
        total &+= sum
        pongs += got
        if got != pings { failures += 1 }
        Console.withLock {
            put("smp: cpu ")
            put(index)
            put(" apic ")
            put(apic)
            put(" pings=")
            put(sent)
            put(" pongs=")
            put(got)
            put(" avg_ns=")
            put(got == 0 ? 0 : Timing.nanoseconds(tscTicks: sum / got))
            putLine()
        }
    }

    Console.lock()
    put("smp: ipi_roundtrip_ns avg=")
    put(pongs == 0 ? 0 : Timing.nanoseconds(tscTicks: total / pongs))
    put(" min=")
    put(pongs == 0 ? 0 : Timing.nanoseconds(tscTicks: minRT))
    put(" max=")
    put(Timing.nanoseconds(tscTicks: maxRT))
    put(" count=")
    put(pongs)
    putLine()
    let countOK = expected.map { online == $0 } ?? (online >= 2)
    if countOK && failures == 0 {
        putLine("smp: PASS")
        Console.unlock()
        GuestKit.exit(0)
    }
    put("smp: FAIL (")
    if !countOK {
        put(online)
        put(" CPUs up, expected ")
        if let expected { put(expected) } else { put("at least 2") }
    } else {
        put(failures)
        put(" APs missed pongs")
    }
    putLine(")")
    Console.unlock()
    GuestKit.exit(1)
}
