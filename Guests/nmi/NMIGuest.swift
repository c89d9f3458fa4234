// nmi: NMIs from one CPU to another through the local APIC's ICR (issue 15 item 5). The BSP
// starts the application processors (INIT, SIPI, SIPI: GuestKit/SMP.swift); the first AP parks
// in `cli; hlt`. The BSP then sends it NMIs (NMI delivery mode): each must wake it although IF
// is clear, run its vector 2 handler on that CPU, and let it halt again after the IRET; a second
// NMI must be taken as well (the first one's IRET unblocked NMIs); and an NMI to "all excluding
// self" must reach the AP and not the sender. (One CPU's own NMIs, their blocking until IRET and
// the collapsing of a second pending one, are systest's checks.) Last, an INIT through the ICR
// must reset the parked AP and a start-up IPI start it again, in real mode at the SIPI's page,
// where it sets a marker byte and halts.
//
// A page the INIT check uses: 0x72000 (the smp trampoline is at 0x70000).
//
// Output: one `PASS <check>` or `FAIL <check>: <detail>` line per check, then `nmi: PASS` or
// `nmi: FAIL`. Exit 0 on PASS, 1 on FAIL. Needs two CPUs at least.

nonisolated(unsafe) var apParked: UInt64 = 0
/// NMIs taken by the BSP (CPU 0) and by the parked AP (CPU 1).
nonisolated(unsafe) var bspNMIs: UInt64 = 0
nonisolated(unsafe) var apNMIs: UInt64 = 0
nonisolated(unsafe) var failures = 0

let apEntry: APEntry = { index in
    guard index == 1 else { return }  // other APs idle in GuestKit's loop
    gk_store64(&apParked, 1)
    while true {
        gk_cli()
        gk_hlt()  // only an NMI (or INIT) ends this
    }
}

func nmisTakenBy(_ cpu: UInt32) -> UInt64 {
    cpu == 0 ? gk_load64(&bspNMIs) : gk_load64(&apNMIs)
}

func check(_ name: StaticString, _ ok: Bool, _ detail: () -> Void = {}) {
    put(ok ? "PASS " : "FAIL ")
    put(name)
    if !ok {
        put(": ")
        detail()
        failures += 1
    }
    putLine()
}

/// NMI delivery (100b), level assert, edge; physical destination `apicID`, or a shorthand.
func sendNMI(to apicID: UInt32, shorthand: UInt32 = 0) {
    APIC.sendICR(low: shorthand | 0x4400, destination: apicID)
}

func waitForNMIs(on cpu: UInt32, count: UInt64) -> Bool {
    Timer.wait(nanoseconds: 1_000_000_000) { nmisTakenBy(cpu) >= count }
}

func guestMain() {
    Platform.setUp()
    Interrupts.register(vector: 2) { _ in
        switch gk_cpu_index() {
        case 0: _ = gk_fetch_add64(&bspNMIs, 1)
        case 1: _ = gk_fetch_add64(&apNMIs, 1)
        default: break
        }
    }
    let online = SMP.start(expected: 2, entry: apEntry)
    guard online >= 2, Timer.wait(nanoseconds: 1_000_000_000, until: { gk_load64(&apParked) != 0 }) else {
        put("nmi: FAIL (needs two CPUs; ")
        put(online)
        putLine(" online)")
        GuestKit.exit(1)
    }
    let ap = SMP.apicID(ofCPU: 1)

    sendNMI(to: ap)
    let first = waitForNMIs(on: 1, count: 1)
    check("an NMI through the ICR wakes another CPU halted with IF clear and runs its vector 2 handler there",
          first && nmisTakenBy(1) == 1 && nmisTakenBy(0) == 0) {
        put("AP took "); put(nmisTakenBy(1)); put(", BSP took "); put(nmisTakenBy(0))
    }

    sendNMI(to: ap)
    check("a second NMI is taken too: the handler's IRET unblocked NMIs",
          waitForNMIs(on: 1, count: 2) && nmisTakenBy(1) == 2) {
        put("AP took "); put(nmisTakenBy(1))
    }

    sendNMI(to: 0, shorthand: 0xc_0000)  // all excluding self
    let broadcast = waitForNMIs(on: 1, count: 3)
    check("an NMI to all excluding self reaches the other CPU, not the sender",
          broadcast && nmisTakenBy(1) == 3 && nmisTakenBy(0) == 0) {
        put("AP took "); put(nmisTakenBy(1)); put(", BSP took "); put(nmisTakenBy(0))
    }

    initCheck(ap)

    putLine(failures == 0 ? "nmi: PASS" : "nmi: FAIL")
    GuestKit.exit(failures == 0 ? 0 : 1)
}

/// The start-up page of the INIT check, and the marker its real-mode code sets (CS-relative).
let restartPage: UInt32 = 0x72
let markerOffset = 0x10

func initCheck(_ ap: UInt32) {
    let page = UnsafeMutablePointer<UInt8>(bitPattern: UInt(restartPage) << 12)!
    // mov byte cs:[0x10], 1; cli; hlt; jmp back to the hlt
    let code: [UInt8] = [0x2e, 0xc6, 0x06, UInt8(markerOffset), 0x00, 0x01, 0xfa, 0xf4, 0xeb, 0xfd]
    for (i, byte) in code.enumerated() { page[i] = byte }
    page[markerOffset] = 0
    APIC.sendInit(to: ap)
    Timer.sleep(nanoseconds: 10_000_000)
    APIC.sendStartup(page: restartPage, to: ap)
    let started = Timer.wait(nanoseconds: 1_000_000_000) {
        gk_load32(UnsafeMutableRawPointer(page + markerOffset).assumingMemoryBound(to: UInt32.self)) & 0xff == 1
    }
    check("an INIT through the ICR resets the halted CPU and a start-up IPI starts it at its page", started) {
        put("marker "); put(UInt64(page[markerOffset]))
    }
}
