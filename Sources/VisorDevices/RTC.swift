// The PC's CMOS real-time clock (after the Motorola MC146818A datasheet) at ports 0x70 (index,
// bit 7 masks NMI) and 0x71 (data): 128 bytes of CMOS, the time and date registers, status
// registers A-D, and the periodic, update-ended and alarm interrupts on IRQ8, as a pure state
// machine.
//
// Time is injected: wall-clock time is `epochSeconds` (seconds since 1970-01-01 00:00:00 UTC
// at virtual time 0) plus the `TimeSource`'s virtual nanoseconds; the model never reads a
// host clock. A guest that sets the clock moves that base, not the virtual clock. The seconds
// roll over on whole seconds of virtual time, and the periodic interrupt ticks on multiples of
// its period from virtual time 0.
//
// Simplifications:
// - UIP (register A bit 7) always reads 0: the update cycle takes no time. A guest that waits
//   for UIP to fall never spins.
// - The divider (register A bits 6-4) runs the clock's interrupts only when it is 010 (the
//   32.768 kHz time base); any other value stops the periodic, update and alarm flags, but the
//   time keeps counting.
// - The alarm is compared with the time at each `advance()` or access that finds a new second,
//   not with every second crossed since the last look.
// - Daylight saving (register B bit 0) and the square-wave output (bit 3) are stored only.
// - The century is CMOS byte 0x32 (the ACPI FADT's usual century index), kept like the other
//   time registers.
// - A 2- or 4-byte access is split into byte accesses at consecutive ports; the index port reads
//   0xff, as do bytes past the two ports.

import VisorCore

/// An MC146818A real-time clock with 128 bytes of CMOS, on IRQ8.
///
/// Not thread-safe: the owner serialises guest accesses and `advance()`.
public final class MC146818RTC {
    /// The index port; the data port follows it.
    public static let base: UInt16 = 0x70
    /// Ports decoded from `base`.
    public static let portCount: UInt16 = 2
    /// Bytes of CMOS, the clock's registers included.
    public static let cmosSize = 128

    /// Register indices, after the datasheet.
    public enum Register {
        public static let seconds: UInt8 = 0x00
        public static let secondsAlarm: UInt8 = 0x01
        public static let minutes: UInt8 = 0x02
        public static let minutesAlarm: UInt8 = 0x03
        public static let hours: UInt8 = 0x04
        public static let hoursAlarm: UInt8 = 0x05
        public static let dayOfWeek: UInt8 = 0x06
        public static let dayOfMonth: UInt8 = 0x07
        public static let month: UInt8 = 0x08
        public static let year: UInt8 = 0x09
        public static let a: UInt8 = 0x0a
        public static let b: UInt8 = 0x0b
        public static let c: UInt8 = 0x0c
        public static let d: UInt8 = 0x0d
        public static let century: UInt8 = 0x32
    }

    /// Status register A bits.
    public enum A {
        public static let uip: UInt8 = 0x80
        public static let dividerMask: UInt8 = 0x70
        /// DV2-DV0 = 010: the 32.768 kHz time base, oscillator running.
        public static let divider32kHz: UInt8 = 0x20
        public static let rateSelectMask: UInt8 = 0x0f
    }

    /// Status register B bits.
    public enum B {
        public static let set: UInt8 = 0x80
        public static let pie: UInt8 = 0x40
        public static let aie: UInt8 = 0x20
        public static let uie: UInt8 = 0x10
        public static let sqwe: UInt8 = 0x08
        /// Data mode: binary when set, BCD when clear.
        public static let dm: UInt8 = 0x04
        /// 24-hour mode when set, 12-hour when clear.
        public static let hour24: UInt8 = 0x02
        public static let dse: UInt8 = 0x01
    }

    /// Status register C bits (read-only; reading clears them).
    public enum C {
        public static let irqf: UInt8 = 0x80
        public static let pf: UInt8 = 0x40
        public static let af: UInt8 = 0x20
        public static let uf: UInt8 = 0x10
    }

    /// Status register D bits.
    public enum D {
        /// Valid RAM and time: the battery is good.
        public static let vrt: UInt8 = 0x80
    }

    public let clock: any TimeSource
    /// The IRQ output, wired to IRQ8.
    public let interruptLine: any InterruptLine
    /// The level last driven on `interruptLine`.
    public private(set) var interruptLevel = false
    /// Whether the guest last wrote the index port with bit 7 set (NMI disabled).
    public private(set) var nmiDisabled = false

    private var cmos = [UInt8](repeating: 0, count: MC146818RTC.cmosSize)
    private var index: UInt8 = 0
    /// Wall-clock seconds since the epoch at virtual time 0 (moved when the guest sets the time).
    private var epochSeconds: Int64
    /// The last periodic tick and virtual second the flags were brought up to.
    private var lastPeriodicTick: UInt64 = 0
    private var lastSecond: UInt64 = 0

    /// A clock reading `epochSeconds` seconds after 1970-01-01 00:00:00 UTC at virtual time 0,
    /// in the state a PC BIOS leaves: 32.768 kHz time base, 1024 Hz periodic rate, BCD,
    /// 24-hour, interrupts disabled, battery good.
    public init(
        clock: any TimeSource, epochSeconds: Int64,
        interruptLine: any InterruptLine = NoInterruptLine()
    ) {
        self.clock = clock
        self.epochSeconds = epochSeconds
        self.interruptLine = interruptLine
        cmos[Int(Register.a)] = A.divider32kHz | 0x06
        cmos[Int(Register.b)] = B.hour24
        cmos[Int(Register.d)] = D.vrt
        let now = clock.nanoseconds
        lastPeriodicTick = Self.periodicTicks(at: now)
        lastSecond = now / nanosecondsPerSecond
    }

    /// A CMOS byte as the host sees it (for firmware tables such as memory sizes). Writes are
    /// raw: no time conversion, no side effects.
    public subscript(cmos index: Int) -> UInt8 {
        get { cmos[index & 0x7f] }
        set { cmos[index & 0x7f] = newValue }
    }

    // MARK: Runtime side

    /// Brings the interrupt flags up to the time source's present, driving IRQ8. Call it when a
    /// host timer armed from `nextEventTime(after:)` fires.
    public func advance() {
        synchronize(now: clock.nanoseconds)
        updateLine()
    }

    /// The first virtual time after `nanoseconds` at which an enabled interrupt can raise IRQ8,
    /// or `nil`. While IRQ8 is high nothing can change until the guest reads register C.
    public func nextEventTime(after nanoseconds: UInt64) -> UInt64? {
        guard !interruptLevel, dividerRunning else { return nil }
        var next: UInt64?
        let b = cmos[Int(Register.b)]
        if b & B.pie != 0, let shift = periodicShift {
            let tick = ((Self.periodicTicks(at: nanoseconds) >> shift) + 1) << shift
            next = scale(tick, by: nanosecondsPerSecond, over: 65_536, roundingUp: true)
        }
        if b & (B.uie | B.aie) != 0 && b & B.set == 0 {
            let second = (nanoseconds / nanosecondsPerSecond + 1) * nanosecondsPerSecond
            next = min(next ?? .max, second)
        }
        return next
    }

    // MARK: Guest side

    /// Reads the byte at `port` (0x70 or 0x71); other ports read 0xff.
    public func readPort(_ port: UInt16) -> UInt8 {
        guard port == Self.base + 1 else { return 0xff }
        let now = clock.nanoseconds
        synchronize(now: now)
        defer { updateLine() }
        switch index {
        case Register.seconds, Register.minutes, Register.hours, Register.dayOfWeek,
            Register.dayOfMonth, Register.month, Register.year, Register.century:
            if !isSet { storeTime(now: now) }
            return cmos[Int(index)]
        case Register.a:
            return cmos[Int(Register.a)] & ~A.uip
        case Register.c:
            let flags = cmos[Int(Register.c)]
            cmos[Int(Register.c)] = 0
            return flags
        case Register.d:
            return D.vrt
        default:
            return cmos[Int(index)]
        }
    }

    /// Writes `value` to `port` (0x70 or 0x71); other ports are ignored.
    public func writePort(_ port: UInt16, _ value: UInt8) {
        if port == Self.base {
            index = value & 0x7f
            nmiDisabled = value & 0x80 != 0
            return
        }
        guard port == Self.base + 1 else { return }
        let now = clock.nanoseconds
        synchronize(now: now)
        defer { updateLine() }
        switch index {
        case Register.seconds, Register.minutes, Register.hours, Register.dayOfWeek,
            Register.dayOfMonth, Register.month, Register.year, Register.century:
            if isSet {
                cmos[Int(index)] = value
            } else {
                storeTime(now: now)
                cmos[Int(index)] = value
                loadTime(now: now)
            }
        case Register.a:
            cmos[Int(Register.a)] = value & ~A.uip
            lastPeriodicTick = Self.periodicTicks(at: now)
            lastSecond = now / nanosecondsPerSecond
        case Register.b:
            writeB(value, now: now)
        case Register.c, Register.d:
            return  // read-only
        default:
            cmos[Int(index)] = value
        }
    }

    /// The two ports as a device to attach at `base`.
    public var ports: any PortDevice { PortWindow(rtc: self) }

    // MARK: Internals

    private var isSet: Bool { cmos[Int(Register.b)] & B.set != 0 }
    private var binary: Bool { cmos[Int(Register.b)] & B.dm != 0 }
    private var hour24: Bool { cmos[Int(Register.b)] & B.hour24 != 0 }
    private var dividerRunning: Bool { cmos[Int(Register.a)] & A.dividerMask == A.divider32kHz }

    /// The periodic rate as a power of two of 65536 Hz ticks, or `nil` when off. Rates 1 and 2
    /// give 256 and 128 Hz, as 8 and 9 do, on the 32.768 kHz time base.
    private var periodicShift: UInt64? {
        let rate = cmos[Int(Register.a)] & A.rateSelectMask
        guard rate != 0 else { return nil }
        return UInt64(rate < 3 ? rate + 7 : rate)
    }

    private static func periodicTicks(at nanoseconds: UInt64) -> UInt64 {
        scale(nanoseconds, by: 65_536, over: nanosecondsPerSecond)
    }

    private func writeB(_ value: UInt8, now: UInt64) {
        let wasSet = isSet
        var b = value
        // Setting SET stops updates and clears UIE (datasheet, register B bit 7).
        if b & B.set != 0 { b &= ~B.uie }
        if !wasSet && b & B.set != 0 { storeTime(now: now) }
        cmos[Int(Register.b)] = b
        if wasSet && b & B.set == 0 {
            loadTime(now: now)
            lastSecond = now / nanosecondsPerSecond
        }
    }

    /// Sets PF, UF and AF for the periodic ticks and seconds crossed since the last look.
    private func synchronize(now: UInt64) {
        let tick = Self.periodicTicks(at: now)
        let second = now / nanosecondsPerSecond
        defer {
            lastPeriodicTick = max(lastPeriodicTick, tick)
            lastSecond = max(lastSecond, second)
        }
        guard dividerRunning else { return }
        if let shift = periodicShift, tick >> shift > lastPeriodicTick >> shift {
            cmos[Int(Register.c)] |= C.pf
        }
        if second > lastSecond && !isSet {
            cmos[Int(Register.c)] |= C.uf
            if alarmMatches(now: now) { cmos[Int(Register.c)] |= C.af }
        }
    }

    private func alarmMatches(now: UInt64) -> Bool {
        storeTime(now: now)
        let pairs = [
            (Register.secondsAlarm, Register.seconds), (Register.minutesAlarm, Register.minutes),
            (Register.hoursAlarm, Register.hours),
        ]
        for (alarm, time) in pairs {
            let wanted = cmos[Int(alarm)]
            // 11xxxxxx is "don't care".
            if wanted & 0xc0 != 0xc0 && wanted != cmos[Int(time)] { return false }
        }
        return true
    }

    /// Recomputes IRQF and drives the line.
    private func updateLine() {
        let b = cmos[Int(Register.b)]
        var c = cmos[Int(Register.c)] & ~C.irqf
        // Each enable bit of B sits at the position of its flag in C.
        if c & b & (C.pf | C.af | C.uf) != 0 { c |= C.irqf }
        cmos[Int(Register.c)] = c
        let level = c & C.irqf != 0
        if level != interruptLevel {
            interruptLevel = level
            interruptLine.setLevel(level)
        }
    }

    // MARK: Time registers

    private func wallSeconds(now: UInt64) -> Int64 {
        epochSeconds &+ Int64(now / nanosecondsPerSecond)
    }

    /// Writes the wall time at `now` into the time registers, in the current data and hour modes.
    private func storeTime(now: UInt64) {
        let seconds = wallSeconds(now: now)
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = Int(seconds - days * 86_400)
        let (year, month, day) = Self.civilDate(daysSinceEpoch: days)
        let hour = secondOfDay / 3600
        cmos[Int(Register.seconds)] = encode(secondOfDay % 60)
        cmos[Int(Register.minutes)] = encode(secondOfDay / 60 % 60)
        cmos[Int(Register.hours)] = hour24
            ? encode(hour) : encode(hour % 12 == 0 ? 12 : hour % 12) | (hour >= 12 ? 0x80 : 0)
        // 1970-01-01 was a Thursday; the register counts Sunday as 1.
        let weekday = ((days % 7) + 7 + 4) % 7
        cmos[Int(Register.dayOfWeek)] = encode(Int(weekday) + 1)
        cmos[Int(Register.dayOfMonth)] = encode(day)
        cmos[Int(Register.month)] = encode(month)
        let clampedYear = min(max(year, 0), 9999)
        cmos[Int(Register.year)] = encode(Int(clampedYear % 100))
        cmos[Int(Register.century)] = encode(Int(clampedYear / 100))
    }

    /// Takes the time registers as the wall time at `now`. Out-of-range fields are clamped.
    private func loadTime(now: UInt64) {
        let second = min(decode(cmos[Int(Register.seconds)]), 59)
        let minute = min(decode(cmos[Int(Register.minutes)]), 59)
        let rawHour = cmos[Int(Register.hours)]
        var hour: Int
        if hour24 {
            hour = decode(rawHour)
        } else {
            hour = decode(rawHour & 0x7f) % 12 + (rawHour & 0x80 != 0 ? 12 : 0)
        }
        hour = min(hour, 23)
        let day = min(max(decode(cmos[Int(Register.dayOfMonth)]), 1), 31)
        let month = min(max(decode(cmos[Int(Register.month)]), 1), 12)
        let year = decode(cmos[Int(Register.century)]) * 100 + decode(cmos[Int(Register.year)])
        let days = Self.daysSinceEpoch(year: Int64(year), month: Int64(month), day: Int64(day))
        let seconds = days * 86_400 + Int64(hour * 3600 + minute * 60 + second)
        epochSeconds = seconds &- Int64(now / nanosecondsPerSecond)
    }

    private func encode(_ value: Int) -> UInt8 {
        binary ? UInt8(truncatingIfNeeded: value) : UInt8(truncatingIfNeeded: (value / 10) << 4 | value % 10)
    }

    private func decode(_ byte: UInt8) -> Int {
        binary ? Int(byte) : Int(byte >> 4) * 10 + Int(byte & 0xf)
    }

    /// The proleptic Gregorian date `days` days after 1970-01-01 (eras of 400 years, years
    /// counted from March so the leap day comes last).
    static func civilDate(daysSinceEpoch days: Int64) -> (year: Int64, month: Int, day: Int) {
        let shifted = days + 719_468  // days from 0000-03-01
        let era = (shifted >= 0 ? shifted : shifted - 146_096) / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let marchMonth = (5 * dayOfYear + 2) / 153
        let day = Int(dayOfYear - (153 * marchMonth + 2) / 5 + 1)
        let month = Int(marchMonth < 10 ? marchMonth + 3 : marchMonth - 9)
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    /// The inverse of `civilDate`.
    static func daysSinceEpoch(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    /// The RTC's ports on the I/O bus.
    private final class PortWindow: PortDevice {
        let rtc: MC146818RTC
        init(rtc: MC146818RTC) { self.rtc = rtc }
        func read(offset: UInt16, size: UInt8) -> UInt32 {
            var value: UInt32 = 0
            for i in 0..<UInt16(min(size, 4)) {
                let byte = offset &+ i < MC146818RTC.portCount
                    ? rtc.readPort(MC146818RTC.base &+ offset &+ i) : 0xff
                value |= UInt32(byte) << (8 * UInt32(i))
            }
            return value
        }
        func write(offset: UInt16, size: UInt8, value: UInt32) {
            for i in 0..<UInt16(min(size, 4)) where offset &+ i < MC146818RTC.portCount {
                rtc.writePort(MC146818RTC.base &+ offset &+ i, UInt8(truncatingIfNeeded: value >> (8 * UInt32(i))))
            }
        }
    }
}
