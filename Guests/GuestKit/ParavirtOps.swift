// The paravirt-ops table, after Linux's `pv_ops`: the operations whose best implementation
// depends on whether the guest runs on emulated hardware or cooperates with Visor. Filled once
// at boot by `Paravirt.setUp()`:
//
//   native (UART, local APIC timer, hlt, INIT/SIPI) — no Visor signature or hypercall leaf, or
//          `pv=off` on the command line;
//   pv     (hypercalls and events) — Visor found, unless `pv=off`; `pv=on` insists and ends the
//          guest (status 0x7d) with the reason when PV is not available.
//
// Guests that never call `Paravirt.setUp()` are unaffected (the console stays on the UART).
//
// Interrupt state is per mode: native = RFLAGS.IF (cli/sti); pv = this vCPU's upcall_mask
// (IF stays 1 outside handlers). After `setUp` interrupts are off in either mode (ops level).
// `halt` must be called with them off and returns with them off after at least one interrupt
// or event was handled (native `sti; hlt; cli`; pv `sched_op(block)`, which clears the mask
// itself so nothing is lost, then any pending events are dispatched).

/// A struct, not an enum: a public enum would bring Hashable (and the hasher's seed, which
/// needs `arc4random_buf`) into every guest.
public struct ParavirtMode: Equatable {
    public let rawValue: UInt8
    public static let native = ParavirtMode(rawValue: 0)
    public static let pv = ParavirtMode(rawValue: 1)
}

/// One table of C-ABI function pointers; see the top of this file.
public struct ParavirtOps {
    /// Writes bytes to the console (native: COM1 byte by byte; pv: `console_io(write)`, up
    /// to 4 KiB per hypercall).
    public var consoleWrite: @convention(c) (UnsafePointer<UInt8>, Int) -> Void
    /// Reads up to `count` bytes of console input without waiting; returns how many.
    public var consoleRead: @convention(c) (UnsafeMutablePointer<UInt8>, Int) -> Int
    /// Monotonic time in ns (native: TSC since reset scaled by `Timing`; pv: pvclock system time).
    public var clockNow: @convention(c) () -> UInt64
    /// Arms this CPU's one-shot timer for an absolute `clockNow` value (replaces any earlier).
    public var timerArm: @convention(c) (UInt64) -> Void
    public var timerDisarm: @convention(c) () -> Void
    /// Waits for an interrupt or event; see the top of this file.
    public var halt: @convention(c) () -> Void
    public var irqDisable: @convention(c) () -> Void
    public var irqEnable: @convention(c) () -> Void
    /// Disables and returns the previous state for `irqRestore`.
    public var irqSave: @convention(c) () -> UInt64
    public var irqRestore: @convention(c) (UInt64) -> Void
    /// Starts the other CPUs (native: INIT/SIPI to all; pv: `vcpu_op(initialise, up)` for vCPU
    /// 1, 2, ... until one fails or `expected` are up); each runs `entry(index)`. Returns the
    /// number online, the BSP included.
    public var startCPUs: @convention(c) (UInt32, APEntry) -> UInt32
    /// Powers off (status 0) or ends the guest with a failure status; see `GuestKit.exit`.
    public var shutdown: @convention(c) (UInt32) -> Void
}

/// A hook run when this CPU's timer fires, with the interrupt frame (nil when the event was
/// dispatched in software, i.e. from kernel context inside `halt`).
public typealias TimerHook = @convention(c) (UnsafeMutablePointer<UInt64>?) -> Void

public enum Paravirt {
    nonisolated(unsafe) public private(set) static var mode: ParavirtMode = .native
    nonisolated(unsafe) public private(set) static var ops: ParavirtOps = nativeOps
    /// Why this mode was chosen (printed by guests at boot).
    nonisolated(unsafe) public private(set) static var reason: StaticString = "not set up"
    /// Called after the timer fired (both modes). The native one is called after the APIC EOI,
    /// so it may switch stacks.
    nonisolated(unsafe) public static var timerHook: TimerHook? = nil
    nonisolated(unsafe) static var ready = false

    public static var isPV: Bool { mode == .pv }

    /// Exit status when `pv=on` was asked for and PV is not available.
    public static let unavailableStatus: UInt32 = 0x7d

    /// Chooses and fills the table (once), sets up interrupts, timing and the timer for that
    /// mode on the BSP, and returns the mode. Reads `pv=on|off` and `pv_eoi=on` from the command line.
    @discardableResult
    public static func setUp() -> ParavirtMode {
        if ready { return mode }
        ready = true
        let request = GuestKit.multiboot?.argument("pv")
        let off = request.map { $0.utf8.elementsEqual("off".utf8) } ?? false
        let force = request.map { $0.utf8.elementsEqual("on".utf8) } ?? false
        PV.upcallNeedsEOI = GuestKit.multiboot?.argument("pv_eoi").map { $0.utf8.elementsEqual("on".utf8) } ?? false
        Interrupts.setUp()
        let found = PV.detect()
        if off {
            reason = "pv=off on the command line"
        } else if !found {
            if force {
                put("paravirt: pv=on but PV is not available: ")
                putLine(PV.unavailableReason)
                GuestKit.exit(unavailableStatus)
            }
            reason = PV.unavailableReason
        } else if PV.install() {
            mode = .pv
            reason = force ? "pv=on and Visor's hypercall page installed" : "Visor's hypercall page installed"
        } else {
            if force {
                putLine("paravirt: pv=on but installing the hypercall page failed")
                GuestKit.exit(unavailableStatus)
            }
            reason = "installing the hypercall page failed"
        }
        if mode == .pv {
            Timing.discover()
            ops = pvOps
            Console.usePV = true
        } else {
            APIC.enable()
            Timing.discover()
            Timer.setUp()
            Interrupts.register(vector: Interrupts.timerVector, handler: nativeTimerHandler)
            ops = nativeOps
        }
        return mode
    }

    /// "pv" or "native".
    public static var modeName: StaticString { mode == .pv ? "pv" : "native" }

    /// Whether this CPU's timer fired since it was last armed.
    public static var timerFired: Bool { gk_load64(gk_percpu_field(gk_cpu_index(), Timer.firedField)) != 0 }

    /// Sleeps until `clockNow() >= deadline`, halting between interrupts or events. Interrupts
    /// (ops level) are off on return, as they must be on entry.
    public static func sleep(untilNanoseconds deadline: UInt64) {
        let fired = gk_percpu_field(gk_cpu_index(), Timer.firedField)
        gk_store64(fired, 0)
        ops.timerArm(deadline)
        while true {
            if gk_load64(fired) != 0 {
                if ops.clockNow() >= deadline { break }
                gk_store64(fired, 0)
                ops.timerArm(deadline)
                continue
            }
            ops.halt()
        }
    }

    public static func sleep(nanoseconds ns: UInt64) { sleep(untilNanoseconds: ops.clockNow() &+ ns) }

    /// Binds console input (pv: VIRQ_CONSOLE to `handler`). Native input is polled with
    /// `consoleRead`; returns false there.
    @discardableResult
    public static func enableConsoleInput(_ handler: PortHandler) -> Bool {
        guard mode == .pv else { return false }
        return PV.bind(virq: VIRQ.console, handler: handler) > 0
    }
}

// MARK: Native operations

let nativeTimerHandler: InterruptHandler = { raw in
    let cpu = gk_cpu_index()
    gk_store64(gk_percpu_field(cpu, Timer.fireTSCField), gk_rdtsc())
    gk_store64(gk_percpu_field(cpu, Timer.firedField), 1)
    if let hook = Paravirt.timerHook {
        APIC.eoi()                  // isr.S sends another after we return: harmless, ISR is empty
        hook(raw)
    }
}

let nativeOps = ParavirtOps(
    consoleWrite: { bytes, count in
        for i in 0..<count { Console.writeUART(byte: bytes[i]) }
    },
    consoleRead: { bytes, count in
        var n = 0
        while n < count && Console.uartHasInput { bytes[n] = Console.readUART(); n += 1 }
        return n
    },
    clockNow: { Timing.nanoseconds(tscTicks: gk_rdtsc()) },
    timerArm: { ns in Timer.arm(untilTSC: Timing.tscTicks(nanoseconds: ns)) },
    timerDisarm: { Timer.cancel() },
    halt: { gk_sti_hlt(); gk_cli() },
    irqDisable: { gk_cli() },
    irqEnable: { gk_sti() },
    irqSave: { gk_irq_save() },
    irqRestore: { flags in gk_irq_restore(flags) },
    startCPUs: { expected, entry in
        UInt32(SMP.start(expected: expected > 0 ? Int(expected) : nil, entry: entry))
    },
    shutdown: { status in GuestKit.exitNative(status) }
)

// MARK: PV operations

let pvOps = ParavirtOps(
    consoleWrite: { bytes, count in _ = PV.consoleWrite(bytes, count: count) },
    consoleRead: { bytes, count in
        let r = PV.consoleRead(bytes, count: count)
        return r > 0 ? Int(r) : 0
    },
    clockNow: { PV.hasClock ? PV.systemTime() : Timing.nanoseconds(tscTicks: gk_rdtsc()) },
    timerArm: { ns in _ = PV.setTimer(absolute: max(ns, 1)) },
    timerDisarm: { _ = PV.setTimer(absolute: 0) },
    halt: {
        // Masked first, so nothing is consumed between the caller's check and the block; IF on
        // during the block, so Visor may deliver the upcall there whichever way it wakes us.
        PV.setUpcallMask(true)
        let flags = gk_read_rflags()
        gk_sti()
        _ = PV.block()                              // clears upcall_mask; returns once an event is pending
        if flags & 0x200 == 0 { gk_cli() }
        if PV.upcallPending { PV.dispatchInSoftware() }
        PV.setUpcallMask(true)
    },
    irqDisable: { PV.setUpcallMask(true) },
    irqEnable: { PV.enableEvents() },
    irqSave: {
        let was = PV.upcallMasked
        PV.setUpcallMask(true)
        return was ? 1 : 0
    },
    irqRestore: { saved in if saved == 0 { PV.enableEvents() } },
    startCPUs: { expected, entry in
        SMP.apEntry = entry
        gk_percpu_at(0).pointee.online = 1
        let limit = expected > 0 ? min(expected, UInt32(GK_MAX_CPUS)) : UInt32(GK_MAX_CPUS)
        var started: UInt32 = 1
        var index: UInt32 = 1
        while index < limit {
            if PV.startVCPU(index) < 0 { break }
            started += 1
            index += 1
        }
        // Wait (up to 1 s) for the started vCPUs to report in.
        let deadline = Paravirt.ops.clockNow() &+ 1_000_000_000
        while UInt32(SMP.onlineCount) < started && Paravirt.ops.clockNow() < deadline {
            Paravirt.sleep(nanoseconds: 1_000_000)
        }
        return UInt32(SMP.onlineCount)
    },
    shutdown: { status in
        Console.flush()
        if status == 0 && gk_cpl() == 0 { _ = PV.shutdown(reason: ShutdownArgument.poweroff) }
        GuestKit.exitNative(status)
    }
)
