// A local APIC in xAPIC mode (after the Intel SDM, volume 3, chapter "Advanced Programmable
// Interrupt Controller"): the 4 KiB register page at 0xfee00000, interrupt acceptance and
// priority, EOI, the timer (one-shot, periodic, TSC-deadline) and the ICR, as a pure state
// machine. One instance per vCPU.
//
// The guest reaches it with `read(offset:size:)` / `write(offset:size:value:)` at offsets into
// the page; the runtime delivers interrupts with `acceptInterrupt(vector:levelTriggered:)`,
// takes one for the vCPU with `pendingVector()` / `acknowledge()`, forwards WRMSR/RDMSR of
// IA32_TSC_DEADLINE to `writeTSCDeadline(_:timeStampCounter:)` / `tscDeadline`, routes the IPIs handed to its
// `IPISink` and calls `advance()` when a host timer armed from `nextEventTime(after:)` fires.
// The `InterruptLine` is the core's INTR: high while `pendingVector()` is not `nil`.
//
// Time is injected through a `TimeSource` (nanoseconds). The timer counts at
// `timerFrequency / divide` (1 GHz by default, one count per nanosecond before division); the
// guest's TSC ticks at `tscFrequency` (1 GHz by default, as the interp engine's TSC); a deadline
// is turned into a time on the virtual clock when it is written, from the TSC value the caller
// reads at that moment (or, without one, taking the TSC as the virtual clock scaled from 0).
//
// The bootstrap processor's APIC comes out of reset with LINT0 in ExtINT mode ("virtual wire"),
// as firmware leaves it, so the 8259 PIC reaches that CPU until the guest reprograms LINT0.
//
// Hostile accesses never trap: any offset and size reads and writes. A read takes the bytes of
// the 32-bit registers that fall in the access (the other 12 bytes of each 16-byte slot read
// 0); a write is honoured only as a 4-byte access at the start of a slot, as on hardware.
// Reading or writing a slot with no register sets ESR "illegal register address".
//
// Simplifications:
// - Every ICR value decodes (`InterprocessorInterrupt(icr:source:)` is total); NMI, INIT and
//   start-up IPIs go to the `IPISink` whatever their vector, and bypass IRR: the runtime hands
//   an NMI to the target processor's NMI input, which the engine blocks until IRET.
// - Lowest-priority delivery is sent as such; the runtime may treat it as fixed. Delivery
//   status always reads idle; the arbitration priority (APR) and remote read (RRD) read 0.
// - Fixed interrupts arriving while the APIC is software-disabled are dropped (as KVM does).
// - A divide configuration written while the timer runs takes effect at the next write of the
//   initial count.
// - When the runtime is late, several periodic expiries give one interrupt.
// - A periodic timer fires at most every `minimumPeriodNanoseconds` (100 µs, the floor Xen puts
//   on a guest's periodic timers; KVM's is 200 µs): a guest asking for a shorter period (count 1,
//   divide 1 is 1 ns at 1 GHz) gets that one instead, so it cannot make its vCPU take a timer
//   exit every few nanoseconds. The current-count register still counts at the programmed rate.
//   One-shot and TSC-deadline timers are not limited: each one the guest arms costs it an exit.
// - An EOI of a level-triggered vector (its TMR bit set) clears the TMR bit and is broadcast to
//   the `EOIBroadcastSink` (the I/O APIC); no directed EOI (version bit 24 clear, so SVR bit 12
//   cannot suppress the broadcast), no x2APIC, no LINT0/LINT1 input pins (the runtime reads their LVTs).

/// One inter-processor interrupt as the ICR encodes it, for the runtime to route.
public struct InterprocessorInterrupt: Sendable, Equatable {
    /// ICR bits 10-8.
    public enum DeliveryMode: UInt8, Sendable {
        case fixed = 0
        case lowestPriority = 1
        case smi = 2
        case reserved3 = 3
        case nmi = 4
        /// INIT (an INIT level de-assert when `assert` is false and the trigger is level).
        case initialization = 5
        /// Start-up IPI (SIPI): the target starts at `vector << 12` in real mode.
        case startup = 6
        case reserved7 = 7

        /// The mode ICR bits 10-8 encode: every one of the eight values is a case.
        public init(bits: UInt8) {
            switch bits & 7 {
            case 0: self = .fixed
            case 1: self = .lowestPriority
            case 2: self = .smi
            case 3: self = .reserved3
            case 4: self = .nmi
            case 5: self = .initialization
            case 6: self = .startup
            default: self = .reserved7
            }
        }
    }

    /// ICR bits 19-18.
    public enum Shorthand: UInt8, Sendable {
        case none = 0
        case selfOnly = 1
        case allIncludingSelf = 2
        case allExcludingSelf = 3

        /// The shorthand ICR bits 19-18 encode: every one of the four values is a case.
        public init(bits: UInt8) {
            switch bits & 3 {
            case 0: self = .none
            case 1: self = .selfOnly
            case 2: self = .allIncludingSelf
            default: self = .allExcludingSelf
            }
        }
    }

    public var vector: UInt8
    public var deliveryMode: DeliveryMode
    /// Destination mode (ICR bit 11): logical when `true`, physical otherwise.
    public var logicalDestination: Bool
    /// Level (ICR bit 14): assert when `true`, de-assert otherwise.
    public var assert: Bool
    /// Trigger mode (ICR bit 15): level when `true`, edge otherwise.
    public var levelTriggered: Bool
    public var shorthand: Shorthand
    /// The destination field (ICR bits 63-56): an APIC ID, or a logical destination.
    public var destination: UInt8
    /// The APIC ID of the sender.
    public var source: UInt8

    /// Decodes a 64-bit ICR value written by the APIC with ID `source`.
    public init(icr: UInt64, source: UInt8) {
        vector = UInt8(truncatingIfNeeded: icr)
        deliveryMode = DeliveryMode(bits: UInt8(truncatingIfNeeded: icr >> 8))
        logicalDestination = icr & (1 << 11) != 0
        assert = icr & (1 << 14) != 0
        levelTriggered = icr & (1 << 15) != 0
        shorthand = Shorthand(bits: UInt8(truncatingIfNeeded: icr >> 18))
        destination = UInt8(truncatingIfNeeded: icr >> 56)
        self.source = source
    }
}

/// A local APIC's register page and its interrupt, timer and IPI logic.
///
/// Not thread-safe: the owner (normally the vCPU's thread) serialises guest accesses,
/// interrupt delivery and `advance()`.
public final class LocalAPIC {
    /// The shortest period of the periodic timer, in virtual nanoseconds (see the header).
    public static let minimumPeriodNanoseconds: UInt64 = 100_000

    /// The architectural default physical base of the register page.
    public static let defaultBase: UInt64 = 0xfee0_0000
    /// Size of the register page in bytes.
    public static let pageSize: UInt64 = 0x1000
    /// The version register: an integrated APIC (0x14) with six LVT entries (max LVT 5).
    public static let version: UInt32 = 0x0005_0014

    /// Register offsets in the page, after the SDM's names.
    public enum Register {
        public static let id: UInt64 = 0x20
        public static let version: UInt64 = 0x30
        public static let tpr: UInt64 = 0x80
        public static let apr: UInt64 = 0x90
        public static let ppr: UInt64 = 0xa0
        public static let eoi: UInt64 = 0xb0
        public static let rrd: UInt64 = 0xc0
        public static let ldr: UInt64 = 0xd0
        public static let dfr: UInt64 = 0xe0
        public static let svr: UInt64 = 0xf0
        public static let isr: UInt64 = 0x100
        public static let tmr: UInt64 = 0x180
        public static let irr: UInt64 = 0x200
        public static let esr: UInt64 = 0x280
        public static let icrLow: UInt64 = 0x300
        public static let icrHigh: UInt64 = 0x310
        public static let lvtTimer: UInt64 = 0x320
        public static let lvtThermal: UInt64 = 0x330
        public static let lvtPerformance: UInt64 = 0x340
        public static let lvtLINT0: UInt64 = 0x350
        public static let lvtLINT1: UInt64 = 0x360
        public static let lvtError: UInt64 = 0x370
        public static let timerInitialCount: UInt64 = 0x380
        public static let timerCurrentCount: UInt64 = 0x390
        public static let timerDivideConfiguration: UInt64 = 0x3e0
    }

    /// Spurious-interrupt vector register bits.
    public enum SVR {
        public static let vectorMask: UInt32 = 0xff
        public static let apicSoftwareEnable: UInt32 = 1 << 8
        public static let focusProcessorChecking: UInt32 = 1 << 9
    }

    /// Local vector table entry bits.
    public enum LVT {
        public static let vectorMask: UInt32 = 0xff
        public static let mask: UInt32 = 1 << 16
        public static let timerModeShift: UInt32 = 17
        public static let oneShot: UInt32 = 0
        public static let periodic: UInt32 = 1 << 17
        public static let tscDeadline: UInt32 = 2 << 17
        /// Delivery mode bits 10-8 of LINT0/LINT1.
        public static let deliveryModeMask: UInt32 = 7 << 8
        /// ExtINT delivery: the interrupt and its vector come from an external 8259.
        public static let extINT: UInt32 = 7 << 8
        /// LINT0 as firmware leaves it on the bootstrap processor: unmasked ExtINT.
        public static let virtualWire: UInt32 = extINT
    }

    /// Error status register bits.
    public enum ESR {
        public static let sendIllegalVector: UInt32 = 1 << 5
        public static let receiveIllegalVector: UInt32 = 1 << 6
        public static let illegalRegisterAddress: UInt32 = 1 << 7
    }

    public let clock: any TimeSource
    public let ipiSink: any IPISink
    /// Where the EOI of a level-triggered interrupt is broadcast (the I/O APIC).
    public let eoiSink: any EOIBroadcastSink
    /// The core's INTR input: high while an interrupt beats the processor priority.
    public let interruptLine: any InterruptLine
    /// The timer's input clock before division, in hertz.
    public let timerFrequency: UInt64
    /// The guest TSC's frequency, in hertz, for IA32_TSC_DEADLINE.
    public let tscFrequency: UInt64
    /// The level last driven on `interruptLine`.
    public private(set) var interruptLevel = false

    /// The APIC ID (ID register bits 31-24).
    public private(set) var id: UInt8
    private var tpr: UInt32 = 0
    private var ldr: UInt32 = 0
    private var dfr: UInt32 = 0xffff_ffff
    private var svr: UInt32 = 0xff
    private var irr = VectorBitmap()
    private var isr = VectorBitmap()
    private var tmr = VectorBitmap()
    private var esr: UInt32 = 0
    private var pendingErrors: UInt32 = 0
    private var icrLow: UInt32 = 0
    private var icrHigh: UInt32 = 0
    /// Timer, thermal, performance, LINT0, LINT1, error: offsets 0x320-0x370.
    private var lvt = [UInt32](repeating: LVT.mask, count: 6)
    private var initialCount: UInt32 = 0
    private var divideConfiguration: UInt32 = 0
    /// When the initial count was last written, and the divider then in effect.
    private var timerStart: UInt64 = 0
    private var timerDivider: UInt64 = 2
    /// Expiries handled since `timerStart`.
    private var timerExpiries: UInt64 = 0
    /// IA32_TSC_DEADLINE; 0 when disarmed.
    public private(set) var tscDeadline: UInt64 = 0
    /// When `tscDeadline` falls due on the virtual clock.
    private var deadlineTime: UInt64 = 0
    /// Whether this is the bootstrap processor's APIC (LINT0 resets to virtual-wire mode).
    public let isBootstrapProcessor: Bool

    /// A local APIC in its power-on state (software-disabled, every LVT masked) with APIC ID `id`.
    public init(
        id: UInt8, clock: any TimeSource, ipiSink: any IPISink,
        interruptLine: any InterruptLine = NoInterruptLine(),
        eoiSink: any EOIBroadcastSink = NoEOIBroadcastSink(),
        timerFrequency: UInt64 = 1_000_000_000, tscFrequency: UInt64 = 1_000_000_000,
        isBootstrapProcessor: Bool = false
    ) {
        precondition(timerFrequency > 0 && tscFrequency > 0, "an APIC clock needs a frequency")
        self.id = id
        self.isBootstrapProcessor = isBootstrapProcessor
        if isBootstrapProcessor { lvt[3] = LVT.virtualWire }
        self.clock = clock
        self.ipiSink = ipiSink
        self.eoiSink = eoiSink
        self.interruptLine = interruptLine
        self.timerFrequency = timerFrequency
        self.tscFrequency = tscFrequency
    }

    /// The INIT reset: every register to its power-on value except the APIC ID.
    public func reset() {
        tpr = 0
        ldr = 0
        dfr = 0xffff_ffff
        svr = 0xff
        irr = VectorBitmap()
        isr = VectorBitmap()
        tmr = VectorBitmap()
        esr = 0
        pendingErrors = 0
        icrLow = 0
        icrHigh = 0
        lvt = [UInt32](repeating: LVT.mask, count: 6)
        if isBootstrapProcessor { lvt[3] = LVT.virtualWire }
        initialCount = 0
        divideConfiguration = 0
        timerExpiries = 0
        tscDeadline = 0
        updateLine()
    }

    public var isSoftwareEnabled: Bool { svr & SVR.apicSoftwareEnable != 0 }

    /// Whether an 8259's INTR reaches the core through LINT0: the entry is unmasked and in
    /// ExtINT mode. The vector then comes from the 8259's acknowledge, bypassing IRR and ISR.
    public var acceptsExternalInterrupts: Bool {
        lvt[3] & LVT.mask == 0 && lvt[3] & LVT.deliveryModeMask == LVT.extINT
    }

    // MARK: Interrupt acceptance

    /// Accepts a fixed interrupt from the I/O APIC, an IPI or a local source into IRR (TMR
    /// records the trigger mode). Vectors 0-15 are illegal: they are refused and set ESR
    /// "receive illegal vector"; so is everything while software-disabled. Returns whether
    /// the interrupt was accepted.
    @discardableResult
    public func acceptInterrupt(vector: UInt8, levelTriggered: Bool = false) -> Bool {
        guard vector >= 16 else {
            recordError(ESR.receiveIllegalVector)
            return false
        }
        guard isSoftwareEnabled else { return false }
        irr.insert(vector)
        if levelTriggered { tmr.insert(vector) } else { tmr.remove(vector) }
        updateLine()
        return true
    }

    /// The processor priority: TPR, or the class of the highest in-service vector if higher.
    public var processorPriority: UInt8 {
        let task = UInt8(truncatingIfNeeded: tpr)
        let serving = isr.highest ?? 0
        return task >> 4 >= serving >> 4 ? task : serving & 0xf0
    }

    /// The highest-priority requested vector if its class beats the processor priority.
    public func pendingVector() -> UInt8? {
        guard let vector = irr.highest, vector >> 4 > processorPriority >> 4 else { return nil }
        return vector
    }

    /// The core takes an interrupt: the pending vector moves from IRR to ISR and is returned.
    /// With nothing pending, the spurious vector (SVR bits 7-0) is returned and nothing moves.
    public func acknowledge() -> UInt8 {
        guard let vector = pendingVector() else { return UInt8(truncatingIfNeeded: svr) }
        irr.remove(vector)
        isr.insert(vector)
        updateLine()
        return vector
    }

    /// Whether an IPI addressed as `ipi` is for this APIC (shorthand, then physical or
    /// logical destination; 0xff is a broadcast either way). Logical destinations follow the
    /// flat model when DFR bits 31-28 are all ones and the cluster model otherwise.
    public func isTarget(of ipi: InterprocessorInterrupt) -> Bool {
        switch ipi.shorthand {
        case .selfOnly: return ipi.source == id
        case .allIncludingSelf: return true
        case .allExcludingSelf: return ipi.source != id
        case .none: break
        }
        if ipi.destination == 0xff { return true }
        guard ipi.logicalDestination else { return ipi.destination == id }
        let logicalID = UInt8(truncatingIfNeeded: ldr >> 24)
        if dfr >> 28 == 0xf { return logicalID & ipi.destination != 0 }
        return logicalID >> 4 == ipi.destination >> 4 && logicalID & ipi.destination & 0xf != 0
    }

    // MARK: Timer

    /// Handles timer expiries up to the time source's present. Call it when a host timer armed
    /// from `nextEventTime(after:)` fires.
    public func advance() {
        synchronizeTimer(now: clock.nanoseconds)
    }

    /// When the timer next needs `advance()`, at or after `nanoseconds`; `nil` while it is
    /// disarmed or its LVT entry is masked. Ask again after every guest access.
    public func nextEventTime(after nanoseconds: UInt64) -> UInt64? {
        guard lvt[0] & LVT.mask == 0 else { return nil }
        let expiry: UInt64
        switch timerMode {
        case LVT.tscDeadline:
            guard tscDeadline != 0 else { return nil }
            expiry = deadlineTime
        case LVT.periodic:
            guard initialCount != 0 else { return nil }
            expiry = expiryTime(timerExpiries + 1, every: periodTicks)
        default:
            guard initialCount != 0, timerExpiries == 0 else { return nil }
            expiry = expiryTime(1, every: UInt64(initialCount))
        }
        return max(expiry, nanoseconds)
    }

    /// WRMSR IA32_TSC_DEADLINE: arms the timer for TSC value `deadline` (0 disarms). Ignored
    /// unless the LVT timer is in TSC-deadline mode. A deadline already passed fires at once.
    /// `timeStampCounter` is the guest's TSC now; without it the TSC is taken as the virtual
    /// clock scaled to `tscFrequency` from 0.
    public func writeTSCDeadline(_ deadline: UInt64, timeStampCounter: UInt64? = nil) {
        guard timerMode == LVT.tscDeadline else { return }
        let now = clock.nanoseconds
        tscDeadline = deadline
        if let current = timeStampCounter {
            let ahead = deadline > current ? deadline - current : 0
            let (time, late) = now.addingReportingOverflow(
                scale(ahead, by: nanosecondsPerSecond, over: tscFrequency, roundingUp: true))
            deadlineTime = late ? .max : time
        } else {
            deadlineTime = scale(deadline, by: nanosecondsPerSecond, over: tscFrequency, roundingUp: true)
        }
        synchronizeTimer(now: now)
    }

    /// The timer's current count at virtual time `now`.
    private func currentCount(now: UInt64) -> UInt32 {
        guard initialCount != 0, timerMode != LVT.tscDeadline else { return 0 }
        let elapsed = timerTicks(since: timerStart, now: now)
        let count = UInt64(initialCount)
        if timerMode == LVT.periodic { return UInt32(count - elapsed % count) }
        return elapsed >= count ? 0 : UInt32(count - elapsed)
    }

    private var timerMode: UInt32 { lvt[0] & (3 << LVT.timerModeShift) }

    private var divider: UInt64 {
        let code = (divideConfiguration >> 1) & 4 | divideConfiguration & 3
        return code == 7 ? 1 : 2 << UInt64(code)
    }

    private func timerTicks(since start: UInt64, now: UInt64) -> UInt64 {
        guard now > start else { return 0 }
        return scale(now - start, by: timerFrequency, over: nanosecondsPerSecond * timerDivider)
    }

    /// Timer ticks between two periodic expiries: the initial count, or the minimum period's
    /// worth at the divider in effect if that is longer.
    private var periodTicks: UInt64 {
        let minimum = scale(Self.minimumPeriodNanoseconds, by: timerFrequency, over: nanosecondsPerSecond * timerDivider,
                            roundingUp: true)
        return max(UInt64(initialCount), minimum)
    }

    /// The virtual time of the `n`th expiry since `timerStart`, one every `period` ticks.
    private func expiryTime(_ n: UInt64, every period: UInt64) -> UInt64 {
        let (ticks, overflow) = n.multipliedReportingOverflow(by: period)
        guard !overflow else { return .max }
        let span = scale(
            ticks, by: nanosecondsPerSecond * timerDivider, over: timerFrequency, roundingUp: true)
        let (time, late) = timerStart.addingReportingOverflow(span)
        return late ? .max : time
    }

    private func synchronizeTimer(now: UInt64) {
        switch timerMode {
        case LVT.tscDeadline:
            guard tscDeadline != 0, now >= deadlineTime else { return }
            tscDeadline = 0
            fireTimer()
        case LVT.periodic:
            guard initialCount != 0 else { return }
            let expiries = timerTicks(since: timerStart, now: now) / periodTicks
            guard expiries > timerExpiries else { return }
            timerExpiries = expiries
            fireTimer()
        default:
            guard initialCount != 0, timerExpiries == 0,
                timerTicks(since: timerStart, now: now) >= UInt64(initialCount)
            else { return }
            timerExpiries = 1
            fireTimer()
        }
    }

    private func fireTimer() {
        let entry = lvt[0]
        guard entry & LVT.mask == 0 else { return }
        acceptInterrupt(vector: UInt8(truncatingIfNeeded: entry))
    }

    // MARK: Guest side (MMIO)

    /// Reads `size` bytes (any size; 8 at most carry data) at `offset` into the register page.
    public func read(offset: UInt64, size: UInt8) -> UInt64 {
        let now = clock.nanoseconds
        synchronizeTimer(now: now)
        var value: UInt64 = 0
        for i in 0..<UInt64(min(size, 8)) {
            let (address, overflow) = offset.addingReportingOverflow(i)
            guard !overflow, address < Self.pageSize, address & 0xf < 4 else { continue }
            guard let register = readRegister(address & ~0xf, now: now) else {
                recordError(ESR.illegalRegisterAddress)
                continue
            }
            let byte = UInt64(register >> (8 * UInt32(address & 3)) & 0xff)
            value |= byte << (8 * i)
        }
        return value
    }

    /// Writes the low `size` bytes of `value` at `offset`. Only a 4-byte write at the start of a
    /// register slot reaches a register; anything else is ignored.
    public func write(offset: UInt64, size: UInt8, value: UInt64) {
        let now = clock.nanoseconds
        synchronizeTimer(now: now)
        guard size == 4, offset < Self.pageSize, offset & 0xf == 0 else { return }
        writeRegister(offset, UInt32(truncatingIfNeeded: value), now: now)
        updateLine()
    }

    private func readRegister(_ offset: UInt64, now: UInt64) -> UInt32? {
        switch offset {
        case Register.id: return UInt32(id) << 24
        case Register.version: return Self.version
        case Register.tpr: return tpr
        case Register.apr, Register.eoi, Register.rrd: return 0
        case Register.ppr: return UInt32(processorPriority)
        case Register.ldr: return ldr
        case Register.dfr: return dfr
        case Register.svr: return svr
        case Register.isr..<Register.isr + 0x80: return isr.word(Int(offset - Register.isr) >> 4)
        case Register.tmr..<Register.tmr + 0x80: return tmr.word(Int(offset - Register.tmr) >> 4)
        case Register.irr..<Register.irr + 0x80: return irr.word(Int(offset - Register.irr) >> 4)
        case Register.esr: return esr
        case Register.icrLow: return icrLow
        case Register.icrHigh: return icrHigh
        case Register.lvtTimer...Register.lvtError: return lvt[Int(offset - Register.lvtTimer) >> 4]
        case Register.timerInitialCount: return initialCount
        case Register.timerCurrentCount: return currentCount(now: now)
        case Register.timerDivideConfiguration: return divideConfiguration
        default: return nil
        }
    }

    private func writeRegister(_ offset: UInt64, _ value: UInt32, now: UInt64) {
        switch offset {
        case Register.id:
            id = UInt8(truncatingIfNeeded: value >> 24)
        case Register.tpr:
            tpr = value & 0xff
        case Register.eoi:
            endOfInterrupt()
        case Register.ldr:
            ldr = value & 0xff00_0000
        case Register.dfr:
            dfr = value | 0x0fff_ffff
        case Register.svr:
            svr = value & (SVR.vectorMask | SVR.apicSoftwareEnable | SVR.focusProcessorChecking)
            if !isSoftwareEnabled {
                for index in lvt.indices { lvt[index] |= LVT.mask }
            }
        case Register.esr:
            esr = pendingErrors
            pendingErrors = 0
        case Register.icrLow:
            icrLow = value & 0x000c_cfff
            sendIPI()
        case Register.icrHigh:
            icrHigh = value & 0xff00_0000
        case Register.lvtTimer...Register.lvtError:
            writeLVT(Int(offset - Register.lvtTimer) >> 4, value)
        case Register.timerInitialCount:
            guard timerMode != LVT.tscDeadline else { return }
            initialCount = value
            timerStart = now
            timerDivider = divider
            timerExpiries = 0
        case Register.timerDivideConfiguration:
            divideConfiguration = value & 0b1011
        case Register.version, Register.apr, Register.ppr, Register.rrd,
            Register.isr..<Register.irr + 0x80, Register.timerCurrentCount:
            return  // read-only
        default:
            recordError(ESR.illegalRegisterAddress)
        }
    }

    private func writeLVT(_ index: Int, _ value: UInt32) {
        // Writable bits of timer, thermal, performance, LINT0, LINT1 and error entries.
        let writable: [UInt32] = [0x0007_00ff, 0x0001_07ff, 0x0001_07ff, 0x0001_a7ff, 0x0001_a7ff, 0x0001_00ff]
        var entry = value & writable[index]
        if !isSoftwareEnabled { entry |= LVT.mask }
        if index == 0 && entry & (3 << LVT.timerModeShift) != timerMode {
            // Changing the timer mode disarms the timer.
            initialCount = 0
            timerExpiries = 0
            tscDeadline = 0
        }
        lvt[index] = entry
    }

    /// EOI: the highest in-service vector is done; a level-triggered one is broadcast to the I/O
    /// APICs.
    private func endOfInterrupt() {
        guard let vector = isr.highest else { return }
        isr.remove(vector)
        let levelTriggered = tmr.contains(vector)
        tmr.remove(vector)
        if levelTriggered { eoiSink.endOfInterrupt(vector: vector) }
    }

    private func sendIPI() {
        let ipi = InterprocessorInterrupt(icr: UInt64(icrHigh) << 32 | UInt64(icrLow), source: id)
        if ipi.vector < 16 && (ipi.deliveryMode == .fixed || ipi.deliveryMode == .lowestPriority) {
            recordError(ESR.sendIllegalVector)
            return
        }
        ipiSink.send(ipi)
    }

    /// Logs an error for the next ESR write and raises the error LVT's interrupt if unmasked.
    private func recordError(_ bits: UInt32) {
        pendingErrors |= bits
        let entry = lvt[5]
        let vector = UInt8(truncatingIfNeeded: entry)
        // An error vector below 16 would itself be an error: deliver nothing then.
        if entry & LVT.mask == 0 && vector >= 16 { acceptInterrupt(vector: vector) }
    }

    private func updateLine() {
        let level = pendingVector() != nil
        if level != interruptLevel {
            interruptLevel = level
            interruptLine.setLevel(level)
        }
    }
}

/// 256 bits, one per interrupt vector, as IRR, ISR and TMR hold them.
struct VectorBitmap {
    private var words = [UInt32](repeating: 0, count: 8)

    mutating func insert(_ vector: UInt8) { words[Int(vector >> 5)] |= 1 << UInt32(vector & 31) }
    mutating func remove(_ vector: UInt8) { words[Int(vector >> 5)] &= ~(1 << UInt32(vector & 31)) }
    func contains(_ vector: UInt8) -> Bool { words[Int(vector >> 5)] & (1 << UInt32(vector & 31)) != 0 }
    func word(_ index: Int) -> UInt32 { words[index] }

    var highest: UInt8? {
        for index in stride(from: 7, through: 0, by: -1) where words[index] != 0 {
            return UInt8(index * 32 + 31 - words[index].leadingZeroBitCount)
        }
        return nil
    }
}
