// The ACPI PM timer: 3.579545 MHz from the virtual clock, 24 bits, read-only.

import Testing
import VisorDevices

@Test func thePMTimerCountsAt3579545HzFromTheVirtualClock() {
    let clock = ManualClock()
    let timer = ACPIPMTimer(clock: clock)
    #expect(timer.read(offset: 0, size: 4) == 0)
    clock.advance(by: 1_000_000_000)
    #expect(timer.read(offset: 0, size: 4) == 3_579_545, "one second")
    clock.advance(by: 279)  // one tick is 279.4 ns
    #expect(timer.read(offset: 0, size: 4) == 3_579_545, "less than a tick later")
    clock.advance(by: 1)
    #expect(timer.read(offset: 0, size: 4) == 3_579_546)
}

@Test func thePMTimerWrapsAt24Bits() {
    let clock = ManualClock()
    let timer = ACPIPMTimer(clock: clock)
    // 2^24 ticks are 4.687 s.
    clock.advance(by: 4_680_000_000)
    let beforeWrap = timer.read(offset: 0, size: 4)
    #expect(beforeWrap > 0xff_0000 && beforeWrap <= 0xff_ffff)
    clock.advance(by: 10_000_000)
    #expect(timer.read(offset: 0, size: 4) < 0x1_0000, "wrapped")
    #expect(timer.read(offset: 3, size: 1) == 0, "bits 31-24 read 0")
}

@Test func thePMTimerIsReadOnlyAndHarmlessAtAnyOffset() {
    let clock = ManualClock(123_456_789)
    let timer = ACPIPMTimer(clock: clock)
    let value = timer.read(offset: 0, size: 4)
    timer.write(offset: 0, size: 4, value: 0)
    #expect(timer.read(offset: 0, size: 4) == value)
    #expect(timer.read(offset: 1, size: 2) == (value >> 8) & 0xffff)
    #expect(timer.read(offset: 4, size: 1) == 0xff)
    for offset in UInt16(0)...16 { for size in UInt8(0)...8 { _ = timer.read(offset: offset, size: size) } }
}
