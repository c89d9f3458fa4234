// The High Precision Event Timer (after the IA-PC HPET specification 1.0a) at 0xfed00000: a
// 64-bit main counter and three comparators ("timers"), as a pure state machine. Linux uses it
// as a clock source (`hpet`), as the boot-time clock event in legacy replacement mode (timer 0
// on IRQ0 in the PIT's place), and as the watchdog's reference clock.
//
// Registers (memory-mapped, 64 bits each; the guest may use 32- or 64-bit accesses):
//   0x000 GCAP_ID      capabilities: REV_ID, NUM_TIM_CAP, COUNT_SIZE_CAP, LEG_RT_CAP, VENDOR_ID,
//                      COUNTER_CLK_PERIOD (femtoseconds per tick) in bits 63-32
//   0x010 GEN_CONF     ENABLE_CNF (bit 0: the counter runs, interrupts may be raised) and
//                      LEG_RT_CNF (bit 1: legacy replacement routing)
//   0x020 GINTR_STA    Tn_INT_STS (bit n): a level-triggered timer's interrupt is active; write 1
//                      to clear
//   0x0f0 MAIN_CNT     the main counter
//   0x100 + 0x20n      Tn_CONF_CAP: Tn_INT_TYPE_CNF (1, level), Tn_INT_ENB_CNF (2),
//                      Tn_TYPE_CNF (3, periodic), Tn_PER_INT_CAP (4), Tn_SIZE_CAP (5),
//                      Tn_VAL_SET_CNF (6), Tn_32MODE_CNF (8), Tn_INT_ROUTE_CNF (13-9),
//                      Tn_FSB_EN_CNF (14), Tn_FSB_INT_DEL_CAP (15), Tn_INT_ROUTE_CAP (63-32)
//   0x108 + 0x20n      Tn_COMPARATOR
//   0x110 + 0x20n      Tn_FSB_INT_ROUTE (no FSB delivery here: reads 0, writes ignored)
//
// The counter runs at 100 MHz (COUNTER_CLK_PERIOD 10,000,000 fs, as QEMU's HPET): the period is
// an exact number of femtoseconds, so the guest's conversion from ticks to time is exact and the
// counter agrees with the TSC, the PIT, the PM timer and the APIC timer to the tick; the PC's
// 14.31818 MHz crystal has a period of 69,841,279.19 fs, which GCAP_ID could only round.
//
// Time is injected: the counter is the `TimeSource`'s virtual clock scaled to 100 MHz while
// ENABLE_CNF is set, and holds its value while it is clear. A comparator matches when the counter
// (its low 32 bits for a timer in 32-bit mode) reaches its value; `nextEventTime(after:)` says
// when the next match that raises an interrupt is due, so the runtime can arm a host timer and
// call `advance()`, as for the PIT.
//
// Interrupts: each timer drives one output, chosen as the specification says: with LEG_RT_CNF
// set, timer 0 drives ISA IRQ0 (the 8259's IRQ0, I/O APIC pin 2) and timer 1 ISA IRQ8, and the
// PIT's and the RTC's own outputs are cut off (`HPETInterruptOutput.legacyReplacementChanged`);
// otherwise (and always for timer 2) the I/O APIC pin in Tn_INT_ROUTE_CNF, one of the pins
// Tn_INT_ROUTE_CAP offers (20-23, pins no ISA device uses). An edge-triggered timer sends one
// edge per match; a level-triggered one sets its Tn_INT_STS and holds its line high until the
// guest clears the bit. Nothing is raised while ENABLE_CNF or Tn_INT_ENB_CNF is clear (a
// level-triggered timer still sets its status bit, as the specification says).
//
// Timer 0 is periodic-capable: on each match its comparator grows by the last value written to
// it. Writing a comparator in periodic mode sets that period; with Tn_VAL_SET_CNF set it also
// sets the comparator itself, and clears Tn_VAL_SET_CNF (as QEMU and most chipsets do; software
// that writes twice, as Linux does, gets the same result everywhere).
//
// Simplifications:
// - A periodic timer's period is at least `minimumPeriodTicks` (100 µs, the PIT's floor; the
//   ACPI HPET table announces it), so a guest cannot make the runtime fire every few
//   nanoseconds. Comparators read back follow the period counted.
// - When `advance()` finds that a timer matched several times since the last look (the runtime
//   was late), its line sees one edge and a periodic comparator skips to its next future match.
// - Lines are not wire-ORed: two level-triggered timers routed to the same I/O APIC pin drive it
//   in turn.
// - No FSB (MSI) delivery: Tn_FSB_INT_DEL_CAP is 0.
// - Writing MAIN_CNT while the counter runs (the specification leaves the result undefined)
//   sets it; the comparators do not see the jump as ticks passing.
// - Hostile accesses never trap: reads of any size (1-8 bytes) at any offset take the bytes of
//   the registers they cover (unknown offsets read 0); writes count only as 32-bit accesses at a
//   multiple of 4 or 64-bit accesses at a multiple of 8, the sizes the specification allows, and
//   are ignored otherwise or at unknown offsets.

import VisorCore

/// Where the HPET's timers deliver: I/O APIC pins, the two legacy ISA IRQs, and the switch that
/// cuts the PIT and the RTC off in legacy replacement mode.
public protocol HPETInterruptOutput {
    /// Drives I/O APIC input `pin` (a timer's Tn_INT_ROUTE_CNF).
    func setIOAPICPin(_ pin: Int, level: Bool)
    /// Drives ISA IRQ `irq` (0 or 8) in legacy replacement mode: the 8259's IRQ and the I/O APIC
    /// pin it reaches (IRQ0 on pin 2).
    func setLegacyIRQ(_ irq: Int, level: Bool)
    /// LEG_RT_CNF changed: while it is set the PIT's IRQ0 and the RTC's IRQ8 reach nothing.
    func legacyReplacementChanged(_ enabled: Bool)
}

/// Drops everything, for tests and machines without interrupt controllers.
public struct NoHPETInterruptOutput: HPETInterruptOutput {
    public init() {}
    public func setIOAPICPin(_ pin: Int, level: Bool) {}
    public func setLegacyIRQ(_ irq: Int, level: Bool) {}
    public func legacyReplacementChanged(_ enabled: Bool) {}
}

/// An HPET with three timers, timer 0 periodic-capable, all 64-bit.
///
/// Not thread-safe: the owner serialises guest accesses and `advance()`.
public final class HPET {
    /// Where PCs (and the ACPI HPET table) put the register block.
    public static let defaultBase: UInt64 = 0xfed0_0000
    /// Bytes of the register block the runtime decodes: room for the specification's 32 timers.
    public static let windowSize: UInt64 = 0x400
    /// The main counter's rate in hertz.
    public static let frequency: UInt64 = 100_000_000
    /// COUNTER_CLK_PERIOD: femtoseconds per tick, exactly.
    public static let periodFemtoseconds: UInt64 = 1_000_000_000_000_000 / frequency
    /// Timers (comparators).
    public static let timerCount = 3
    /// The shortest period a periodic timer counts: 100 µs (see the header).
    public static let minimumPeriodTicks: UInt64 = frequency / 10_000
    /// REV_ID: the specification's revision 1.
    public static let revision: UInt64 = 1
    /// VENDOR_ID: Intel's PCI vendor ID, as the ICH chipsets whose layout (three timers, timer 0
    /// periodic) this follows report; OSes read no meaning into it.
    public static let vendorID: UInt64 = 0x8086
    /// The I/O APIC pins each timer may be routed to (Tn_INT_ROUTE_CAP): 20-23.
    public static let routeCapability: UInt32 = 0x00f0_0000
    /// The ISA IRQs timers 0 and 1 drive in legacy replacement mode.
    public static let legacyIRQs = [0, 8]

    /// Register offsets.
    public enum Register {
        public static let capabilities: UInt64 = 0x000     // GCAP_ID
        public static let configuration: UInt64 = 0x010    // GEN_CONF
        public static let interruptStatus: UInt64 = 0x020  // GINTR_STA
        public static let mainCounter: UInt64 = 0x0f0      // MAIN_CNT
        /// Tn_CONF_CAP of timer `n`.
        public static func timerConfiguration(_ n: Int) -> UInt64 { 0x100 + 0x20 * UInt64(n) }
        /// Tn_COMPARATOR of timer `n`.
        public static func timerComparator(_ n: Int) -> UInt64 { 0x108 + 0x20 * UInt64(n) }
        /// Tn_FSB_INT_ROUTE of timer `n`.
        public static func timerFSBRoute(_ n: Int) -> UInt64 { 0x110 + 0x20 * UInt64(n) }
    }

    /// GCAP_ID bits.
    public enum Capability {
        public static let timerCountShift: UInt64 = 8        // NUM_TIM_CAP: timers - 1
        public static let counterSize64: UInt64 = 1 << 13    // COUNT_SIZE_CAP
        public static let legacyRoute: UInt64 = 1 << 15      // LEG_RT_CAP
        public static let vendorShift: UInt64 = 16
        public static let periodShift: UInt64 = 32           // COUNTER_CLK_PERIOD
    }

    /// GEN_CONF bits.
    public enum Configuration {
        public static let enable: UInt64 = 1 << 0            // ENABLE_CNF
        public static let legacyRoute: UInt64 = 1 << 1       // LEG_RT_CNF
    }

    /// Tn_CONF_CAP bits.
    public enum TimerConfiguration {
        public static let levelTriggered: UInt64 = 1 << 1    // Tn_INT_TYPE_CNF
        public static let interruptEnable: UInt64 = 1 << 2   // Tn_INT_ENB_CNF
        public static let periodic: UInt64 = 1 << 3          // Tn_TYPE_CNF
        public static let periodicCapable: UInt64 = 1 << 4   // Tn_PER_INT_CAP
        public static let size64Capable: UInt64 = 1 << 5     // Tn_SIZE_CAP
        public static let valueSet: UInt64 = 1 << 6          // Tn_VAL_SET_CNF
        public static let mode32: UInt64 = 1 << 8            // Tn_32MODE_CNF
        public static let routeShift: UInt64 = 9             // Tn_INT_ROUTE_CNF, 5 bits
        public static let routeMask: UInt64 = 0x1f << 9
        public static let fsbEnable: UInt64 = 1 << 14        // Tn_FSB_EN_CNF
        public static let fsbCapable: UInt64 = 1 << 15       // Tn_FSB_INT_DEL_CAP
        public static let routeCapabilityShift: UInt64 = 32  // Tn_INT_ROUTE_CAP
    }

    /// The low 32 bits of GCAP_ID: the ACPI HPET table's Event Timer Block ID.
    public static var eventTimerBlockID: UInt32 {
        UInt32(truncatingIfNeeded: capabilities)
    }

    static let capabilities: UInt64 = revision | UInt64(timerCount - 1) << Capability.timerCountShift
        | Capability.counterSize64 | Capability.legacyRoute | vendorID << Capability.vendorShift
        | periodFemtoseconds << Capability.periodShift

    /// Where the model reads the virtual time.
    public let clock: any TimeSource
    public let output: any HPETInterruptOutput

    /// GEN_CONF as last written (ENABLE_CNF and LEG_RT_CNF).
    public private(set) var generalConfiguration: UInt64 = 0
    /// GINTR_STA.
    public private(set) var interruptStatus: UInt64 = 0
    var timers = [HPETTimer](repeating: HPETTimer(periodicCapable: false), count: timerCount)
    /// The main counter at `syncedTick`.
    private var counter: UInt64 = 0
    /// The 100 MHz tick the counter was last brought up to.
    private var syncedTick: UInt64
    /// The output each timer drives high now (a level-triggered timer's active interrupt).
    private var heldOutputs = [HPETOutput?](repeating: nil, count: timerCount)

    /// An HPET after reset: halted at 0, legacy routing off, every timer disabled, 64-bit, edge,
    /// routed to pin 0 (not a pin it offers, so nothing until the guest routes it), comparators
    /// all ones.
    public init(clock: any TimeSource, output: any HPETInterruptOutput = NoHPETInterruptOutput()) {
        self.clock = clock
        self.output = output
        syncedTick = Self.tick(at: clock.nanoseconds)
        timers[0] = HPETTimer(periodicCapable: true)
    }

    /// The 100 MHz tick running at virtual time `nanoseconds`.
    public static func tick(at nanoseconds: UInt64) -> UInt64 {
        scale(nanoseconds, by: frequency, over: nanosecondsPerSecond)
    }

    /// The first virtual time at which tick `tick` has begun.
    public static func time(ofTick tick: UInt64) -> UInt64 {
        scale(tick, by: nanosecondsPerSecond, over: frequency, roundingUp: true)
    }

    public var isEnabled: Bool { generalConfiguration & Configuration.enable != 0 }
    public var legacyReplacement: Bool { generalConfiguration & Configuration.legacyRoute != 0 }

    /// The main counter now.
    public var mainCounter: UInt64 {
        synchronize()
        return counter
    }

    // MARK: Runtime side

    /// Brings the counter and the timers up to the time source's present, raising the interrupts
    /// of the matches since the last look. Call it when a host timer armed from
    /// `nextEventTime(after:)` fires.
    public func advance() {
        synchronize()
    }

    /// The first virtual time after `nanoseconds` at which a comparator match raises an
    /// interrupt, or `nil` if none will without a guest access.
    public func nextEventTime(after nanoseconds: UInt64) -> UInt64? {
        guard isEnabled else { return nil }
        let now = max(Self.tick(at: nanoseconds), syncedTick)
        let counterNow = counter &+ (now - syncedTick)
        var next: UInt64?
        for (index, timer) in timers.enumerated() where timer.interruptEnabled {
            // A level-triggered timer whose interrupt is still active changes nothing by matching.
            if timer.levelTriggered && interruptStatus & (1 << UInt64(index)) != 0 { continue }
            guard let ticks = timer.ticksUntilMatch(from: counterNow) else { continue }
            let (tick, overflow) = now.addingReportingOverflow(ticks)
            guard !overflow else { continue }
            let time = Self.time(ofTick: tick)
            next = min(next ?? time, time)
        }
        return next
    }

    // MARK: Guest side (MMIO)

    /// Reads `size` bytes (1-8) at `offset` into the register block: the bytes of the registers
    /// they cover (unknown registers read 0). Other sizes read 0.
    public func read(offset: UInt64, size: UInt8) -> UInt64 {
        guard (1...8).contains(size), offset < Self.windowSize else { return 0 }
        synchronize()
        let first = offset & ~7
        let shift = (offset - first) * 8
        var value = registerValue(first) >> shift
        if shift != 0 && offset - first + UInt64(size) > 8 {
            value |= registerValue(first + 8) << (64 - shift)
        }
        return size == 8 ? value : value & ((1 << (UInt64(size) * 8)) - 1)
    }

    /// Writes the low `size` bytes of `value` at `offset`: a 32-bit write at a multiple of 4 sets
    /// that half of its register, a 64-bit write at a multiple of 8 the whole register; anything
    /// else is ignored.
    public func write(offset: UInt64, size: UInt8, value: UInt64) {
        guard offset < Self.windowSize, size == 4 || size == 8, offset % UInt64(size) == 0 else { return }
        synchronize()
        let register = offset & ~7
        let mask: UInt64, bits: UInt64
        if size == 8 {
            (mask, bits) = (.max, value)
        } else {
            let shift = (offset & 4) * 8
            (mask, bits) = (0xffff_ffff << shift, (value & 0xffff_ffff) << shift)
        }
        writeRegister(register, mask: mask, bits: bits)
    }

    // MARK: Registers

    private func registerValue(_ register: UInt64) -> UInt64 {
        switch register {
        case Register.capabilities: return Self.capabilities
        case Register.configuration: return generalConfiguration
        case Register.interruptStatus: return interruptStatus
        case Register.mainCounter: return counter
        case 0x100..<(0x100 + 0x20 * UInt64(Self.timerCount)):
            let timer = timers[Int((register - 0x100) / 0x20)]
            switch register % 0x20 {
            case 0x00: return timer.configurationAndCapabilities
            case 0x08: return timer.comparator
            default: return 0  // Tn_FSB_INT_ROUTE (no FSB delivery) and the reserved quadword
            }
        default:
            return 0
        }
    }

    /// Sets the bits of `register` under `mask` to `bits` (already shifted into place).
    private func writeRegister(_ register: UInt64, mask: UInt64, bits: UInt64) {
        switch register {
        case Register.configuration:
            let wasLegacy = legacyReplacement
            let writable = Configuration.enable | Configuration.legacyRoute
            generalConfiguration = (generalConfiguration & ~mask | bits & mask) & writable
            if legacyReplacement && !wasLegacy { output.legacyReplacementChanged(true) }
            refreshOutputs(edges: [])
            if !legacyReplacement && wasLegacy { output.legacyReplacementChanged(false) }
        case Register.interruptStatus:
            interruptStatus &= ~(bits & mask)
            refreshOutputs(edges: [])
        case Register.mainCounter:
            counter = counter & ~mask | bits & mask
        case 0x100..<(0x100 + 0x20 * UInt64(Self.timerCount)):
            let index = Int((register - 0x100) / 0x20)
            switch register % 0x20 {
            case 0x00: timers[index].writeConfiguration(mask: mask, bits: bits)
            case 0x08: timers[index].writeComparator(mask: mask, bits: bits)
            default: return
            }
            refreshOutputs(edges: [])
        default:
            return
        }
    }

    // MARK: Time and interrupts

    /// Counts the ticks since the last synchronisation, matches the comparators against them and
    /// drives the outputs.
    private func synchronize() {
        let now = max(Self.tick(at: clock.nanoseconds), syncedTick)
        let elapsed = now - syncedTick
        syncedTick = now
        guard isEnabled, elapsed > 0 else { return }
        var edges: [Int] = []
        for index in timers.indices where timers[index].match(from: counter, elapsed: elapsed) {
            if timers[index].levelTriggered {
                interruptStatus |= 1 << UInt64(index)
            } else {
                edges.append(index)
            }
        }
        counter &+= elapsed
        refreshOutputs(edges: edges)
    }

    /// Where timer `index`'s interrupt goes now.
    private func destination(of index: Int) -> HPETOutput? {
        if legacyReplacement && Self.legacyIRQs.indices.contains(index) { return .legacyIRQ(Self.legacyIRQs[index]) }
        return timers[index].routedPin.map { .ioapicPin($0) }
    }

    /// Drives every timer's output: the level of level-triggered timers (moving a held line when
    /// its routing changed), and one edge for each edge-triggered timer in `edges`.
    private func refreshOutputs(edges: [Int]) {
        for index in timers.indices {
            let timer = timers[index]
            let raising = isEnabled && timer.interruptEnabled
            let target = destination(of: index)
            let held = raising && timer.levelTriggered && interruptStatus & (1 << UInt64(index)) != 0 ? target : nil
            if heldOutputs[index] != held {
                if let old = heldOutputs[index] { drive(old, false) }
                if let held { drive(held, true) }
                heldOutputs[index] = held
            }
            if raising, !timer.levelTriggered, edges.contains(index), let target {
                drive(target, true)
                drive(target, false)
            }
        }
    }

    private func drive(_ target: HPETOutput, _ level: Bool) {
        switch target {
        case .ioapicPin(let pin): output.setIOAPICPin(pin, level: level)
        case .legacyIRQ(let irq): output.setLegacyIRQ(irq, level: level)
        }
    }
}

/// Where one timer's interrupt goes.
enum HPETOutput: Equatable {
    case ioapicPin(Int)
    case legacyIRQ(Int)
}

/// One HPET timer: its configuration, comparator and period.
struct HPETTimer {
    typealias Bit = HPET.TimerConfiguration

    let periodicCapable: Bool
    /// The writable bits of Tn_CONF_CAP.
    var configuration: UInt64 = 0
    /// Tn_COMPARATOR (32 bits wide in 32-bit mode).
    var comparator: UInt64 = .max
    /// The last value written to the comparator: a periodic timer's increment.
    var period: UInt64 = 0

    init(periodicCapable: Bool) { self.periodicCapable = periodicCapable }

    var levelTriggered: Bool { configuration & Bit.levelTriggered != 0 }
    var interruptEnabled: Bool { configuration & Bit.interruptEnable != 0 }
    var periodic: Bool { configuration & Bit.periodic != 0 }
    var mode32: Bool { configuration & Bit.mode32 != 0 }
    /// The bits the comparator has: 32 in 32-bit mode, else 64.
    var width: UInt64 { mode32 ? 0xffff_ffff : .max }

    /// The I/O APIC pin Tn_INT_ROUTE_CNF selects, when Tn_INT_ROUTE_CAP offers it.
    var routedPin: Int? {
        let pin = Int((configuration & Bit.routeMask) >> Bit.routeShift)
        return HPET.routeCapability & (1 << UInt32(pin)) != 0 ? pin : nil
    }

    var configurationAndCapabilities: UInt64 {
        configuration | (periodicCapable ? Bit.periodicCapable : 0) | Bit.size64Capable
            | UInt64(HPET.routeCapability) << Bit.routeCapabilityShift
    }

    mutating func writeConfiguration(mask: UInt64, bits: UInt64) {
        var writable = Bit.levelTriggered | Bit.interruptEnable | Bit.valueSet | Bit.mode32
        if periodicCapable { writable |= Bit.periodic }
        let proposed = configuration & ~mask | bits & mask
        var next = proposed & writable
        // A route the timer does not offer is not taken: the old one reads back (the
        // specification's way of telling software which values are supported).
        let pin = (proposed & Bit.routeMask) >> Bit.routeShift
        next |= HPET.routeCapability & (1 << UInt32(pin)) != 0 ? proposed & Bit.routeMask : configuration & Bit.routeMask
        configuration = next
        if mode32 {
            comparator &= 0xffff_ffff
            period &= 0xffff_ffff
        }
    }

    /// A write of the comparator's bits under `mask`: the comparator of a one-shot timer; the
    /// period of a periodic one, and its comparator too while Tn_VAL_SET_CNF is set.
    mutating func writeComparator(mask: UInt64, bits: UInt64) {
        let width = self.width
        period = (period & ~mask | bits & mask) & width
        if !periodic || configuration & Bit.valueSet != 0 {
            comparator = (comparator & ~mask | bits & mask) & width
        }
        configuration &= ~Bit.valueSet
    }

    /// Ticks from counter value `counter` until the comparator next matches (1 up to a full wrap
    /// of the comparator's width), or `nil` for a 64-bit comparator equal to the counter (its
    /// next match is 2^64 ticks away).
    func ticksUntilMatch(from counter: UInt64) -> UInt64? {
        let distance = (comparator &- counter) & width
        if distance != 0 { return distance }
        return mode32 ? 1 << 32 : nil
    }

    /// Whether the comparator matches while the counter moves on `elapsed` ticks from `counter`;
    /// a periodic comparator moves past the matches to the first one still ahead.
    mutating func match(from counter: UInt64, elapsed: UInt64) -> Bool {
        guard let ticks = ticksUntilMatch(from: counter), ticks <= elapsed else { return false }
        if periodic {
            let step = max(period, HPET.minimumPeriodTicks)
            let further = (elapsed - ticks) / step
            // Modulo 2^64, hence modulo the width: the wrapping arithmetic is the counter's own.
            comparator = (comparator &+ (further &+ 1) &* step) & width
        }
        return true
    }
}
