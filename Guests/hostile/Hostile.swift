// hostile: a guest kernel that attacks its hypervisor in one of several ways, for the host's
// robustness tests and `visor bench hostile`. Every mode except triple-fault runs until the
// host stops it; none of them may crash, hang or slow down the host or another domain.
//
// Command line: mode=<mode> (default flood); seed=<n> (hypercall-storm's generator); the
// variants up=on (hypercall-storm), init=on (ipi-storm), exec=on (beyond-ram), described below.
//   flood              the console as fast as the guest can: `rep outsb` of 4 KiB to COM1 with
//                      no LSR polling, byte-by-byte `outb`, and (on Visor) console_io writes
//                      of 4 KiB
//   cli-spin           arms its APIC timer (so an interrupt is pending) and spins at CPL0 with
//                      interrupts disabled in a one-instruction loop
//   apic-1ns           the APIC timer in periodic mode with initial count 1 and divide by 1
//                      (a 1 ns period at Visor's 1 GHz timer clock), interrupts enabled; and
//                      the PIT (reload 2) and the RTC (8192 Hz) at their fastest too
//   hypercall-storm    every hypercall number with garbage arguments in a tight loop, through
//                      the stubs and by trapping directly with any RAX (also in bursts of 64
//                      from an assembly loop, the tightest there is), plus garbage writes
//                      to the PV MSRs; never the few calls that would end or park it (see
//                      `stormArguments`). With up=on (and 2 vCPUs) it also starts vCPU 1
//                      with a context that passes Visor's checks but is otherwise garbage
//   ipi-storm          (2 vCPUs) both vCPUs send fixed IPIs to each other and to themselves,
//                      broadcasts, SIPIs to a running CPU, NMIs and illegal vectors, nonstop;
//                      with init=on vCPU 0 also resets vCPU 1 (INIT) and restarts it (SIPI)
//                      into a real-mode `jmp $`, again and again
//   xmodify            (2 vCPUs) vCPU 1 rewrites a code page that vCPU 0 executes; after a
//                      serializing CPUID vCPU 0 must see the latest code (counted as stale)
//   beyond-ram         loads, stores, string copies and locked operations on physical
//                      addresses outside RAM: just past its end, in the device hole below
//                      4 GiB, above 4 GiB and at the top of the physical address space through
//                      its own page tables, past MAXPHYADDR (a reserved-bit #PF it recovers
//                      from) and through a page directory that is itself in the device hole;
//                      with exec=on it also jumps to those addresses (code outside RAM reads
//                      as all ones: #UD, recovered; an engine that cannot fetch it may crash
//                      the domain instead)
//   fault-loop         an IDT whose #DE and #GP gates are not present: each divide by zero or
//                      non-canonical load becomes a double fault, which its #DF handler
//                      resumes after, in a loop
//   triple-fault       an IDT of limit 0 and `ud2`: the vCPU shuts down (Visor has no reboot:
//                      the domain crashes)
// Output: `hostile: mode=<mode>`, then `hostile: <mode> running` when the attack starts, then
// about twice a second `hostile: <mode> alive <counters>`. Unknown mode: debug exit 1.

/// Seconds between the `alive` lines, as TSC ticks (set once Timing is known).
nonisolated(unsafe) var reportInterval: UInt64 = 0
nonisolated(unsafe) var nextReport: UInt64 = 0

func guestMain() {
    let mode = GuestKit.multiboot?.argument("mode") ?? "flood"
    put("hostile: mode=")
    put(mode)
    putLine()
    func named(_ name: StaticString) -> Bool {
        mode.utf8.elementsEqual(UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
    }
    if named("flood") { flood() }
    if named("cli-spin") { cliSpin() }
    if named("apic-1ns") { apicOneNanosecond() }
    if named("hypercall-storm") { hypercallStorm() }
    if named("ipi-storm") { ipiStorm() }
    if named("xmodify") { crossModify() }
    if named("beyond-ram") { beyondRAM() }
    if named("fault-loop") { faultLoop() }
    if named("triple-fault") { tripleFault() }
    putLine("hostile: unknown mode (flood, cli-spin, apic-1ns, hypercall-storm, ipi-storm, xmodify, beyond-ram, fault-loop, triple-fault)")
    GuestKit.exit(1)
}

/// Prints `hostile: <mode> running` and starts the report clock.
func started(_ mode: StaticString) {
    if reportInterval == 0 { reportInterval = Timing.tscTicks(nanoseconds: 500_000_000) }
    nextReport = gk_rdtsc() &+ reportInterval
    put("hostile: ")
    put(mode)
    putLine(" running")
}

/// Whether it is time for another `alive` line.
@inline(__always)
func reportDue() -> Bool {
    let now = gk_rdtsc()
    guard now >= nextReport else { return false }
    nextReport = now &+ reportInterval
    return true
}

// MARK: flood

func flood() -> Never {
    Interrupts.setUp()
    Timing.discover()
    let pv = PV.detect() && PV.install()
    if pv { gk_cli() }                  // PV.install leaves IF = 1; the flood wants no upcalls
    let size = 4096
    let buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: size)
    let line: StaticString = "hostile: flood flood flood flood flood flood flood flood flood flood flood flood\n"
    for i in 0..<size { buffer[i] = line.utf8Start[i % line.utf8CodeUnitCount] }
    started("flood")
    var rounds: UInt64 = 0
    while true {
        ho_outsb(PlatformPorts.com1, buffer, UInt64(size))
        for i in 0..<256 { gk_outb(PlatformPorts.com1, buffer[i]) }
        if pv { _ = PV.call(Hypercall.consoleIO, UInt64(ConsoleIO.write), UInt64(size), UInt64(UInt(bitPattern: buffer))) }
        rounds &+= 1
        if reportDue() {
            put("hostile: flood alive rounds=")
            put(rounds)
            putLine()
        }
    }
}

// MARK: cli-spin

func cliSpin() -> Never {
    Platform.setUp()
    Timer.arm(afterNanoseconds: 1_000)   // due at once: an interrupt it will never take
    started("cli-spin")
    ho_cli_spin()
}

// MARK: apic-1ns

let tickVector: UInt32 = 0x40
nonisolated(unsafe) var ticks: UInt64 = 0

nonisolated(unsafe) var pitTicks: UInt64 = 0
nonisolated(unsafe) var rtcTicks: UInt64 = 0

func apicOneNanosecond() -> Never {
    Platform.setUp()
    Interrupts.register(vector: tickVector) { _ in ticks &+= 1 }
    APIC.write(APIC.Register.timerDivide, 0xb)                      // divide by 1
    APIC.write(APIC.Register.lvtTimer, 0x20000 | tickVector)        // periodic, unmasked
    APIC.write(APIC.Register.timerInitialCount, 1)                  // one tick: 1 ns at 1 GHz
    // The legacy timers at their fastest too, through the 8259 and LINT0 (ExtINT): PIT channel
    // 0 as a rate generator with reload 2 (1.7 µs), the RTC's periodic interrupt at 8192 Hz.
    Interrupts.register(vector: Interrupts.picBase) { _ in
        pitTicks &+= 1
        gk_outb(0x20, 0x20)                                         // 8259 EOI
    }
    Interrupts.register(vector: Interrupts.picBase + 8) { _ in
        rtcTicks &+= 1
        gk_outb(0x70, 0x0c)                                         // read C: the next one may come
        _ = gk_inb(0x71)
        gk_outb(0xa0, 0x20)
        gk_outb(0x20, 0x20)
    }
    gk_outb(0x43, 0x34)                                             // channel 0, lo/hi, mode 2
    gk_outb(0x40, 2)
    gk_outb(0x40, 0)
    gk_outb(0x70, 0x0a)
    gk_outb(0x71, 0x23)                                             // 32.768 kHz base, rate 3
    gk_outb(0x70, 0x0b)
    let b = gk_inb(0x71)
    gk_outb(0x70, 0x0b)
    gk_outb(0x71, b | 0x40)                                         // periodic interrupt enable
    gk_outb(0x21, 0xfa)                                             // unmask IRQ0, IRQ2 (cascade)
    gk_outb(0xa1, 0xfe)                                             // unmask IRQ8
    APIC.write(APIC.Register.lvtLINT0, 0x700)                       // ExtINT, unmasked
    started("apic-1ns")
    gk_sti()
    var last: UInt64 = 0
    var lastTSC = gk_rdtsc()
    while true {
        gk_pause()
        if reportDue() {
            gk_cli()
            let now = gk_rdtsc()
            let count = ticks
            put("hostile: apic-1ns alive ticks=")
            put(count)
            put(" per_s=")
            put(Timing.mulDiv(count &- last, 1_000_000_000, max(Timing.nanoseconds(tscTicks: now &- lastTSC), 1)))
            put(" pit=")
            put(pitTicks)
            put(" rtc=")
            put(rtcTicks)
            putLine()
            last = count
            lastTSC = now
            gk_sti()
        }
    }
}

// MARK: hypercall-storm

/// xorshift64*: garbage that is the same for the same seed.
nonisolated(unsafe) var randomState: UInt64 = 0x9e37_79b9_7f4a_7c15
@inline(__always)
func random() -> UInt64 {
    randomState ^= randomState >> 12
    randomState ^= randomState << 25
    randomState ^= randomState >> 27
    return randomState &* 0x2545_f491_4f6c_dd1d
}

/// A scratch area the storm's pointers may land in (and Visor may write): nothing else of the
/// guest's is there.
let scratchSize = 64 * 1024
nonisolated(unsafe) var scratch: UnsafeMutablePointer<UInt8>? = nil
nonisolated(unsafe) var ramTop: UInt64 = 64 << 20

/// One garbage argument: any 64-bit value, a small number, a pointer into the scratch area, a
/// pointer at the very end of RAM (structures that cross out of it), one in the device hole or
/// above 4 GiB, or 0.
func garbageArgument() -> UInt64 {
    let r = random()
    switch r % 8 {
    case 0, 1: return random()
    case 2: return (r >> 3) % 40
    case 3, 4: return UInt64(UInt(bitPattern: scratch)) &+ (random() % UInt64(scratchSize - 256))
    case 5: return ramTop &- (random() % 64)
    case 6:
        switch random() % 5 {
        case 0: return 0xc000_0000
        case 1: return 0xfee0_0000
        case 2: return 0xffff_fff8
        case 3: return 0x1_0000_0000
        default: return 0xffff_ffff_ffff_fff0
        }
    default: return 0
    }
}

/// Whether `address` lies in guest RAM (where a hypercall could write).
func inRAM(_ address: UInt64) -> Bool { address < ramTop }

/// An address no hypercall can reach: beyond RAM.
func outsideRAM() -> UInt64 { 0xc000_0000 &+ (random() % 0x1000_0000) }

/// The arguments for hypercall `nr`, garbage except where the call would end the guest or
/// stop its storm: sched_op shutdown (any reason in RAM ends the domain, by design), block
/// and poll (could sleep for ever), vcpu_op down (parks the caller): those get pointers Visor
/// must refuse (-EFAULT) or become harmless (`yield`, `is_up`), so the storm goes on.
func stormArguments(_ nr: UInt64) -> (UInt64, UInt64, UInt64, UInt64, UInt64) {
    var a = (garbageArgument(), garbageArgument(), garbageArgument(), garbageArgument(), garbageArgument())
    if nr == UInt64(Hypercall.schedOp) {
        if random() % 2 == 0 { a.0 = random() % 6 }
        switch a.0 {
        case UInt64(SchedOp.shutdown), UInt64(SchedOp.poll):
            if inRAM(a.1) { a.1 = outsideRAM() }
        case UInt64(SchedOp.block):
            a.0 = UInt64(SchedOp.yield)
        default: break
        }
    }
    if nr == UInt64(Hypercall.vcpuOp) {
        if random() % 2 == 0 { a.0 = random() % 12 }
        if a.0 == UInt64(VCPUOp.down) || a.0 == UInt64(VCPUOp.up) { a.0 = UInt64(VCPUOp.isUp) }
        if random() % 2 == 0 { a.1 = random() % 3 }
    }
    if nr == UInt64(Hypercall.eventChannelOp) || nr == UInt64(Hypercall.consoleIO) {
        if random() % 2 == 0 { a.0 = random() % 12 }
    }
    return a
}

func hypercallStorm() -> Never {
    if let seed = GuestKit.multiboot?.unsignedArgument("seed") { randomState = seed | 1 }
    let upOther = GuestKit.multiboot?.argument("up").map { $0.utf8.elementsEqual("on".utf8) } ?? false
    if let upper = GuestKit.multiboot?.memoryUpperKiB { ramTop = (UInt64(upper) + 1024) * 1024 }
    Interrupts.setUp()
    Timing.discover()
    // Any vector the storm points the upcall at has a handler (isr.S sends the EOI).
    for vector in UInt32(32)..<255 where vector != PV.upcallVector {
        Interrupts.register(vector: vector) { _ in }
    }
    scratch = UnsafeMutablePointer<UInt8>.allocate(capacity: scratchSize)
    let pv = PV.detect() && PV.install()
    gk_cli()
    put("hostile: hypercall-storm pv=")
    putLine(pv ? "yes" : "no")
    started("hypercall-storm")
    let numbers: [UInt32] = [Hypercall.setTimerOp, Hypercall.xenVersion, Hypercall.consoleIO, Hypercall.vcpuOp,
                             Hypercall.schedOp, Hypercall.eventChannelOp]
    var calls: UInt64 = 0, failures: UInt64 = 0, successes: UInt64 = 0, bursts: UInt64 = 0
    while true {
        if let scratch {
            // Fresh garbage in part of the scratch area, for the structures the calls read.
            let base = Int(random() % UInt64(scratchSize / 8 - 8))
            let words = UnsafeMutableRawPointer(scratch).assumingMemoryBound(to: UInt64.self)
            for i in 0..<8 { words[base + i] = random() }
        }
        let choice = random() % 16
        let nr: UInt64 = choice < 11 ? UInt64(numbers[Int(choice % 6)]) : (choice < 14 ? random() % 64 : random())
        let a = stormArguments(nr)
        let result: Int64
        if pv && nr < 64 && choice % 2 == 0 {
            result = PV.call(UInt32(nr), a.0, a.1, a.2, a.3, a.4)
        } else {
            result = ho_raw_trap(nr, a.0, a.1, a.2, a.3, a.4)
        }
        if result < 0 { failures &+= 1 } else { successes &+= 1 }
        calls &+= 1
        // And a burst straight from assembly: garbage registers, no pointers into RAM.
        let burstFailures = ho_trap_burst(64, &randomState)
        failures &+= burstFailures
        successes &+= 64 &- burstFailures
        bursts &+= 64
        if pv && calls % 64 == 0 {
            // Garbage to the PV MSRs: a page in the scratch area or outside RAM, any vector.
            let msr = calls % 128 == 0 ? PV.hypercallMSR : PV.sharedInfoMSR
            let page = random() % 2 == 0 ? (UInt64(UInt(bitPattern: scratch)) + 4095) & ~4095 : outsideRAM() & ~4095
            gk_wrmsr(msr, page | (random() & 0xfff))
        }
        if upOther && pv && calls % 64 == 32 {
            // vCPU 1 started with a context that passes Visor's checks but is otherwise garbage.
            let ctx = UnsafeMutableRawPointer(scratch!).assumingMemoryBound(to: UInt64.self)
            ctx[VCPUContext.ripOffset / 8] = random() & 0x7fff_ffff_ffff
            ctx[VCPUContext.rspOffset / 8] = random() & 0x7fff_ffff_ffff
            ctx[VCPUContext.rdiOffset / 8] = random()
            ctx[VCPUContext.cr3Offset / 8] = gk_read_cr3()
            ctx[VCPUContext.gdtBaseOffset / 8] = gk_boot_gdt_base()
            ctx[VCPUContext.gdtLimitOffset / 8] = gk_boot_gdt_limit()
            ctx[VCPUContext.codeSelectorOffset / 8] = 0x08
            ctx[VCPUContext.dataSelectorOffset / 8] = 0x10
            ctx[VCPUContext.cr4Offset / 8] = random() | 0x20
            ctx[VCPUContext.eferOffset / 8] = random() | 0x100
            let a = PV.call(Hypercall.vcpuOp, UInt64(VCPUOp.initialise), 1, UInt64(UInt(bitPattern: ctx)))
            let b = PV.call(Hypercall.vcpuOp, UInt64(VCPUOp.up), 1)
            put("hostile: started vCPU 1 with garbage: ")
            put(a)
            put(" ")
            put(b)
            putLine()
        }
        if calls % 32 == 0 { ho_sti_nop_cli() }   // room for one upcall or interrupt
        if reportDue() {
            put("hostile: hypercall-storm alive calls=")
            put(calls &+ bursts)
            put(" ok=")
            put(successes)
            put(" failed=")
            put(failures)
            putLine()
        }
    }
}

// MARK: ipi-storm

let pingVector: UInt32 = 0x40
let selfVector: UInt32 = 0x41
let broadcastVector: UInt32 = 0x42
/// Per-CPU field (gk_percpu_t.user[0]): interrupts this CPU took.
let receivedField: UInt32 = 5

nonisolated(unsafe) var stormReady: UInt64 = 0

let ipiStormAP: APEntry = { index in
    _ = gk_fetch_add64(&stormReady, 1)
    storm(index)
}

func ipiStorm() -> Never {
    Platform.setUp()
    for vector in [pingVector, selfVector, broadcastVector] {
        Interrupts.register(vector: vector) { _ in
            let p = gk_percpu_field(gk_cpu_index(), receivedField)
            gk_store64(p, gk_load64(p) &+ 1)
        }
    }
    Interrupts.register(vector: 2) { _ in }  // the NMIs of the storm
    let online = SMP.start(expected: 2, entry: ipiStormAP)
    put("hostile: ipi-storm cpus=")
    put(online)
    putLine()
    resetOther = GuestKit.multiboot?.argument("init").map { $0.utf8.elementsEqual("on".utf8) } ?? false
    if resetOther {
        // Real-mode code for the restarted vCPU: `jmp $` at the start-up page, and an `iret`
        // after it for the storm's NMIs, which reach it through the IVT's entry 2.
        let page = UnsafeMutablePointer<UInt8>(bitPattern: UInt(restartPage) << 12)!
        page[0] = 0xeb
        page[1] = 0xfe
        page[2] = 0xcf
        let ivt = UnsafeMutablePointer<UInt16>(bitPattern: 2 * 4)!
        ivt[0] = 2                                  // offset
        ivt[1] = UInt16(restartPage) << 8           // segment: the start-up page
    }
    started("ipi-storm")
    storm(0)
}

/// init=on: CPU 0 also resets the other CPU (INIT) and restarts it (SIPI) into `jmp $` at
/// this page, over and over.
nonisolated(unsafe) var resetOther = false
let restartPage: UInt32 = 0x71

/// The storm on CPU `index`: never returns.
func storm(_ index: UInt32) -> Never {
    let me = APIC.id
    let other = SMP.apicID(ofCPU: index == 0 ? 1 : 0)
    let hasOther = SMP.isOnline(index == 0 ? 1 : 0)
    var sent: UInt64 = 0
    gk_sti()
    while true {
        if hasOther { APIC.sendIPI(vector: pingVector, to: other) }
        APIC.sendIPI(vector: selfVector, to: me, shorthand: .this)
        sent &+= 2
        switch sent % 64 {
        case 0: APIC.sendIPI(vector: broadcastVector, to: 0, shorthand: .allIncludingSelf)
        case 8: APIC.sendICR(low: 0x400, destination: other)                   // NMI
        case 16: APIC.sendIPI(vector: 5, to: other)                            // illegal vector: ESR
        case 24: APIC.sendICR(low: 0x100 | pingVector, destination: 0xff)      // lowest priority, broadcast
        case 32: APIC.sendICR(low: 0x800 | pingVector, destination: 0x03)      // logical destination
        // SIPI to a running CPU. With init=on it names the restart page too: KVM latches
        // INIT and SIPIs until the target's thread runs and keeps only the last vector, so a
        // SIPI here right after case 56's INIT+SIPI could restart vCPU 1 in the SMP
        // trampoline, where a storm NMI before its LIDT triple-faults it.
        case 40: if hasOther { APIC.sendStartup(page: resetOther ? restartPage : 0x70, to: other) }
        case 48: APIC.sendICR(low: 0x200 | pingVector, destination: other)     // SMI (ignored)
        case 56:
            if index == 0 && resetOther && hasOther && sent % 512 == 56 {
                APIC.sendInit(to: other)
                APIC.sendStartup(page: restartPage, to: other)
            }
        default: break
        }
        if index == 0 && reportDue() {
            gk_cli()
            put("hostile: ipi-storm alive sent=")
            put(sent)
            put(" received0=")
            put(gk_load64(gk_percpu_field(0, receivedField)))
            put(" received1=")
            put(gk_load64(gk_percpu_field(1, receivedField)))
            putLine()
            gk_sti()
        }
    }
}

// MARK: xmodify

/// Even: the code page holds generation `writeGeneration / 2`; odd: vCPU 1 is rewriting it.
nonisolated(unsafe) var writeGeneration: UInt64 = 0

let xmodifyAP: APEntry = { _ in
    var generation: UInt64 = 0
    while true {
        gk_store64(&writeGeneration, generation &* 2 &+ 1)
        generation &+= 1
        for slot in UInt32(0)..<4 {
            ho_write_slot(slot, ho_slot_encoding(slotValue(generation, slot)))
        }
        gk_store64(&writeGeneration, generation &* 2)
    }
}

/// What slot `slot` returns in generation `generation`.
@inline(__always)
func slotValue(_ generation: UInt64, _ slot: UInt32) -> UInt32 {
    UInt32(truncatingIfNeeded: generation << 2) | slot
}

func crossModify() -> Never {
    Platform.setUp()
    // Generation 0's code before vCPU 1 starts: the page as assembled returns 0 from every
    // slot, which a check made before vCPU 1's first rewrite would count as stale.
    for slot in UInt32(0)..<4 {
        ho_write_slot(slot, ho_slot_encoding(slotValue(0, slot)))
    }
    let online = SMP.start(expected: 2, entry: xmodifyAP)
    put("hostile: xmodify cpus=")
    put(online)
    putLine()
    if online < 2 { putLine("hostile: xmodify needs 2 vCPUs (--vcpus 2); rewriting its own code instead") }
    started("xmodify")
    var calls: UInt64 = 0, checked: UInt64 = 0, stale: UInt64 = 0, ownWrites: UInt64 = 0
    while true {
        if online < 2 {
            // No other CPU: modify the page from this one between calls.
            ownWrites &+= 1
            gk_store64(&writeGeneration, ownWrites &* 2 &+ 1)
            for slot in UInt32(0)..<4 {
                ho_write_slot(slot, ho_slot_encoding(slotValue(ownWrites, slot)))
            }
            gk_store64(&writeGeneration, ownWrites &* 2)
        }
        let slot = UInt32(truncatingIfNeeded: calls & 3)
        let before = gk_load64(&writeGeneration)
        ho_serialize()
        let value = ho_call_slot(slot)
        let after = gk_load64(&writeGeneration)
        if before == after && before & 1 == 0 {
            checked &+= 1
            if value != slotValue(before / 2, slot) { stale &+= 1 }
        }
        _ = ho_call_slot(slot &+ 1)        // and once without serializing: old or new is fine
        calls &+= 2
        if reportDue() {
            put("hostile: xmodify alive calls=")
            put(calls)
            put(" checked=")
            put(checked)
            put(" stale=")
            put(stale)
            put(" generation=")
            put(gk_load64(&writeGeneration) / 2)
            putLine()
        }
    }
}

// MARK: beyond-ram

/// Faults the probes recovered from.
nonisolated(unsafe) var probeFaults: UInt64 = 0
/// Where `ho_exec` jumps: a fault there is a probe's too.
nonisolated(unsafe) var execTarget: UInt64 = 0
/// Jumps done by `ho_exec` that came back.
nonisolated(unsafe) var executed: UInt64 = 0

/// #GP, #PF, #UD and #AC inside a probe resume at `ho_probe_fault`; anywhere else they are
/// GuestKit's unexpected exceptions.
let probeFaultHandler: InterruptHandler = { raw in
    let frame = InterruptFrame(raw)
    let inProbe = frame.rip >= ho_probes_start_address() && frame.rip < ho_probes_end_address()
    if inProbe || (frame.rip >= execTarget && frame.rip - execTarget < 16) {
        probeFaults &+= 1
        frame.rip = ho_probe_fault_address()
        return
    }
    guestkitExceptionHandler(raw)
}

/// Where the guest's own page tables map the addresses above 4 GiB: PDPT entry 4 (linear 4-5 GiB).
let highWindow: UInt64 = 4 << 30

func beyondRAM() -> Never {
    if let upper = GuestKit.multiboot?.memoryUpperKiB { ramTop = (UInt64(upper) + 1024) * 1024 }
    Platform.setUp()
    for vector in UInt32(0)..<32 { Interrupts.register(vector: vector, handler: probeFaultHandler) }
    let maxPhysical = CPU.cpuid(0x8000_0000).eax >= 0x8000_0008 ? CPU.cpuid(0x8000_0008).eax & 0xff : 36
    // Linear [4 GiB, 5 GiB): a page directory of our own with 2 MiB pages onto physical
    // addresses no RAM backs, one of them past MAXPHYADDR (reserved bits: #PF).
    let directory = UnsafeMutablePointer<UInt64>(bitPattern: UInt(allocatePage()))!
    let targets: [UInt64] = [4 << 30, 64 << 30, (1 << UInt64(maxPhysical)) - (2 << 20), 1 << UInt64(maxPhysical)]
    for i in 0..<512 { directory[i] = 0 }
    for (i, target) in targets.enumerated() where target < (1 << 52) {
        directory[i] = target | 0x87          // present, writable, user, 2 MiB
    }
    let pdpt = ho_boot_pdpt()
    pdpt[4] = UInt64(UInt(bitPattern: directory)) | 0x07
    // Linear [5 GiB, 6 GiB): a page directory that is itself outside RAM, in the device hole.
    pdpt[5] = 0xe000_0000 | 0x07
    ho_write_cr3(gk_read_cr3())
    let ram = allocatePage()
    put("hostile: beyond-ram ram_top=")
    putHex(ramTop)
    put(" maxphyaddr=")
    put(maxPhysical)
    putLine()

    var addresses: [UInt64] = [
        ramTop, ramTop &+ 0x1000, ramTop &- 4,                    // just past RAM; across its end
        0xc000_0000, 0xe000_0000, 0xfec0_0000, 0xfed0_0000,       // the device hole below 4 GiB
        0xfee0_0400, 0xfee0_0ffc, 0xffff_fff0,                    // APIC page oddities, the top
    ]
    for i in 0..<targets.count where targets[i] < (1 << 52) {
        addresses.append(highWindow + UInt64(i) << 21 + 0x1230)
    }
    addresses.append(highWindow + (1 << 30) + 0x5678)           // through the table in the hole
    let exec = GuestKit.multiboot?.argument("exec").map { $0.utf8.elementsEqual("on".utf8) } ?? false
    started("beyond-ram")
    var rounds: UInt64 = 0
    var sum: UInt64 = 0
    while true {
        for address in addresses {
            sum &+= ho_load8(address) &+ ho_load16(address) &+ ho_load32(address) &+ ho_load64(address)
            sum &+= ho_store8(address, rounds) &+ ho_store16(address, rounds) &+ ho_store32(address, rounds)
            sum &+= ho_store64(address, rounds)
            sum &+= ho_copy_in(ram, address, 64) &+ ho_copy_out(address, ram, 64) &+ ho_fill(address, rounds, 8)
            sum &+= ho_xadd(address, 1) &+ ho_cmpxchg(address, 0, rounds) &+ ho_xchg(address, rounds)
        }
        if exec {
            // Code outside RAM: it reads as all ones (0xff 0xff is #UD) or its walk faults.
            // (Not the last bytes of RAM: whatever the stores left there would run.)
            let target = addresses[Int(rounds % UInt64(addresses.count))]
            if target >= ramTop {
                execTarget = target
                sum &+= ho_exec(target)
                executed &+= 1
            }
        }
        rounds &+= 1
        if reportDue() {
            put("hostile: beyond-ram alive rounds=")
            put(rounds)
            put(" addresses=")
            put(addresses.count)
            put(" faults=")
            put(probeFaults)
            put(" executed=")
            put(executed)
            put(" sum=")
            putHex(sum)
            putLine()
        }
    }
}

/// A zeroed, page-aligned page from the heap.
func allocatePage() -> UInt64 {
    let raw = UnsafeMutableRawPointer.allocate(byteCount: 8192, alignment: 16)
    let page = (UInt64(UInt(bitPattern: raw)) + 4095) & ~4095
    UnsafeMutableRawPointer(bitPattern: UInt(page))!.initializeMemory(as: UInt8.self, repeating: 0, count: 4096)
    return page
}

// MARK: fault-loop

nonisolated(unsafe) var doubleFaults: UInt64 = 0
nonisolated(unsafe) var resumeAt: UInt64 = 0

func faultLoop() -> Never {
    Platform.setUp()
    // #DF resumes where the current attempt says; #DE and #GP have no gate at all, so their
    // delivery raises #NP, a contributory fault on a contributory fault: a double fault.
    Interrupts.register(vector: 8) { raw in
        doubleFaults &+= 1
        InterruptFrame(raw).rip = resumeAt
    }
    for vector in [UInt32(0), 13] {
        let gate = UnsafeMutablePointer<UInt64>(bitPattern: UInt(gk_idt_address()) + UInt(vector) * 16)!
        gate[0] = 0
        gate[1] = 0
    }
    started("fault-loop")
    var attempts: UInt64 = 0, resumed: UInt64 = 0
    while true {
        if attempts & 1 == 0 {
            resumeAt = ho_divide_resume_address()
            resumed &+= ho_divide_fault()
        } else {
            resumeAt = ho_noncanonical_resume_address()
            resumed &+= ho_noncanonical_fault()
        }
        attempts &+= 1
        if reportDue() {
            put("hostile: fault-loop alive attempts=")
            put(attempts)
            put(" double_faults=")
            put(doubleFaults)
            put(" resumed=")
            put(resumed)
            putLine()
        }
    }
}

// MARK: triple-fault

func tripleFault() -> Never {
    started("triple-fault")
    Console.flush()
    gk_lidt(0, 0)
    gk_ud2()
    putLine("hostile: still alive after a triple fault")
    GuestKit.exit(2)
}
