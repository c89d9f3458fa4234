// Time: how fast the TSC and the APIC timer tick, and sleeping on the APIC timer with `hlt`.
//
// Discovery (`Timing.discover`): on Visor (CPUID 0x40000000 carries its signature) the timing
// leaf 0x40000010 gives EAX = TSC kHz and EBX = APIC timer input kHz, and nothing is measured.
// Elsewhere (QEMU) the TSC is calibrated against PIT channel 2 over ~10 ms (mode 0, gate on
// port 0x61 bit 0, output polled on bit 5) and the APIC timer against the TSC in the same
// window. Either way it prints one line:
//   timing: cpuid tsc=<kHz>kHz apic=<kHz>kHz
//   timing: calibrated tsc=<kHz>kHz apic=<kHz>kHz

public enum Timing {
    nonisolated(unsafe) public private(set) static var tscKHz: UInt64 = 0
    nonisolated(unsafe) public private(set) static var apicKHz: UInt64 = 0
    /// Whether the frequencies were measured (false: read from Visor's CPUID timing leaf).
    nonisolated(unsafe) public private(set) static var calibrated = true

    /// a * b / c without intermediate overflow (c > 0; the result must fit 64 bits).
    @inline(__always)
    public static func mulDiv(_ a: UInt64, _ b: UInt64, _ c: UInt64) -> UInt64 { gk_muldiv64(a, b, c) }

    public static func tscTicks(nanoseconds ns: UInt64) -> UInt64 { mulDiv(ns, tscKHz, 1_000_000) }
    public static func nanoseconds(tscTicks ticks: UInt64) -> UInt64 { mulDiv(ticks, 1_000_000, tscKHz) }
    /// Signed TSC difference in nanoseconds.
    public static func nanoseconds(tscDelta delta: Int64) -> Int64 {
        delta < 0 ? -Int64(nanoseconds(tscTicks: UInt64(-delta))) : Int64(nanoseconds(tscTicks: UInt64(delta)))
    }
    public static func apicTicks(nanoseconds ns: UInt64) -> UInt64 { mulDiv(ns, apicKHz, 1_000_000) }
    /// APIC timer input ticks in `ticks` TSC ticks, rounded up.
    public static func apicTicks(tscTicks ticks: UInt64) -> UInt64 {
        mulDiv(ticks, apicKHz, tscKHz) + 1
    }

    /// Finds both frequencies (once) and prints the `timing:` line. The local APIC must be
    /// enabled (`APIC.enable`) for the calibration path.
    public static func discover() {
        if tscKHz != 0 { return }
        let signature = CPU.cpuid(HypervisorCPUID.signatureLeaf)
        if HypervisorCPUID.isVisorSignature(ebx: signature.ebx, ecx: signature.ecx, edx: signature.edx),
           signature.eax >= HypervisorCPUID.timingLeaf {
            let leaf = CPU.cpuid(HypervisorCPUID.timingLeaf)
            if leaf.eax != 0 && leaf.ebx != 0 {
                tscKHz = UInt64(leaf.eax)
                apicKHz = UInt64(leaf.ebx)
                calibrated = false
            }
        }
        if tscKHz == 0 {
            calibrate()
            calibrated = true
        }
        put(calibrated ? "timing: calibrated tsc=" : "timing: cpuid tsc=")
        put(tscKHz)
        put("kHz apic=")
        put(apicKHz)
        putLine("kHz")
    }

    static let pitHz: UInt64 = 1_193_182

    /// PIT channel 2 counts `latch` ticks (~10 ms) in mode 0; the TSC and the APIC timer
    /// (one-shot, masked, divide 1, from 0xffffffff) are read at both ends.
    static func calibrate() {
        let latch: UInt64 = 11_932                  // 10 ms of 1.193182 MHz
        let port61 = gk_inb(0x61)
        gk_outb(0x61, (port61 & ~0x02) | 0x01)      // gate 2 on, speaker off
        gk_outb(0x43, 0xb0)                         // channel 2, lobyte/hibyte, mode 0, binary
        APIC.write(APIC.Register.lvtTimer, APIC.lvtMasked | Interrupts.timerVector)
        APIC.write(APIC.Register.timerDivide, 0xb)  // divide by 1
        gk_percpu_at(gk_cpu_index()).pointee.timer_mode = 0
        gk_outb(0x42, UInt8(latch & 0xff))
        gk_outb(0x42, UInt8(latch >> 8))            // counting starts
        let tsc0 = gk_rdtsc()
        APIC.write(APIC.Register.timerInitialCount, 0xffff_ffff)
        let tscApic0 = gk_rdtsc()
        var spins: UInt64 = 0
        while gk_inb(0x61) & 0x20 == 0 && spins < 50_000_000 { spins += 1 }
        let tsc1 = gk_rdtsc()
        let apicLeft = APIC.read(APIC.Register.timerCurrentCount)
        let tscApic1 = gk_rdtsc()
        gk_outb(0x61, port61)
        APIC.write(APIC.Register.timerInitialCount, 0)

        let tscDelta = max(tsc1 &- tsc0, 1)
        tscKHz = max(mulDiv(tscDelta, pitHz, latch * 1000), 1)
        let apicElapsed = UInt64(0xffff_ffff - apicLeft)
        let tscApicDelta = max((tscApic1 &- tscApic0 + tsc1 &- tscApic0) / 2, 1)
        apicKHz = max(mulDiv(apicElapsed, tscKHz, tscApicDelta), 1)
    }
}

/// What one sleep saw (all TSC values).
public struct Wake {
    /// The programmed deadline.
    public var deadline: UInt64
    /// TSC at the entry of the timer handler that ended the sleep.
    public var fired: UInt64
    /// TSC once the sleeping CPU was running again after that interrupt.
    public var woke: UInt64
    /// Timer interrupts that came before the deadline (the timer was re-armed each time).
    public var earlyFires: UInt32
    /// TSC at the earliest timer interrupt of this sleep.
    public var earliestFire: UInt64
}

/// Sleeping and timeouts on this CPU's local APIC timer (vector `Interrupts.timerVector`),
/// one-shot or TSC-deadline. Requires `Platform.setUp` (or `Interrupts.setUp`,
/// `APIC.enable`, `Timing.discover`, `Timer.setUp`).
public enum Timer {
    /// TSC-deadline mode (IA32_TSC_DEADLINE) rather than one-shot: true after `setUp` when
    /// CPUID.1:ECX[24] says it exists; guests may turn it off.
    nonisolated(unsafe) public static var useTSCDeadline = false

    /// Per-CPU fields (gk_percpu_t).
    static let firedField: UInt32 = 0
    static let fireTSCField: UInt32 = 1

    public static func setUp() {
        useTSCDeadline = APIC.hasTSCDeadline
        Interrupts.register(vector: Interrupts.timerVector) { _ in
            let t = gk_rdtsc()
            let cpu = gk_cpu_index()
            gk_store64(gk_percpu_field(cpu, Timer.fireTSCField), t)
            gk_store64(gk_percpu_field(cpu, Timer.firedField), 1)
        }
    }

    /// Arms this CPU's timer for the TSC value `deadline` (fires at once if it has passed) and
    /// clears the fired flag. Returns false when one-shot mode could not reach that far
    /// (about 549 s at 1 GHz), so the interrupt will come early.
    @discardableResult
    public static func arm(untilTSC deadline: UInt64) -> Bool {
        gk_store64(gk_percpu_field(gk_cpu_index(), firedField), 0)
        if useTSCDeadline {
            APIC.startDeadline(tsc: deadline)
            return true
        }
        let now = gk_rdtsc()
        let ticks = deadline > now ? Timing.apicTicks(tscTicks: deadline - now) : 1
        APIC.startOneShot(inputTicks: ticks)
        return ticks <= 0xffff_ffff << 7
    }

    /// Arms the timer `ns` nanoseconds from now; returns the deadline (TSC).
    @discardableResult
    public static func arm(afterNanoseconds ns: UInt64) -> UInt64 {
        let deadline = gk_rdtsc() &+ Timing.tscTicks(nanoseconds: ns)
        arm(untilTSC: deadline)
        return deadline
    }

    /// Whether the timer fired since it was last armed on this CPU.
    public static var hasFired: Bool { gk_load64(gk_percpu_field(gk_cpu_index(), firedField)) != 0 }

    /// Disarms this CPU's timer.
    public static func cancel() {
        if useTSCDeadline {
            gk_wrmsr(APIC.tscDeadlineMSR, 0)
        } else {
            APIC.write(APIC.Register.timerInitialCount, 0)
        }
    }

    /// Sleeps until the TSC reaches `deadline`, halted (`sti; hlt`) between interrupts; never
    /// returns before the deadline (an early timer interrupt re-arms it). Other interrupts are
    /// handled meanwhile. IF is as on entry afterwards.
    public static func sleep(untilTSC deadline: UInt64) -> Wake {
        let flags = gk_irq_save()
        let cpu = gk_cpu_index()
        let fired = gk_percpu_field(cpu, firedField)
        let fireTSC = gk_percpu_field(cpu, fireTSCField)
        var wake = Wake(deadline: deadline, fired: 0, woke: 0, earlyFires: 0, earliestFire: UInt64.max)
        var reaches = arm(untilTSC: deadline)
        while true {
            if gk_load64(fired) != 0 {
                let t = gk_load64(fireTSC)
                let now = gk_rdtsc()
                if t < wake.earliestFire { wake.earliestFire = t }
                if now >= deadline {
                    wake.fired = t
                    wake.woke = now
                    break
                }
                if reaches { wake.earlyFires += 1 }
                reaches = arm(untilTSC: deadline)
                continue
            }
            gk_sti_hlt()
            gk_cli()
        }
        gk_irq_restore(flags)
        return wake
    }

    @discardableResult
    public static func sleep(nanoseconds ns: UInt64) -> Wake {
        sleep(untilTSC: gk_rdtsc() &+ Timing.tscTicks(nanoseconds: ns))
    }

    /// Halts until `condition()` holds or `ns` nanoseconds pass (checked after every
    /// interrupt, with interrupts off). Returns whether the condition held. Uses the timer.
    public static func wait(nanoseconds ns: UInt64, until condition: () -> Bool) -> Bool {
        let flags = gk_irq_save()
        let deadline = arm(afterNanoseconds: ns)
        var ok = condition()
        while !ok {
            if hasFired {
                if gk_rdtsc() >= deadline { break }
                arm(untilTSC: deadline)
            }
            gk_sti_hlt()
            gk_cli()
            ok = condition()
        }
        cancel()
        gk_irq_restore(flags)
        return ok
    }
}

/// Sleeps `ns` nanoseconds on the APIC timer with `hlt` (see `Timer.sleep`).
public func sleep(nanoseconds ns: UInt64) { Timer.sleep(nanoseconds: ns) }

/// Interrupts, the local APIC, timing and the sleep timer on the BSP, in one call.
public enum Platform {
    public static func setUp() {
        Interrupts.setUp()
        APIC.enable()
        Timing.discover()
        Timer.setUp()
    }
}
