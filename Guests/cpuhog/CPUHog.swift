// cpuhog: a CPU-bound guest for scheduling experiments. It drops to CPL3 (where KVM's PVM
// backend runs natively) and spins in a four-instruction register loop (spin.S) for `ms`
// milliseconds of TSC time, checking the TSC every `batch` iterations, with no exits besides
// the console. The only failure is a broken clock (no iterations).
//
// It honours the host's shutdown requests (GuestKit's `ShutdownRequests`: PV's
// VIRQ_SHUTDOWN_REQUEST on Visor, the ACPI power button with `pv=off` or elsewhere), so a
// toolstack can shut it down or reboot it: the loop runs with interrupts enabled, on a TSS
// whose RSP0 is a kernel stack, but nothing else can interrupt it (no timer is armed, the 8259s
// and every other I/O APIC pin stay masked), so what it measures is as before.
//
// Command line: ms=<milliseconds> (default 500), batch=<iterations between TSC reads>
// (default 100000), pv=off (listen for the power button rather than through PV).
// Output:
//   cpuhog: ms=<ms> batch=<n>
//   cpuhog: iterations=<n> elapsed_ns=<ns> per_ms=<iterations per ms>
//   cpuhog: PASS | cpuhog: FAIL (no iterations)
//   shutdown requested: poweroff | reboot | poweroff (ACPI power button), when asked
// Exit (from CPL3 through the ports): 0 on PASS, 1 on FAIL; on a request, as it says (from CPL0).

nonisolated(unsafe) var hogMs: UInt64 = 500
nonisolated(unsafe) var hogBatch: UInt64 = 100_000
let kernelStackBytes = 16384

func guestMain() {
    hogMs = max(GuestKit.multiboot?.unsignedArgument("ms") ?? hogMs, 1)
    hogBatch = max(GuestKit.multiboot?.unsignedArgument("batch") ?? hogBatch, 1)
    Interrupts.setUp()
    APIC.enable()                   // the calibration path needs the APIC timer; the SCI comes through it
    Timing.discover()
    let pvOff = GuestKit.multiboot?.argument("pv").map { $0.utf8.elementsEqual("off".utf8) } ?? false
    if !pvOff && PV.detect() { _ = PV.install() }  // events only: the console stays on COM1
    gk_cli()
    ShutdownRequests.listen()
    let kernelStack = UnsafeMutableRawPointer.allocate(byteCount: kernelStackBytes, alignment: 16)
    GuestKit.installTaskState(kernelStackTop: UInt64(UInt(bitPattern: kernelStack)) + UInt64(kernelStackBytes))
    put("cpuhog: ms=")
    put(hogMs)
    put(" batch=")
    put(hogBatch)
    putLine()
    if PV.active { PV.enableEvents() }  // PV's interrupt flag: the upcall reaches CPL3 too
    GuestKit.enterUserMode(hogMain, interruptible: true)
}

/// Runs at CPL3 with IF = 1 (only a shutdown request interrupts it).
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
