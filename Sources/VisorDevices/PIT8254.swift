// The PC's 8254 programmable interval timer (after the Intel 82C54 datasheet) at 0x40-0x43,
// with the channel 2 gate and output bits of the PC's port 0x61, as a pure state machine.
//
// Time is injected: the model asks its `TimeSource` for the virtual clock on every port access
// and on `advance()`, and never reads a host clock. The counters run on the PC's 1.193182 MHz
// input clock, so a count read back is exactly what the elapsed virtual time implies. Channel 0's
// OUT pin drives an `InterruptLine` (IRQ0); `nextEventTime(after:)` tells a runtime when that
// output next changes, so it can arm a host timer and call `advance()` when it fires.
//
// Simplifications:
// - Modes 0 (interrupt on terminal count), 2 (rate generator) and 3 (square wave) are counted
//   as the datasheet says. Modes 1, 4 and 5 are stored (and read back in the read-back status)
//   but counted as mode 0; modes 6 and 7 are modes 2 and 3, as on the chip.
// - A count takes effect at the clock tick it is written in (not at the next CLK pulse), and a
//   new count written in mode 2 or 3 restarts the period at once instead of at the end of the
//   current one. Writing only the first byte of a two-byte count does not pause mode 0.
// - A one-tick-wide count of 1 in modes 2 and 3 is counted as 2.
// - Channel 0 in modes 2 and 3 (periodic) counts a period of at least `minimumPeriodTicks`
//   (about 100 µs, the floor Xen puts on a guest's periodic timers; KVM's PIT has 200 µs): a
//   guest programming reload 2 (1.7 µs) gets that period instead, so its IRQ0 cannot make the
//   runtime kick its vCPU every microsecond. Counts read back follow the period counted.
// - When `advance()` finds that channel 0's output rose several times since the last look (the
//   runtime was late), the line sees one rising edge: the PIC would latch them as one anyway.
// - Port 0x61: bits 0-3 (gate 2, speaker data, parity/channel-check enables) are stored;
//   bit 4 (refresh request) toggles every 15.085 µs of virtual time; bit 5 is channel 2's OUT;
//   bits 6-7 (parity and channel-check errors) read 0.
// - A 2- or 4-byte port access is split into byte accesses at consecutive ports; the control
//   port (0x43) is write-only and reads 0xff, as do bytes past the four ports.

import VisorCore

/// An 8254 with channel 0 on IRQ0 and channel 2 gated through port 0x61.
///
/// Not thread-safe: the owner serialises guest accesses and `advance()`.
public final class PIT8254 {
    /// First port: counters 0-2 at +0...+2, the control word at +3.
    public static let base: UInt16 = 0x40
    /// Ports decoded from `base`.
    public static let portCount: UInt16 = 4
    /// The PC's system control port B, whose bits 0 and 5 are channel 2's gate and output.
    public static let systemControlPort: UInt16 = 0x61
    /// The counters' input clock in hertz.
    public static let inputFrequency: UInt64 = 1_193_182
    /// The shortest period channel 0 counts in modes 2 and 3: 120 ticks, 100.6 µs (see the header).
    public static let minimumPeriodTicks: UInt64 = 120
    /// The period of port 0x61's refresh-request toggle, in nanoseconds.
    public static let refreshTogglePeriod: UInt64 = 15_085

    /// Where the model reads the virtual time.
    public let clock: any TimeSource
    /// Channel 0's OUT pin, wired to IRQ0.
    public let interruptLine: any InterruptLine
    /// The level last driven on `interruptLine`.
    public private(set) var interruptLevel = false

    var channels = [PITChannel](repeating: PITChannel(), count: 3)
    /// Port 0x61 bits 0-3 as last written.
    var systemControl: UInt8 = 0
    /// The clock tick everything was last brought up to.
    private var syncedTick: UInt64

    /// A PIT after power-on (undefined on the chip; here: every counter in mode 0 with no count,
    /// so every OUT is low), with gate 2 low.
    public init(clock: any TimeSource, interruptLine: any InterruptLine = NoInterruptLine()) {
        self.clock = clock
        self.interruptLine = interruptLine
        syncedTick = Self.tick(at: clock.nanoseconds)
        channels[0].minimumPeriod = Self.minimumPeriodTicks
        channels[2].gate = false
    }

    /// The input clock tick running at virtual time `nanoseconds`.
    public static func tick(at nanoseconds: UInt64) -> UInt64 {
        scale(nanoseconds, by: inputFrequency, over: nanosecondsPerSecond)
    }

    /// The first virtual time at which input clock tick `tick` has begun.
    public static func time(ofTick tick: UInt64) -> UInt64 {
        scale(tick, by: nanosecondsPerSecond, over: inputFrequency, roundingUp: true)
    }

    // MARK: Runtime side

    /// Brings channel 0's output up to the time source's present, driving IRQ0. Call it when a
    /// host timer armed from `nextEventTime(after:)` fires.
    public func advance() {
        synchronize()
    }

    /// The first virtual time after `nanoseconds` at which channel 0's output changes, or `nil`
    /// if it will not change without a guest access.
    public func nextEventTime(after nanoseconds: UInt64) -> UInt64? {
        let now = Self.tick(at: nanoseconds)
        guard let tick = channels[0].nextTransitionTick(after: now) else { return nil }
        return Self.time(ofTick: tick)
    }

    /// The level of channel `channel`'s OUT pin now (0-2; other channels read low).
    public func output(channel: Int) -> Bool {
        guard channels.indices.contains(channel) else { return false }
        return channels[channel].output(at: Self.tick(at: clock.nanoseconds))
    }

    // MARK: Guest side

    /// Reads the byte at `port` (0x40-0x43 or 0x61); other ports read 0xff.
    public func readPort(_ port: UInt16) -> UInt8 {
        let now = synchronize()
        switch port {
        case Self.base..<Self.base + 3:
            return channels[Int(port - Self.base)].readCounter(at: now)
        case Self.systemControlPort:
            let refresh = (clock.nanoseconds / Self.refreshTogglePeriod) & 1 != 0
            let out2 = channels[2].output(at: now)
            return systemControl | (refresh ? 0x10 : 0) | (out2 ? 0x20 : 0)
        default:
            return 0xff
        }
    }

    /// Writes `value` to `port` (0x40-0x43 or 0x61); other ports are ignored.
    public func writePort(_ port: UInt16, _ value: UInt8) {
        let now = synchronize()
        switch port {
        case Self.base..<Self.base + 3:
            channels[Int(port - Self.base)].writeCounter(value, at: now)
        case Self.base + 3:
            writeControlWord(value, at: now)
        case Self.systemControlPort:
            systemControl = value & 0x0f
            channels[2].setGate(value & 1 != 0, at: now)
        default:
            return
        }
        driveLine(risingEdges: 0, at: now)
    }

    /// The counter and control ports (0x40-0x43) as a device to attach at `base`.
    public var ports: any PortDevice { PortWindow(pit: self, base: Self.base, count: Self.portCount) }
    /// Port 0x61 as a one-port device to attach at `systemControlPort`.
    public var systemControlPorts: any PortDevice {
        PortWindow(pit: self, base: Self.systemControlPort, count: 1)
    }

    // MARK: Internals

    private func writeControlWord(_ value: UInt8, at now: UInt64) {
        let select = Int(value >> 6)
        if select == 3 {
            // Read-back: bit 5 low latches counts, bit 4 low latches status, bits 3-1 select.
            for channel in 0..<3 where value & (2 << channel) != 0 {
                if value & 0x10 == 0 { channels[channel].latchStatus(at: now) }
                if value & 0x20 == 0 { channels[channel].latchCount(at: now) }
            }
            return
        }
        if value & 0x30 == 0 {
            channels[select].latchCount(at: now)
        } else {
            channels[select].program(controlWord: value)
        }
    }

    /// Counts channel 0's rising edges since the last synchronisation and drives the line.
    /// Returns the current tick.
    @discardableResult
    private func synchronize() -> UInt64 {
        let now = max(Self.tick(at: clock.nanoseconds), syncedTick)
        let rising = channels[0].risingEdges(from: syncedTick, to: now)
        syncedTick = now
        driveLine(risingEdges: rising, at: now)
        return now
    }

    private func driveLine(risingEdges: UInt64, at now: UInt64) {
        let level = channels[0].output(at: now)
        if risingEdges > 0 {
            if interruptLevel { interruptLine.setLevel(false) }
            interruptLine.setLevel(true)
            interruptLevel = true
        }
        if level != interruptLevel {
            interruptLevel = level
            interruptLine.setLevel(level)
        }
    }

    /// A window of the PIT's ports on the I/O bus.
    private final class PortWindow: PortDevice {
        let pit: PIT8254
        let base: UInt16
        let count: UInt16
        init(pit: PIT8254, base: UInt16, count: UInt16) {
            self.pit = pit
            self.base = base
            self.count = count
        }
        func read(offset: UInt16, size: UInt8) -> UInt32 {
            var value: UInt32 = 0
            for i in 0..<UInt16(min(size, 4)) {
                let byte = offset &+ i < count ? pit.readPort(base &+ offset &+ i) : 0xff
                value |= UInt32(byte) << (8 * UInt32(i))
            }
            return value
        }
        func write(offset: UInt16, size: UInt8, value: UInt32) {
            for i in 0..<UInt16(min(size, 4)) where offset &+ i < count {
                pit.writePort(base &+ offset &+ i, UInt8(truncatingIfNeeded: value >> (8 * UInt32(i))))
            }
        }
    }
}

/// One counter of the 8254. Counting is kept as "ticks elapsed since the count was loaded",
/// which the gate can pause; count and output are functions of that.
struct PITChannel {
    /// Control word bits 5-0 (RW1 RW0 M2 M1 M0 BCD), reported by read-back status.
    var control: UInt8 = 0b11_0000
    var gate = true
    var reload: UInt16 = 0
    /// The count has not been loaded since the last control word (read-back status bit 6).
    var nullCount = true
    var writeHighNext = false
    var readHighNext = false
    var pendingLowByte: UInt8 = 0
    var latchedCount: [UInt8] = []
    var latchedStatus: UInt8?
    /// The shortest period counted in modes 2 and 3 (channel 0's timer interrupt; 0 for the
    /// others).
    var minimumPeriod: UInt64 = 0
    /// Ticks counted before `runningSince`.
    var elapsedBase: UInt64 = 0
    /// The tick counting last (re)started at, or `nil` while it is stopped.
    var runningSince: UInt64?

    var accessMode: UInt8 { (control >> 4) & 3 }
    var bcd: Bool { control & 1 != 0 }
    var programmedMode: UInt8 {
        let mode = (control >> 1) & 7
        return mode >= 6 ? mode - 4 : mode
    }
    /// The mode as counted: 2 and 3 are themselves, the others count as mode 0.
    var countingMode: UInt8 { programmedMode == 2 || programmedMode == 3 ? programmedMode : 0 }
    var modulus: UInt64 { bcd ? 10_000 : 65_536 }

    /// Ticks per count cycle: the reload value, with 0 meaning the full range.
    var period: UInt64 {
        var value = bcd ? Self.decimal(fromBCD: reload) : UInt64(reload)
        if value == 0 { value = modulus }
        return countingMode == 0 ? value : max(value, 2, minimumPeriod)
    }

    func elapsed(at tick: UInt64) -> UInt64 {
        elapsedBase + (runningSince.map { tick >= $0 ? tick - $0 : 0 } ?? 0)
    }

    func output(at tick: UInt64) -> Bool {
        guard !nullCount else { return countingMode != 0 }
        return output(elapsed: elapsed(at: tick))
    }

    func output(elapsed e: UInt64) -> Bool {
        switch countingMode {
        case 2: return e % period != period - 1
        case 3: return e % period < (period + 1) / 2
        default: return e >= period
        }
    }

    func count(at tick: UInt64) -> UInt16 {
        guard !nullCount else { return reload }
        let e = elapsed(at: tick)
        let value: UInt64
        switch countingMode {
        case 2: value = period - e % period
        case 3: value = period - (2 * (e % period)) % period
        default: value = (period + modulus - e % modulus) % modulus
        }
        let wrapped = value % modulus
        return bcd ? Self.bcd(fromDecimal: wrapped) : UInt16(wrapped)
    }

    func risingEdges(from start: UInt64, to end: UInt64) -> UInt64 {
        guard !nullCount, runningSince != nil, end > start else { return 0 }
        let e1 = elapsed(at: start)
        let e2 = elapsed(at: end)
        switch countingMode {
        case 2, 3: return e2 / period - e1 / period
        default: return e1 < period && e2 >= period ? 1 : 0
        }
    }

    /// The first tick after `tick` at which the output changes, if counting.
    func nextTransitionTick(after tick: UInt64) -> UInt64? {
        guard !nullCount, let since = runningSince else { return nil }
        let e = elapsed(at: tick)
        let phase = e % period
        let next: UInt64
        switch countingMode {
        case 2: next = phase < period - 1 ? e - phase + period - 1 : e - phase + period
        case 3:
            let half = (period + 1) / 2
            next = phase < half ? e - phase + half : e - phase + period
        default:
            guard e < period else { return nil }
            next = period
        }
        return since + (next - elapsedBase)
    }

    mutating func program(controlWord: UInt8) {
        control = controlWord & 0x3f
        nullCount = true
        writeHighNext = false
        readHighNext = false
        latchedCount = []
        latchedStatus = nil
        elapsedBase = 0
        runningSince = nil
    }

    mutating func writeCounter(_ value: UInt8, at tick: UInt64) {
        switch accessMode {
        case 1: reload = UInt16(value)
        case 2: reload = UInt16(value) << 8
        default:
            if !writeHighNext {
                pendingLowByte = value
                writeHighNext = true
                return
            }
            writeHighNext = false
            reload = UInt16(pendingLowByte) | UInt16(value) << 8
        }
        nullCount = false
        elapsedBase = 0
        runningSince = gate ? tick : nil
    }

    mutating func readCounter(at tick: UInt64) -> UInt8 {
        if let status = latchedStatus {
            latchedStatus = nil
            return status
        }
        if !latchedCount.isEmpty { return latchedCount.removeFirst() }
        let value = count(at: tick)
        switch accessMode {
        case 1: return UInt8(truncatingIfNeeded: value)
        case 2: return UInt8(truncatingIfNeeded: value >> 8)
        default:
            defer { readHighNext.toggle() }
            return UInt8(truncatingIfNeeded: readHighNext ? value >> 8 : value)
        }
    }

    /// Counter latch: freezes the count for reading until it has been read in full. A second
    /// latch before then is ignored.
    mutating func latchCount(at tick: UInt64) {
        guard latchedCount.isEmpty else { return }
        let value = count(at: tick)
        let low = UInt8(truncatingIfNeeded: value)
        let high = UInt8(truncatingIfNeeded: value >> 8)
        switch accessMode {
        case 1: latchedCount = [low]
        case 2: latchedCount = [high]
        default: latchedCount = readHighNext ? [high, low] : [low, high]
        }
    }

    mutating func latchStatus(at tick: UInt64) {
        guard latchedStatus == nil else { return }
        latchedStatus = (output(at: tick) ? 0x80 : 0) | (nullCount ? 0x40 : 0) | control
    }

    mutating func setGate(_ high: Bool, at tick: UInt64) {
        guard high != gate else { return }
        gate = high
        guard !nullCount else { return }
        if countingMode == 0 {
            // Modes 0, 1, 4, 5 as counted here: the gate pauses and resumes counting.
            if high {
                runningSince = tick
            } else {
                elapsedBase = elapsed(at: tick)
                runningSince = nil
            }
        } else {
            // Modes 2 and 3: a low gate holds OUT high and stops; a rising gate reloads.
            elapsedBase = 0
            runningSince = high ? tick : nil
        }
    }

    static func decimal(fromBCD value: UInt16) -> UInt64 {
        var result: UInt64 = 0
        for shift in stride(from: 12, through: 0, by: -4) {
            result = result * 10 + UInt64(min((value >> UInt16(shift)) & 0xf, 9))
        }
        return result
    }

    static func bcd(fromDecimal value: UInt64) -> UInt16 {
        var result: UInt16 = 0
        var rest = value % 10_000
        for shift in stride(from: 0, through: 12, by: 4) {
            result |= UInt16(rest % 10) << UInt16(shift)
            rest /= 10
        }
        return result
    }
}
