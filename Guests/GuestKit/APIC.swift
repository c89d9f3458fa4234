// The local APIC in xAPIC mode (MMIO at 0xfee00000; GuestKit never touches IA32_APIC_BASE or
// x2APIC). Every access is a 32-bit load or store; on Visor each one is an exit, so the
// timer code remembers the LVT mode it last programmed and writes it only when it changes.

public enum APIC {
    public static let base: UInt64 = 0xfee0_0000

    public enum Register {
        public static let id: UInt64 = 0x20
        public static let version: UInt64 = 0x30
        public static let tpr: UInt64 = 0x80
        public static let eoi: UInt64 = 0xb0
        public static let svr: UInt64 = 0xf0
        public static let esr: UInt64 = 0x280
        public static let icrLow: UInt64 = 0x300
        public static let icrHigh: UInt64 = 0x310
        public static let lvtTimer: UInt64 = 0x320
        public static let lvtLINT0: UInt64 = 0x350
        public static let lvtLINT1: UInt64 = 0x360
        public static let lvtError: UInt64 = 0x370
        public static let timerInitialCount: UInt64 = 0x380
        public static let timerCurrentCount: UInt64 = 0x390
        public static let timerDivide: UInt64 = 0x3e0
    }

    /// LVT timer modes (bits 18:17).
    enum TimerMode: UInt32 {
        case oneShot = 0
        case periodic = 0x20000
        case tscDeadline = 0x40000
    }

    public static let lvtMasked: UInt32 = 1 << 16
    /// IA32_TSC_DEADLINE.
    public static let tscDeadlineMSR: UInt32 = 0x6e0

    @inline(__always) public static func read(_ register: UInt64) -> UInt32 {
        gk_mmio_read32(base + register)
    }
    @inline(__always) public static func write(_ register: UInt64, _ value: UInt32) {
        gk_mmio_write32(base + register, value)
    }

    /// This CPU's APIC ID (ID register bits 31:24).
    public static var id: UInt32 { read(Register.id) >> 24 }

    /// CPUID.1:ECX[24]: the timer has TSC-deadline mode.
    public static var hasTSCDeadline: Bool { CPU.cpuid(1).ecx & (1 << 24) != 0 }

    /// Software-enables this CPU's APIC: TPR 0, spurious vector 0xff, LINT0 masked (no 8259
    /// virtual wire; LINT1 is left as firmware or reset set it), error LVT masked, timer
    /// masked. Records the APIC ID in this CPU's per-CPU data.
    public static func enable() {
        write(Register.tpr, 0)
        write(Register.svr, 0x100 | Interrupts.spuriousVector)
        write(Register.lvtLINT0, lvtMasked | 0x700)     // masked ExtINT
        write(Register.lvtError, lvtMasked | 0xfe)
        write(Register.lvtTimer, lvtMasked | Interrupts.timerVector)
        let cpu = gk_percpu_at(gk_cpu_index())
        cpu.pointee.apic_id = UInt64(id)
        cpu.pointee.timer_mode = 0
    }

    /// End of interrupt. isr.S sends it after every handler of vectors 32-254 already.
    @inline(__always) public static func eoi() { write(Register.eoi, 0) }

    // MARK: Timer

    /// Divide configuration encoding for a divider of 1 << shift (register bits 3, 1:0).
    static func divideCode(shift: Int) -> UInt32 {
        switch shift {
        case 0: return 0xb
        case 1: return 0x0
        case 2: return 0x1
        case 3: return 0x2
        case 4: return 0x3
        case 5: return 0x8
        case 6: return 0x9
        default: return 0xa
        }
    }

    /// Programs the LVT timer with `mode` and `vector` (unmasked) if it differs from what this
    /// CPU last wrote.
    static func setTimerMode(_ mode: TimerMode, vector: UInt32) {
        let cpu = gk_percpu_at(gk_cpu_index())
        let key = UInt64(mode.rawValue | vector) + 1
        if cpu.pointee.timer_mode != key {
            write(Register.lvtTimer, mode.rawValue | vector)
            cpu.pointee.timer_mode = key
        }
    }

    /// Stops the timer: masks the LVT and clears the count (and the deadline).
    public static func stopTimer() {
        write(Register.lvtTimer, lvtMasked | Interrupts.timerVector)
        write(Register.timerInitialCount, 0)
        gk_percpu_at(gk_cpu_index()).pointee.timer_mode = 0
    }

    /// Splits `inputTicks` (timer input clock ticks) into a divider and a 32-bit count:
    /// the smallest divider whose count fits. Returns (log2 divider, count); the count is
    /// rounded up and at least 1, and saturates at 2^32 - 1 with divider 128.
    public static func divideAndCount(inputTicks: UInt64) -> (shift: Int, count: UInt32) {
        var shift = 0
        while shift < 7 && (inputTicks + (1 << UInt64(shift)) - 1) >> UInt64(shift) > 0xffff_ffff { shift += 1 }
        let count = (inputTicks + (1 << UInt64(shift)) - 1) >> UInt64(shift)
        return (shift, UInt32(min(max(count, 1), 0xffff_ffff)))
    }

    /// One-shot: an interrupt on `vector` after `inputTicks` ticks of the timer's input clock.
    public static func startOneShot(inputTicks: UInt64, vector: UInt32 = Interrupts.timerVector) {
        let (shift, count) = divideAndCount(inputTicks: inputTicks)
        setTimerMode(.oneShot, vector: vector)
        write(Register.timerDivide, divideCode(shift: shift))
        write(Register.timerInitialCount, count)
    }

    /// Periodic: an interrupt on `vector` every `inputTicks` ticks of the input clock.
    /// Returns the period actually programmed, in input ticks (count times divider).
    @discardableResult
    public static func startPeriodic(inputTicks: UInt64, vector: UInt32) -> UInt64 {
        let (shift, count) = divideAndCount(inputTicks: inputTicks)
        setTimerMode(.periodic, vector: vector)
        write(Register.timerDivide, divideCode(shift: shift))
        write(Register.timerInitialCount, count)
        return UInt64(count) << UInt64(shift)
    }

    /// TSC-deadline: an interrupt on `vector` when the TSC reaches `tsc` (needs `hasTSCDeadline`).
    public static func startDeadline(tsc: UInt64, vector: UInt32 = Interrupts.timerVector) {
        setTimerMode(.tscDeadline, vector: vector)
        gk_wrmsr(tscDeadlineMSR, tsc)
    }

    // MARK: IPIs

    /// ICR destination shorthands (bits 19:18).
    enum Shorthand: UInt32 {
        case none = 0
        case this = 0x40000
        case allIncludingSelf = 0x80000
        case allExcludingSelf = 0xc0000
    }

    /// Writes the ICR (high word first; the low write sends), with interrupts off so a handler
    /// cannot interleave its own IPI. Waits (bounded) for the previous send to be delivered.
    public static func sendICR(low: UInt32, destination: UInt32) {
        let flags = gk_irq_save()
        var spins = 0
        while read(Register.icrLow) & (1 << 12) != 0 && spins < 1000 {
            gk_pause()
            spins += 1
        }
        write(Register.icrHigh, destination << 24)
        write(Register.icrLow, low)
        gk_irq_restore(flags)
    }

    /// A fixed, edge-triggered IPI with `vector` to the APIC with ID `apicID` (physical mode),
    /// or to a shorthand. Skips the delivery-status poll: one exit on Visor.
    static func sendIPI(vector: UInt32, to apicID: UInt32, shorthand: Shorthand = .none) {
        let flags = gk_irq_save()
        write(Register.icrHigh, apicID << 24)
        write(Register.icrLow, shorthand.rawValue | (vector & 0xff))
        gk_irq_restore(flags)
    }

    /// INIT (level assert) to every other CPU, or to one APIC ID.
    public static func sendInit(to apicID: UInt32? = nil) {
        sendICR(low: (apicID == nil ? Shorthand.allExcludingSelf.rawValue : 0) | 0x4500,
                destination: apicID ?? 0)
    }

    /// Start-up IPI: the target starts in real mode at `page << 12`.
    public static func sendStartup(page: UInt32, to apicID: UInt32? = nil) {
        sendICR(low: (apicID == nil ? Shorthand.allExcludingSelf.rawValue : 0) | 0x4600 | (page & 0xff),
                destination: apicID ?? 0)
    }
}
