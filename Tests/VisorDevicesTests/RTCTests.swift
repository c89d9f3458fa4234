// The MC146818A RTC, one behaviour per test, through the guest's index/data port accesses with
// wall time and the virtual clock both injected.

import Testing
import VisorDevices

private typealias Reg = MC146818RTC.Register

/// 2024-02-29 13:45:30 UTC, a Thursday.
private let leapDayAfternoon: Int64 = 1_709_214_330
private let second: UInt64 = 1_000_000_000

private func makeRTC(epochSeconds: Int64 = leapDayAfternoon)
    -> (MC146818RTC, ManualClock, RecordingLine)
{
    let clock = ManualClock()
    let line = RecordingLine()
    return (MC146818RTC(clock: clock, epochSeconds: epochSeconds, interruptLine: line), clock, line)
}

extension MC146818RTC {
    fileprivate func get(_ register: UInt8) -> UInt8 {
        writePort(0x70, register)
        return readPort(0x71)
    }
    fileprivate func set(_ register: UInt8, _ value: UInt8) {
        writePort(0x70, register)
        writePort(0x71, value)
    }
}

@Test func timeAndDateReadInBCDByDefault() {
    let (rtc, _, _) = makeRTC()
    #expect(rtc.get(Reg.seconds) == 0x30)
    #expect(rtc.get(Reg.minutes) == 0x45)
    #expect(rtc.get(Reg.hours) == 0x13)
    #expect(rtc.get(Reg.dayOfWeek) == 5, "Thursday, counting Sunday as 1")
    #expect(rtc.get(Reg.dayOfMonth) == 0x29)
    #expect(rtc.get(Reg.month) == 0x02)
    #expect(rtc.get(Reg.year) == 0x24)
    #expect(rtc.get(Reg.century) == 0x20)
}

@Test func binaryDataModeReadsPlainNumbers() {
    let (rtc, _, _) = makeRTC()
    rtc.set(Reg.b, 0x06)
    #expect(rtc.get(Reg.seconds) == 30)
    #expect(rtc.get(Reg.minutes) == 45)
    #expect(rtc.get(Reg.hours) == 13)
    #expect(rtc.get(Reg.dayOfMonth) == 29)
    #expect(rtc.get(Reg.year) == 24)
    #expect(rtc.get(Reg.century) == 20)
}

@Test func twelveHourModeSetsThePMBit() {
    let (rtc, _, _) = makeRTC()
    rtc.set(Reg.b, 0x00)
    #expect(rtc.get(Reg.hours) == 0x81)
    rtc.set(Reg.b, 0x04)
    #expect(rtc.get(Reg.hours) == 0x81, "1 PM in binary too")
}

@Test func twelveHourModeCallsMidnightAndNoonTwelve() {
    let midnight = leapDayAfternoon - (13 * 3600 + 30 * 60)  // 00:15:30
    let (rtc, clock, _) = makeRTC(epochSeconds: midnight)
    rtc.set(Reg.b, 0x00)
    #expect(rtc.get(Reg.hours) == 0x12)
    clock.nanoseconds = 12 * 3600 * second
    #expect(rtc.get(Reg.hours) == 0x92)
}

@Test func timeFollowsTheVirtualClock() {
    let (rtc, clock, _) = makeRTC()
    clock.nanoseconds = 61 * second + 999_999_999
    #expect(rtc.get(Reg.seconds) == 0x31)
    #expect(rtc.get(Reg.minutes) == 0x46)
}

@Test func dateRollsOverAtTheCentury() {
    let (rtc, clock, _) = makeRTC(epochSeconds: 946_684_799)  // 1999-12-31 23:59:59, Friday
    #expect(rtc.get(Reg.century) == 0x19)
    #expect(rtc.get(Reg.dayOfWeek) == 6)
    clock.nanoseconds = second
    #expect(rtc.get(Reg.year) == 0x00)
    #expect(rtc.get(Reg.century) == 0x20)
    #expect(rtc.get(Reg.month) == 0x01)
    #expect(rtc.get(Reg.dayOfMonth) == 0x01)
    #expect(rtc.get(Reg.dayOfWeek) == 7, "Saturday")
    #expect(rtc.get(Reg.hours) == 0x00)
}

@Test func guestSetsTheTimeUnderTheSETBit() {
    let (rtc, clock, _) = makeRTC()
    rtc.set(Reg.b, 0x82)
    rtc.set(Reg.hours, 0x08)
    rtc.set(Reg.minutes, 0x00)
    rtc.set(Reg.seconds, 0x00)
    rtc.set(Reg.b, 0x02)
    #expect(rtc.get(Reg.hours) == 0x08)
    clock.advance(by: 10 * second)
    #expect(rtc.get(Reg.seconds) == 0x10)
    #expect(rtc.get(Reg.dayOfMonth) == 0x29, "the date is kept")
}

@Test func setBitFreezesTheTimeRegisters() {
    let (rtc, clock, _) = makeRTC()
    rtc.set(Reg.b, 0x82)
    clock.advance(by: 5 * second)
    #expect(rtc.get(Reg.seconds) == 0x30)
}

@Test func aSingleFieldWriteMovesTheClock() {
    let (rtc, clock, _) = makeRTC()
    rtc.set(Reg.year, 0x25)
    clock.advance(by: second)
    #expect(rtc.get(Reg.year) == 0x25)
    #expect(rtc.get(Reg.month) == 0x03, "2025 has no 29 February: it is 1 March")
    #expect(rtc.get(Reg.seconds) == 0x31)
}

@Test func statusRegistersResetAsTheBIOSLeavesThem() {
    let (rtc, _, _) = makeRTC()
    #expect(rtc.get(Reg.a) == 0x26, "32.768 kHz, 1024 Hz, UIP clear")
    #expect(rtc.get(Reg.b) == 0x02)
    #expect(rtc.get(Reg.c) == 0x00)
    #expect(rtc.get(Reg.d) == 0x80)
}

@Test func statusRegistersCAndDAreReadOnly() {
    let (rtc, _, _) = makeRTC()
    rtc.set(Reg.c, 0xff)
    rtc.set(Reg.d, 0x00)
    #expect(rtc.get(Reg.c) == 0)
    #expect(rtc.get(Reg.d) == 0x80)
}

@Test func periodicInterruptRaisesIRQ8AtTheRate() {
    let (rtc, clock, line) = makeRTC()
    rtc.set(Reg.b, 0x42)  // PIE, 24-hour
    let period: UInt64 = 976_563  // 1/1024 s, rounded up to whole nanoseconds
    clock.nanoseconds = period - 1
    rtc.advance()
    #expect(!line.isHigh)
    clock.nanoseconds = period
    rtc.advance()
    #expect(line.isHigh)
}

@Test func readingRegisterCClearsTheFlagsAndLowersIRQ8() {
    let (rtc, clock, line) = makeRTC()
    rtc.set(Reg.b, 0x42)
    clock.nanoseconds = 976_563
    rtc.advance()
    #expect(rtc.get(Reg.c) == 0xc0, "IRQF and PF")
    #expect(!line.isHigh)
    #expect(rtc.get(Reg.c) == 0x00)
}

@Test(arguments: [
    (UInt8(0x0f), UInt64(500_000_000)), (0x06, 976_563), (0x03, 122_071), (0x01, 3_906_250),
    (0x02, 7_812_500),
])
func periodicRateFollowsRateSelect(rate: UInt8, firstTick: UInt64) {
    let (rtc, _, _) = makeRTC()
    rtc.set(Reg.a, 0x20 | rate)
    rtc.set(Reg.b, 0x42)
    #expect(rtc.nextEventTime(after: 0) == firstTick)
}

@Test func periodicFlagIsSetEvenWithoutItsInterrupt() {
    let (rtc, clock, line) = makeRTC()
    clock.nanoseconds = second / 100
    #expect(rtc.get(Reg.c) == 0x40)
    #expect(!line.isHigh)
}

@Test func rateSelectZeroStopsThePeriodicFlag() {
    let (rtc, clock, _) = makeRTC()
    rtc.set(Reg.a, 0x20)
    rtc.set(Reg.b, 0x42)
    clock.nanoseconds = second / 2
    #expect(rtc.get(Reg.c) & 0x40 == 0)
    #expect(rtc.nextEventTime(after: 0) == nil)
}

@Test func dividerResetStopsInterrupts() {
    let (rtc, clock, line) = makeRTC()
    rtc.set(Reg.a, 0x76)
    rtc.set(Reg.b, 0x52)
    clock.nanoseconds = 3 * second
    rtc.advance()
    #expect(!line.isHigh)
    #expect(rtc.nextEventTime(after: 0) == nil)
}

@Test func noEventsWhileIRQ8IsHighOrNothingIsEnabled() {
    let (rtc, clock, _) = makeRTC()
    #expect(rtc.nextEventTime(after: 0) == nil)
    rtc.set(Reg.b, 0x42)
    clock.nanoseconds = 976_563
    rtc.advance()
    #expect(rtc.nextEventTime(after: clock.nanoseconds) == nil)
    _ = rtc.get(Reg.c)
    #expect(rtc.nextEventTime(after: clock.nanoseconds) == 1_953_125)
}

@Test func updateEndedInterruptEachSecond() {
    let (rtc, clock, line) = makeRTC()
    rtc.set(Reg.a, 0x20)
    rtc.set(Reg.b, 0x12)  // UIE
    #expect(rtc.nextEventTime(after: 0) == second)
    clock.nanoseconds = second
    rtc.advance()
    #expect(line.isHigh)
    #expect(rtc.get(Reg.c) == 0x90)
}

@Test func settingSETClearsUIE() {
    let (rtc, _, _) = makeRTC()
    rtc.set(Reg.b, 0x92)
    #expect(rtc.get(Reg.b) == 0x82)
}

@Test func alarmInterruptWhenTheTimeMatches() {
    let (rtc, clock, line) = makeRTC()
    rtc.set(Reg.a, 0x20)
    rtc.set(Reg.secondsAlarm, 0x32)
    rtc.set(Reg.minutesAlarm, 0x45)
    rtc.set(Reg.hoursAlarm, 0xc0)  // any hour
    rtc.set(Reg.b, 0x22)  // AIE
    clock.nanoseconds = second
    rtc.advance()
    #expect(!line.isHigh, "13:45:31 does not match")
    clock.nanoseconds = 2 * second
    rtc.advance()
    #expect(line.isHigh)
    #expect(rtc.get(Reg.c) == 0xb0, "IRQF, AF and UF")
}

@Test func indexPortBit7MasksNMI() {
    let (rtc, _, _) = makeRTC()
    rtc.writePort(0x70, 0x80 | Reg.d)
    #expect(rtc.nmiDisabled)
    #expect(rtc.readPort(0x71) == 0x80, "the index is the low seven bits")
    rtc.writePort(0x70, Reg.d)
    #expect(!rtc.nmiDisabled)
}

@Test func cmosBytesAreKept() {
    let (rtc, _, _) = makeRTC()
    rtc.set(0x40, 0x5a)
    #expect(rtc.get(0x40) == 0x5a)
    rtc[cmos: 0x34] = 0x12
    #expect(rtc.get(0x34) == 0x12)
    #expect(rtc[cmos: 0x40] == 0x5a)
}

@Test func portWindowReachesIndexAndData() {
    let (rtc, _, _) = makeRTC()
    let ports = rtc.ports
    ports.write(offset: 0, size: 1, value: UInt32(Reg.seconds))
    #expect(ports.read(offset: 1, size: 1) == 0x30)
    #expect(ports.read(offset: 0, size: 1) == 0xff, "the index port is write-only")
    ports.write(offset: 0, size: 2, value: 0x7f_40)  // index 0x40, then data 0x7f
    #expect(rtc[cmos: 0x40] == 0x7f)
}

@Test func hostileRegisterWritesDoNotTrap() {
    let (rtc, clock, _) = makeRTC()
    var random = ScriptRandom(seed: 3)
    for _ in 0..<20_000 {
        let port = UInt16(0x70 + random.below(3))
        if random.below(2) == 0 {
            rtc.writePort(port, UInt8(truncatingIfNeeded: random.next()))
        } else {
            _ = rtc.readPort(port)
        }
        clock.advance(by: random.below(10_000_000))
        rtc.advance()
        _ = rtc.nextEventTime(after: clock.nanoseconds)
    }
    rtc.set(Reg.b, 0x02)
    #expect(rtc.get(Reg.d) == 0x80)
}
