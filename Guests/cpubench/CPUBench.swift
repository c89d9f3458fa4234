// cpubench: five timed loops for `visor bench cpu` — register ALU, an 8 MiB memory copy, a
// 16 MiB sieve, calls with branches, and a jump-table dispatch loop. Each loop is assembly
// (loops.S) so the instructions it retires are known exactly; the guest reports them with the
// TSC ticks it took, and the host turns that into MIPS. The loops run at CPL3, where KVM's PVM
// backend executes natively (CPL0 is emulated there).
//
// Command line (all optional): alu=<iterations> copy=<bytes> copies=<count> sieve=<bytes>
// calls=<iterations> dispatch=<iterations>. Output, one line per loop:
//   cpubench: <loop> instructions=<n> tsc=<ticks> result=<checksum>
// then `cpubench: done`. Memory: the sieve at 16 MiB, the copy buffers after it; the guest
// needs RAM up to 16 MiB + sieve + 2 * copy.

let sieveBase: UInt = 0x100_0000

struct Settings {
    var alu: UInt64 = 10_000_000
    var copyBytes: UInt64 = 8 << 20
    var copies: UInt64 = 4
    var sieveBytes: UInt64 = 16 << 20
    var calls: UInt64 = 10_000_000
    var dispatch: UInt64 = 10_000_000
}

nonisolated(unsafe) var settings = Settings()

func guestMain() {
    if let mb = GuestKit.multiboot {
        settings.alu = mb.unsignedArgument("alu") ?? settings.alu
        settings.copyBytes = (mb.unsignedArgument("copy") ?? settings.copyBytes) & ~7
        settings.copies = mb.unsignedArgument("copies") ?? settings.copies
        settings.sieveBytes = (mb.unsignedArgument("sieve") ?? settings.sieveBytes) & ~7
        settings.calls = mb.unsignedArgument("calls") ?? settings.calls
        settings.dispatch = mb.unsignedArgument("dispatch") ?? settings.dispatch
    }
    let needed = UInt64(sieveBase) + settings.sieveBytes + 2 * settings.copyBytes
    let ramTop = (UInt64(GuestKit.multiboot?.memoryUpperKiB ?? 0) + 1024) * 1024
    guard needed <= ramTop, settings.sieveBytes >= 16, settings.copyBytes >= 8,
          settings.alu > 0, settings.calls > 0, settings.dispatch > 0 else {
        putLine("cpubench: not enough RAM or a zero size (need RAM up to ")
        put(needed >> 20)
        putLine(" MiB)")
        GuestKit.exit(1)
    }
    GuestKit.enterUserMode(userMain)
}

func report(_ name: StaticString, instructions: UInt64, start: UInt64, result: UInt64) {
    let ticks = gk_rdtsc() &- start
    put("cpubench: ")
    put(name)
    put(" instructions=")
    put(instructions)
    put(" tsc=")
    put(ticks)
    put(" result=")
    put(result)
    putLine()
}

/// Runs at CPL3.
func userMain() {
    put("cpubench: running at CPL")
    put(GuestKit.cpl)
    putLine()

    // 1. Register ALU.
    var start = gk_rdtsc()
    var result = bench_alu(settings.alu)
    report("alu", instructions: 3 + 10 * settings.alu + 1, start: start, result: result)

    // 2. Memory copy (the source is filled first, untimed).
    let source = UnsafeMutablePointer<UInt64>(bitPattern: sieveBase + UInt(settings.sieveBytes))
    let destination = UnsafeMutablePointer<UInt64>(bitPattern: sieveBase + UInt(settings.sieveBytes + settings.copyBytes))
    guard let source, let destination else { GuestKit.exit(1) }
    let qwords = settings.copyBytes / 8
    for i in 0..<Int(qwords) { source[i] = UInt64(i) &* 0x9e37_79b9 }
    start = gk_rdtsc()
    for _ in 0..<settings.copies { bench_copy(destination, source, qwords) }
    result = destination[Int(qwords) - 1] &+ destination[0]
    report("copy", instructions: settings.copies * (6 * qwords + 1), start: start, result: result)

    // 3. Sieve.
    guard let flags = UnsafeMutablePointer<UInt8>(bitPattern: sieveBase) else { GuestKit.exit(1) }
    var counters: (UInt64, UInt64) = (0, 0)
    start = gk_rdtsc()
    result = withUnsafeMutablePointer(to: &counters) { pointer in
        pointer.withMemoryRebound(to: UInt64.self, capacity: 2) { bench_sieve(flags, settings.sieveBytes, $0) }
    }
    let ticks = gk_rdtsc() &- start
    // Inner (marking) iterations: every prime p with p * p < size marks p*p, p*p+p, ... < size.
    let size = settings.sieveBytes
    var inner: UInt64 = 0
    var p: UInt64 = 2
    while p * p < size {
        if flags[Int(p)] != 0 { inner += (size - p * p + p - 1) / p }
        p += 1
    }
    let sieveInstructions = 4 + 4 * (size / 8) + 3 + 9 * counters.0 + 3 * counters.1 + 4 * inner + 2
        + 3 + 5 * (size - 2) + 1
    report("sieve", instructions: sieveInstructions, start: gk_rdtsc() &- ticks, result: result)

    // 4. Calls and branches: odd arguments take the 4-instruction path of the leaf, even the 5.
    start = gk_rdtsc()
    result = bench_calls(settings.calls)
    let odd = (settings.calls + 1) / 2, even = settings.calls / 2
    report("calls", instructions: 2 + 5 * settings.calls + 4 * odd + 5 * even + 2, start: start, result: result)

    // 5. Jump-table dispatch over a pseudo-random 256-byte program.
    let program = UnsafeMutablePointer<UInt8>.allocate(capacity: 256)
    var seed: UInt32 = 12345
    for i in 0..<256 {
        seed = seed &* 1_103_515_245 &+ 12345
        program[i] = UInt8(truncatingIfNeeded: seed >> 16) & 3
    }
    start = gk_rdtsc()
    result = bench_dispatch(settings.dispatch, program)
    report("dispatch", instructions: 3 + 7 * settings.dispatch + 1, start: start, result: result)

    putLine("cpubench: done")
    GuestKit.exit(0)
}
