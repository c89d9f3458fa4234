// The 8254 PIT, one behaviour per test, with the virtual clock moved by hand: every time below
// is a whole number of the 1.193182 MHz input clock's ticks.

import Testing
import VisorDevices

private func makePIT() -> (PIT8254, ManualClock, RecordingLine) {
    let clock = ManualClock()
    let line = RecordingLine()
    return (PIT8254(clock: clock, interruptLine: line), clock, line)
}

extension ManualClock {
    /// Moves the clock to the start of input clock tick `tick`.
    fileprivate func set(tick: UInt64) { nanoseconds = PIT8254.time(ofTick: tick) }
}

extension PIT8254 {
    /// Programs channel `channel` for a two-byte count in `mode` and loads `count`.
    fileprivate func program(channel: UInt16 = 0, mode: UInt8, count: UInt16) {
        writePort(0x43, UInt8(channel) << 6 | 0x30 | mode << 1)
        writePort(0x40 + channel, UInt8(truncatingIfNeeded: count))
        writePort(0x40 + channel, UInt8(truncatingIfNeeded: count >> 8))
    }
    /// Reads a two-byte count, low byte first.
    fileprivate func readCount(channel: UInt16 = 0) -> UInt16 {
        let low = readPort(0x40 + channel)
        return UInt16(low) | UInt16(readPort(0x40 + channel)) << 8
    }
}

private func risingEdges(_ line: RecordingLine) -> Int {
    var previous = false
    var edges = 0
    for level in line.levels {
        if level && !previous { edges += 1 }
        previous = level
    }
    return edges
}

@Test func tickConversionUsesThe1193182HzInputClock() {
    #expect(PIT8254.tick(at: 1_000_000_000) == 1_193_182)
    #expect(PIT8254.time(ofTick: 1_193_182) == 1_000_000_000)
    #expect(PIT8254.tick(at: PIT8254.time(ofTick: 12345)) == 12345)
    #expect(PIT8254.tick(at: PIT8254.time(ofTick: 12345) - 1) == 12344)
}

@Test func mode0OutputGoesLowOnProgrammingAndHighAtTerminalCount() {
    let (pit, clock, line) = makePIT()
    pit.program(mode: 0, count: 100)
    #expect(!line.isHigh)
    clock.set(tick: 99)
    pit.advance()
    #expect(!line.isHigh)
    clock.set(tick: 100)
    pit.advance()
    #expect(line.isHigh)
    clock.set(tick: 5000)
    pit.advance()
    #expect(line.levels.filter { $0 }.count == 1, "mode 0 fires once")
}

@Test func mode0CountDecrementsWithElapsedTicks() {
    let (pit, clock, _) = makePIT()
    pit.program(mode: 0, count: 100)
    clock.set(tick: 30)
    #expect(pit.readCount() == 70)
}

@Test func mode0CountWrapsPastZero() {
    let (pit, clock, _) = makePIT()
    pit.program(mode: 0, count: 10)
    clock.set(tick: 12)
    #expect(pit.readCount() == 0xfffe)
}

@Test func mode0NextEventIsTheTerminalCount() {
    let (pit, clock, _) = makePIT()
    clock.set(tick: 1000)
    pit.program(mode: 0, count: 500)
    #expect(pit.nextEventTime(after: clock.nanoseconds) == PIT8254.time(ofTick: 1500))
    clock.set(tick: 1500)
    pit.advance()
    #expect(pit.nextEventTime(after: clock.nanoseconds) == nil)
}

@Test func anUnprogrammedTimerHasNoEvents() {
    let (pit, _, line) = makePIT()
    #expect(pit.nextEventTime(after: 0) == nil)
    #expect(line.levels.isEmpty)
}

@Test func countZeroMeans65536() {
    let (pit, clock, line) = makePIT()
    pit.program(mode: 0, count: 0)
    clock.set(tick: 65535)
    pit.advance()
    #expect(!line.isHigh)
    clock.set(tick: 65536)
    pit.advance()
    #expect(line.isHigh)
}

@Test func mode2PulsesLowForOneTickEachPeriod() {
    let (pit, clock, _) = makePIT()
    pit.program(mode: 2, count: 1000)
    #expect(pit.output(channel: 0))
    clock.set(tick: 998)
    #expect(pit.output(channel: 0))
    clock.set(tick: 999)
    #expect(!pit.output(channel: 0))
    clock.set(tick: 1000)
    #expect(pit.output(channel: 0))
    clock.set(tick: 1999)
    #expect(!pit.output(channel: 0))
}

@Test func mode2RaisesIRQ0OncePerPeriod() {
    let (pit, clock, line) = makePIT()
    pit.program(mode: 2, count: 1000)
    let before = risingEdges(line)
    var now: UInt64 = 0
    for _ in 0..<5 {
        guard let next = pit.nextEventTime(after: clock.nanoseconds) else { break }
        clock.nanoseconds = next
        now = next
        pit.advance()
    }
    #expect(now == PIT8254.time(ofTick: 2999), "events at 999, 1000, 1999, 2000, 2999")
    #expect(risingEdges(line) - before == 2)
}

@Test(arguments: [UInt8(2), 3])
func channel0CountsNoShorterPeriodThanTheMinimum(mode: UInt8) {
    // A hostile guest's reload 2 (1.7 µs): channel 0 counts 120 ticks (100 µs) per period, so
    // the runtime is asked to look at it a few times per 100 µs, not every microsecond.
    let (pit, clock, line) = makePIT()
    pit.program(mode: mode, count: 2)
    let before = risingEdges(line)
    var events = 0
    while let next = pit.nextEventTime(after: clock.nanoseconds), next <= 1_000_000 {
        #expect(next > clock.nanoseconds)
        clock.nanoseconds = next
        pit.advance()
        events += 1
    }
    let periods = Int(PIT8254.tick(at: 1_000_000) / PIT8254.minimumPeriodTicks)
    #expect(events <= 2 * periods + 1, "\(events) events in 1 ms")
    #expect(risingEdges(line) - before == periods, "one interrupt per minimum period")
}

@Test func channel2KeepsShortPeriods() {
    // Only channel 0 interrupts: channel 2 (the speaker, port 0x61) counts as programmed.
    let (pit, clock, _) = makePIT()
    pit.writePort(0x61, 1)                                  // gate 2 on
    pit.program(channel: 2, mode: 2, count: 10)
    clock.set(tick: 13)
    #expect(pit.readCount(channel: 2) == 7)
}

@Test func mode2CountReloadsEachPeriod() {
    let (pit, clock, _) = makePIT()
    pit.program(mode: 2, count: 1000)
    clock.set(tick: 1250)
    #expect(pit.readCount() == 750)
}

@Test func lateAdvanceDeliversOneEdgeForManyPeriods() {
    let (pit, clock, line) = makePIT()
    pit.program(mode: 2, count: 100)
    let before = risingEdges(line)
    clock.set(tick: 1050)
    pit.advance()
    #expect(risingEdges(line) - before == 1)
    #expect(line.isHigh)
}

@Test func mode3IsASquareWave() {
    let (pit, clock, _) = makePIT()
    pit.program(mode: 3, count: 1000)
    clock.set(tick: 499)
    #expect(pit.output(channel: 0))
    clock.set(tick: 500)
    #expect(!pit.output(channel: 0))
    clock.set(tick: 999)
    #expect(!pit.output(channel: 0))
    clock.set(tick: 1000)
    #expect(pit.output(channel: 0))
}

@Test func mode3CountsDownByTwoEachHalf() {
    let (pit, clock, _) = makePIT()
    pit.program(mode: 3, count: 1000)
    clock.set(tick: 10)
    #expect(pit.readCount() == 980)
    clock.set(tick: 510)
    #expect(pit.readCount() == 980)
}

@Test func mode3EventsAreBothEdges() {
    let (pit, clock, _) = makePIT()
    clock.set(tick: 7)
    pit.program(mode: 3, count: 1000)
    #expect(pit.nextEventTime(after: clock.nanoseconds) == PIT8254.time(ofTick: 507))
    #expect(pit.nextEventTime(after: PIT8254.time(ofTick: 507)) == PIT8254.time(ofTick: 1007))
}

@Test func counterLatchFreezesTheCountUntilRead() {
    let (pit, clock, _) = makePIT()
    pit.program(mode: 0, count: 100)
    clock.set(tick: 30)
    pit.writePort(0x43, 0x00)
    clock.set(tick: 60)
    #expect(pit.readCount() == 70)
    #expect(pit.readCount() == 40, "the latch is released once read in full")
}

@Test func aSecondLatchBeforeReadingIsIgnored() {
    let (pit, clock, _) = makePIT()
    pit.program(mode: 0, count: 100)
    clock.set(tick: 30)
    pit.writePort(0x43, 0x00)
    clock.set(tick: 50)
    pit.writePort(0x43, 0x00)
    #expect(pit.readCount() == 70)
}

@Test func lowByteOnlyAccessLoadsAndReadsOneByte() {
    let (pit, clock, line) = makePIT()
    pit.writePort(0x43, 0x10)  // channel 0, LSB only, mode 0
    pit.writePort(0x40, 50)
    clock.set(tick: 20)
    #expect(pit.readPort(0x40) == 30)
    #expect(pit.readPort(0x40) == 30, "no flip-flop in LSB-only mode")
    clock.set(tick: 50)
    pit.advance()
    #expect(line.isHigh)
}

@Test func highByteOnlyAccessLoadsTheMSB() {
    let (pit, clock, _) = makePIT()
    pit.writePort(0x43, 0x20)  // channel 0, MSB only, mode 0
    pit.writePort(0x40, 0x02)
    #expect(pit.readPort(0x40) == 0x02)
    clock.set(tick: 256)
    #expect(pit.readPort(0x40) == 0x01)
    #expect(pit.nextEventTime(after: 0) == PIT8254.time(ofTick: 512))
}

@Test func readBackLatchesStatus() {
    let (pit, _, _) = makePIT()
    pit.writePort(0x43, 0x34)  // channel 0, LSB then MSB, mode 2
    pit.writePort(0x43, 0xe2)  // read-back status of channel 0
    #expect(pit.readPort(0x40) == 0x80 | 0x40 | 0x34, "OUT high, null count, control bits")
    pit.writePort(0x40, 0x10)
    pit.writePort(0x40, 0x00)
    pit.writePort(0x43, 0xe2)
    #expect(pit.readPort(0x40) == 0x80 | 0x34, "count loaded")
}

@Test func readBackCanLatchStatusAndCountTogether() {
    let (pit, clock, _) = makePIT()
    pit.program(mode: 0, count: 100)
    clock.set(tick: 25)
    pit.writePort(0x43, 0xc2)
    #expect(pit.readPort(0x40) == 0x30, "status first: OUT low, mode 0, LSB/MSB")
    #expect(pit.readCount() == 75)
}

@Test func bcdCountingReadsDecimalDigits() {
    let (pit, clock, _) = makePIT()
    pit.writePort(0x43, 0x31)  // channel 0, LSB then MSB, mode 0, BCD
    pit.writePort(0x40, 0x00)
    pit.writePort(0x40, 0x01)  // 0100 decimal
    clock.set(tick: 1)
    #expect(pit.readCount() == 0x0099)
}

@Test func reprogrammingMode0DropsIRQ0() {
    let (pit, clock, line) = makePIT()
    pit.program(mode: 0, count: 10)
    clock.set(tick: 10)
    pit.advance()
    #expect(line.isHigh)
    pit.writePort(0x43, 0x30)
    #expect(!line.isHigh)
}

@Test func channel2GateAndOutputThroughPort61() {
    let (pit, clock, _) = makePIT()
    pit.writePort(0x61, 0x01)  // gate 2 high, speaker off
    pit.program(channel: 2, mode: 0, count: 0xffff)
    clock.set(tick: 0xfffe)
    #expect(pit.readPort(0x61) & 0x20 == 0)
    clock.set(tick: 0xffff)
    #expect(pit.readPort(0x61) & 0x20 != 0)
    #expect(pit.readPort(0x61) & 0x0f == 0x01)
}

@Test func lowGatePausesChannel2InMode0() {
    let (pit, clock, _) = makePIT()
    pit.writePort(0x61, 0x01)
    pit.program(channel: 2, mode: 0, count: 1000)
    clock.set(tick: 100)
    pit.writePort(0x61, 0x00)
    clock.set(tick: 600)
    #expect(pit.readCount(channel: 2) == 900)
    pit.writePort(0x61, 0x01)
    clock.set(tick: 700)
    #expect(pit.readCount(channel: 2) == 800)
}

@Test func channel2DoesNotCountBeforeItsGateRises() {
    let (pit, clock, _) = makePIT()
    pit.program(channel: 2, mode: 0, count: 1000)
    clock.set(tick: 5000)
    #expect(pit.readCount(channel: 2) == 1000)
    #expect(pit.readPort(0x61) & 0x20 == 0)
}

@Test func lowGateHoldsMode2OutputHighAndRisingGateReloads() {
    let (pit, clock, _) = makePIT()
    pit.writePort(0x61, 0x01)
    pit.program(channel: 2, mode: 2, count: 100)
    clock.set(tick: 40)
    pit.writePort(0x61, 0x00)
    clock.set(tick: 99)
    #expect(pit.readPort(0x61) & 0x20 != 0)
    pit.writePort(0x61, 0x01)
    clock.set(tick: 109)
    #expect(pit.readCount(channel: 2) == 90, "counting restarted from the reload at tick 99")
}

@Test func refreshBitTogglesWithVirtualTime() {
    let (pit, clock, _) = makePIT()
    let first = pit.readPort(0x61) & 0x10
    clock.advance(by: PIT8254.refreshTogglePeriod)
    #expect(pit.readPort(0x61) & 0x10 != first)
}

@Test func portDeviceWindowsReachTheSameCounters() {
    let (pit, clock, _) = makePIT()
    let ports = pit.ports
    ports.write(offset: 3, size: 1, value: 0x30)
    ports.write(offset: 0, size: 1, value: 200)
    ports.write(offset: 0, size: 1, value: 0)
    clock.set(tick: 50)
    #expect(ports.read(offset: 0, size: 1) == 150)
    #expect(ports.read(offset: 3, size: 1) == 0xff, "the control port is write-only")
    #expect(pit.systemControlPorts.read(offset: 0, size: 2) & 0xff00 == 0xff00)
}

@Test(arguments: [UInt8(1), 4, 5])
func modesOneFourAndFiveCountAsMode0(mode: UInt8) {
    let (pit, clock, line) = makePIT()
    pit.program(mode: mode, count: 100)
    pit.writePort(0x43, 0xe2)
    #expect(pit.readPort(0x40) & 0x0e == mode << 1, "the programmed mode is reported")
    clock.set(tick: 100)
    pit.advance()
    #expect(line.isHigh)
    #expect(pit.nextEventTime(after: clock.nanoseconds) == nil)
}

@Test func modes6And7AreModes2And3() {
    let (pit, clock, _) = makePIT()
    pit.program(mode: 6, count: 1000)
    clock.set(tick: 999)
    #expect(!pit.output(channel: 0))
    pit.writePort(0x43, 0xe2)
    #expect(pit.readPort(0x40) & 0x0e == 0x0c, "status reports the bits as written")
}

@Test func randomGuestScriptsNeverTrapAndIRQ0FollowsOUT0() {
    let (pit, clock, line) = makePIT()
    var random = ScriptRandom(seed: 5)
    for _ in 0..<20_000 {
        let port = UInt16(0x40 + random.below(4))
        switch random.below(4) {
        case 0: pit.writePort(port, UInt8(truncatingIfNeeded: random.next()))
        case 1: _ = pit.readPort(random.below(5) == 0 ? 0x61 : port)
        case 2: pit.writePort(0x61, UInt8(truncatingIfNeeded: random.next()))
        default:
            clock.advance(by: random.below(200_000))
            pit.advance()
            #expect(line.isHigh == pit.output(channel: 0))
        }
        _ = pit.nextEventTime(after: clock.nanoseconds)
    }
}
