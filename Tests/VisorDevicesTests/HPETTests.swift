// The HPET: its capabilities, the 100 MHz main counter from the virtual clock, one-shot and
// periodic comparators, edge and level interrupts routed to I/O APIC pins, legacy replacement
// routing, and hostile accesses of every size and offset.

import Testing
import VisorDevices

/// Keeps every level the HPET drives, by output, in order.
final class RecordingHPETOutput: HPETInterruptOutput {
    enum Event: Equatable {
        case pin(Int, Bool)
        case irq(Int, Bool)
        case legacy(Bool)
    }
    private(set) var events: [Event] = []
    func setIOAPICPin(_ pin: Int, level: Bool) { events.append(.pin(pin, level)) }
    func setLegacyIRQ(_ irq: Int, level: Bool) { events.append(.irq(irq, level)) }
    func legacyReplacementChanged(_ enabled: Bool) { events.append(.legacy(enabled)) }
    /// Rising edges on I/O APIC pin `pin`.
    func edges(pin: Int) -> Int { events.filter { $0 == .pin(pin, true) }.count }
    func edges(irq: Int) -> Int { events.filter { $0 == .irq(irq, true) }.count }
    func clear() { events = [] }
}

typealias Conf = HPET.TimerConfiguration

/// An HPET with a manual clock and a recording output.
struct HPETBench {
    let clock = ManualClock()
    let output = RecordingHPETOutput()
    let hpet: HPET
    init() { hpet = HPET(clock: clock, output: output) }

    func write64(_ offset: UInt64, _ value: UInt64) { hpet.write(offset: offset, size: 8, value: value) }
    func read64(_ offset: UInt64) -> UInt64 { hpet.read(offset: offset, size: 8) }
    func enable(legacy: Bool = false) {
        write64(HPET.Register.configuration, HPET.Configuration.enable | (legacy ? HPET.Configuration.legacyRoute : 0))
    }
    /// Timer `n` edge-triggered, enabled, routed to `pin`.
    func route(_ n: Int, pin: UInt64, extra: UInt64 = 0) {
        write64(HPET.Register.timerConfiguration(n), Conf.interruptEnable | pin << Conf.routeShift | extra)
    }
    /// Moves the clock on by `ticks` of 100 MHz and lets the runtime catch up.
    func run(ticks: UInt64) {
        clock.advance(by: ticks * 10)
        hpet.advance()
    }
}

@Test func gcapIDAnnouncesThreeTimers64BitsLegacyRoutingAnd10ns() {
    let bench = HPETBench()
    let cap = bench.read64(HPET.Register.capabilities)
    #expect(cap & 0xff == 1, "REV_ID")
    #expect((cap >> 8) & 0x1f == 2, "NUM_TIM_CAP: three timers")
    #expect(cap & (1 << 13) != 0, "COUNT_SIZE_CAP")
    #expect(cap & (1 << 15) != 0, "LEG_RT_CAP")
    #expect((cap >> 16) & 0xffff == 0x8086, "VENDOR_ID")
    #expect(cap >> 32 == 10_000_000, "COUNTER_CLK_PERIOD: 10 ns in femtoseconds")
    #expect(HPET.eventTimerBlockID == UInt32(truncatingIfNeeded: cap))
    #expect(bench.hpet.read(offset: 4, size: 4) == 10_000_000, "the high half read alone")
    // Timer 0 is periodic-capable, all are 64-bit and offer pins 20-23, none offers FSB.
    for n in 0..<3 {
        let conf = bench.read64(HPET.Register.timerConfiguration(n))
        #expect((conf & Conf.periodicCapable != 0) == (n == 0))
        #expect(conf & Conf.size64Capable != 0)
        #expect(conf & Conf.fsbCapable == 0)
        #expect(conf >> 32 == 0x00f0_0000)
        #expect(bench.read64(HPET.Register.timerComparator(n)) == .max, "comparators reset to all ones")
    }
}

@Test func theMainCounterCountsAt100MHzOnlyWhileEnabled() {
    let bench = HPETBench()
    bench.clock.advance(by: 1_000_000)
    #expect(bench.read64(HPET.Register.mainCounter) == 0, "halted after reset")
    bench.enable()
    bench.clock.advance(by: 1_000_000_000)
    #expect(bench.read64(HPET.Register.mainCounter) == 100_000_000, "one second")
    bench.clock.advance(by: 9)
    #expect(bench.read64(HPET.Register.mainCounter) == 100_000_000, "less than a tick")
    bench.clock.advance(by: 1)
    #expect(bench.read64(HPET.Register.mainCounter) == 100_000_001)
    bench.write64(HPET.Register.configuration, 0)
    bench.clock.advance(by: 5_000_000)
    #expect(bench.read64(HPET.Register.mainCounter) == 100_000_001, "ENABLE_CNF clear: the counter holds")
    bench.write64(HPET.Register.mainCounter, 0xffff_ffff_ffff_fff0)
    bench.enable()
    bench.clock.advance(by: 200)
    #expect(bench.read64(HPET.Register.mainCounter) == 4, "it resumes from the value written, and wraps at 64 bits")
    // 32-bit halves of the counter.
    bench.write64(HPET.Register.configuration, 0)
    bench.hpet.write(offset: HPET.Register.mainCounter + 4, size: 4, value: 0x1234_5678)
    #expect(bench.hpet.read(offset: HPET.Register.mainCounter, size: 4) == 4)
    #expect(bench.hpet.read(offset: HPET.Register.mainCounter + 4, size: 4) == 0x1234_5678)
}

@Test func aOneShotComparatorRaisesOneEdgeOnItsIOAPICPinWhenTheCounterReachesIt() {
    let bench = HPETBench()
    bench.route(2, pin: 21)
    bench.write64(HPET.Register.timerComparator(2), 1000)
    bench.enable()
    #expect(bench.hpet.nextEventTime(after: bench.clock.nanoseconds) == 10_000, "tick 1000 begins at 10 µs")
    bench.run(ticks: 999)
    #expect(bench.output.edges(pin: 21) == 0, "one tick early")
    bench.run(ticks: 1)
    #expect(bench.output.events == [.pin(21, true), .pin(21, false)], "one edge at the match")
    bench.run(ticks: 100_000)
    #expect(bench.output.edges(pin: 21) == 1, "a one-shot does not fire again")
    #expect(bench.read64(HPET.Register.timerComparator(2)) == 1000, "and its comparator stays")
    #expect(bench.hpet.nextEventTime(after: bench.clock.nanoseconds) == nil, "a 64-bit comparator behind the counter is 2^64 ticks away")
    #expect(bench.read64(HPET.Register.interruptStatus) == 0, "edge-triggered: no status bit")
}

@Test func aTimerRaisesNothingWhileDisabledOrWithoutARoutableRoute() {
    let bench = HPETBench()
    bench.write64(HPET.Register.timerComparator(1), 100)
    bench.write64(HPET.Register.timerConfiguration(1), 22 << Conf.routeShift)  // Tn_INT_ENB_CNF clear
    bench.enable()
    #expect(bench.hpet.nextEventTime(after: 0) == nil)
    bench.run(ticks: 200)
    // Pin 5 is not in Tn_INT_ROUTE_CAP: the old route (22) reads back.
    bench.route(1, pin: 5)
    #expect((bench.read64(HPET.Register.timerConfiguration(1)) & Conf.routeMask) >> Conf.routeShift == 22)
    bench.write64(HPET.Register.timerComparator(1), 300)
    bench.write64(HPET.Register.configuration, 0)
    bench.run(ticks: 1000)
    #expect(bench.output.events.isEmpty, "disabled timer, then a halted HPET")
    bench.enable()
    bench.write64(HPET.Register.mainCounter, 0)
    bench.run(ticks: 300)
    #expect(bench.output.edges(pin: 22) == 1)
}

@Test func timer0InPeriodicModeFiresEveryPeriodAndItsComparatorAdvances() {
    let bench = HPETBench()
    // Linux's sequence: VAL_SET with the first match, then the period alone.
    bench.route(0, pin: 20, extra: Conf.periodic | Conf.valueSet)
    bench.write64(HPET.Register.timerComparator(0), 50_000)
    bench.write64(HPET.Register.timerComparator(0), 20_000)
    #expect(bench.read64(HPET.Register.timerConfiguration(0)) & Conf.valueSet == 0, "VAL_SET clears on the write")
    #expect(bench.read64(HPET.Register.timerComparator(0)) == 50_000)
    bench.enable()
    bench.run(ticks: 50_000)
    #expect(bench.output.edges(pin: 20) == 1)
    #expect(bench.read64(HPET.Register.timerComparator(0)) == 70_000)
    for expected in 2...5 {
        #expect(bench.hpet.nextEventTime(after: bench.clock.nanoseconds) == bench.clock.nanoseconds + 200_000)
        bench.run(ticks: 20_000)
        #expect(bench.output.edges(pin: 20) == expected)
    }
    // A late runtime: 3.5 periods at once give one edge, and the comparator the next match ahead.
    bench.run(ticks: 70_000)
    #expect(bench.output.edges(pin: 20) == 6)
    #expect(bench.read64(HPET.Register.timerComparator(0)) == 50_000 + 8 * 20_000)
    // Timers 1 and 2 cannot be periodic.
    bench.route(2, pin: 23, extra: Conf.periodic)
    #expect(bench.read64(HPET.Register.timerConfiguration(2)) & Conf.periodic == 0)
}

@Test func aPeriodicTimerCannotFireFasterThanTheMinimumPeriod() {
    let bench = HPETBench()
    bench.route(0, pin: 20, extra: Conf.periodic | Conf.valueSet)
    bench.write64(HPET.Register.timerComparator(0), 10)
    bench.write64(HPET.Register.timerComparator(0), 1)  // 10 ns
    bench.enable()
    bench.run(ticks: 10)
    #expect(bench.output.edges(pin: 20) == 1)
    #expect(bench.read64(HPET.Register.timerComparator(0)) == 10 + HPET.minimumPeriodTicks)
    #expect(bench.hpet.nextEventTime(after: bench.clock.nanoseconds) == bench.clock.nanoseconds + 100_000)
}

@Test func aTimerIn32BitModeMatchesTheCounterLow32BitsAndAgainAfterTheirWrap() {
    let bench = HPETBench()
    bench.route(1, pin: 23, extra: Conf.mode32)
    bench.write64(HPET.Register.timerComparator(1), 0x1_0000_0100)
    #expect(bench.read64(HPET.Register.timerComparator(1)) == 0x100, "32 bits wide")
    bench.hpet.write(offset: HPET.Register.timerComparator(1) + 4, size: 4, value: 7)
    #expect(bench.read64(HPET.Register.timerComparator(1)) == 0x100, "the high half is not there")
    bench.write64(HPET.Register.mainCounter, 0x5_0000_0000)
    bench.enable()
    bench.run(ticks: 0x100)
    #expect(bench.output.edges(pin: 23) == 1)
    #expect(bench.hpet.nextEventTime(after: bench.clock.nanoseconds) == bench.clock.nanoseconds + (1 << 32) * 10)
    bench.run(ticks: 1 << 32)
    #expect(bench.output.edges(pin: 23) == 2, "a one-shot fires again when the low 32 bits wrap")
}

@Test func aLevelTriggeredTimerHoldsItsPinUntilTheGuestClearsItsStatusBit() {
    let bench = HPETBench()
    bench.route(2, pin: 22, extra: Conf.levelTriggered)
    bench.write64(HPET.Register.timerComparator(2), 100)
    bench.enable()
    bench.run(ticks: 100)
    #expect(bench.output.events == [.pin(22, true)])
    #expect(bench.read64(HPET.Register.interruptStatus) == 1 << 2)
    #expect(bench.hpet.nextEventTime(after: bench.clock.nanoseconds) == nil, "nothing changes until it is cleared")
    bench.write64(HPET.Register.interruptStatus, 1 << 0)  // another timer's bit: nothing
    #expect(bench.read64(HPET.Register.interruptStatus) == 1 << 2)
    bench.write64(HPET.Register.interruptStatus, 1 << 2)
    #expect(bench.output.events == [.pin(22, true), .pin(22, false)])
    #expect(bench.read64(HPET.Register.interruptStatus) == 0)
    // With its interrupt disabled it still sets the status bit, but raises nothing.
    bench.write64(HPET.Register.timerConfiguration(2), Conf.levelTriggered | 22 << Conf.routeShift)
    bench.write64(HPET.Register.timerComparator(2), 200)
    bench.run(ticks: 100)
    #expect(bench.read64(HPET.Register.interruptStatus) == 1 << 2)
    #expect(bench.output.events.count == 2)
    // Enabling it then raises the pending interrupt; moving its route moves the held level.
    bench.write64(HPET.Register.timerConfiguration(2), Conf.levelTriggered | Conf.interruptEnable | 22 << Conf.routeShift)
    bench.write64(HPET.Register.timerConfiguration(2), Conf.levelTriggered | Conf.interruptEnable | 23 << Conf.routeShift)
    #expect(bench.output.events.suffix(3) == [.pin(22, true), .pin(22, false), .pin(23, true)])
    bench.write64(HPET.Register.configuration, 0)
    #expect(bench.output.events.last == .pin(23, false), "ENABLE_CNF clear drops every interrupt")
}

@Test func legacyReplacementSendsTimer0ToIRQ0AndTimer1ToIRQ8AndCutsOffThePITAndRTC() {
    let bench = HPETBench()
    bench.route(0, pin: 20)
    bench.route(1, pin: 21)
    bench.route(2, pin: 22)
    for n in 0..<3 { bench.write64(HPET.Register.timerComparator(n), 100 * UInt64(n + 1)) }
    bench.enable(legacy: true)
    #expect(bench.output.events == [.legacy(true)])
    bench.run(ticks: 300)
    #expect(bench.output.edges(irq: 0) == 1, "timer 0 on IRQ0")
    #expect(bench.output.edges(irq: 8) == 1, "timer 1 on IRQ8")
    #expect(bench.output.edges(pin: 22) == 1, "timer 2 keeps its own route")
    #expect(bench.output.edges(pin: 20) == 0 && bench.output.edges(pin: 21) == 0, "Tn_INT_ROUTE_CNF is ignored for 0 and 1")
    bench.output.clear()
    bench.enable(legacy: false)
    #expect(bench.output.events == [.legacy(false)])
    bench.write64(HPET.Register.timerComparator(0), 400)
    bench.run(ticks: 100)
    #expect(bench.output.edges(pin: 20) == 1, "back on its I/O APIC route")
    // A level-triggered timer 0 moves its held line when legacy routing turns on and off.
    bench.output.clear()
    bench.route(0, pin: 20, extra: Conf.levelTriggered)
    bench.write64(HPET.Register.timerComparator(0), 500)
    bench.run(ticks: 100)
    bench.enable(legacy: true)
    bench.enable(legacy: false)
    #expect(bench.output.events == [.pin(20, true), .legacy(true), .pin(20, false), .irq(0, true),
                                    .irq(0, false), .pin(20, true), .legacy(false)])
}

@Test func anyAccessAtAnyOffsetIsHarmlessAndUnknownRegistersReadZero() {
    let bench = HPETBench()
    bench.enable()
    bench.clock.advance(by: 12_345_670)
    #expect(bench.read64(0x030) == 0 && bench.read64(0x0f8) == 0 && bench.read64(0x3f8) == 0)
    #expect(bench.read64(HPET.Register.timerFSBRoute(0)) == 0)
    #expect(bench.read64(0x100 + 0x20 * 3) == 0, "no timer 3")
    // A read of any size takes the bytes it covers, across registers too.
    let counter = bench.read64(HPET.Register.mainCounter)
    #expect(counter == 1_234_567)
    #expect(bench.hpet.read(offset: HPET.Register.mainCounter + 1, size: 2) == (counter >> 8) & 0xffff)
    #expect(bench.hpet.read(offset: 0x0f, size: 2) == 0x0100, "the reserved quadword's last byte, GEN_CONF's first")
    #expect(bench.hpet.read(offset: 0x0e, size: 4) == 0x0001_0000)
    #expect(bench.hpet.read(offset: 0x0c, size: 8) == 1 << 32)
    #expect(bench.hpet.read(offset: 0x04, size: 8) == 10_000_000, "COUNTER_CLK_PERIOD, then the reserved 0x08")
    // Misaligned and odd-sized writes are ignored.
    bench.hpet.write(offset: HPET.Register.configuration, size: 1, value: 0)
    bench.hpet.write(offset: HPET.Register.configuration + 4, size: 8, value: 0)
    bench.hpet.write(offset: HPET.Register.configuration + 2, size: 4, value: 0)
    #expect(bench.read64(HPET.Register.configuration) == HPET.Configuration.enable)
    bench.write64(HPET.Register.capabilities, 0)
    #expect(bench.read64(HPET.Register.capabilities) >> 32 == 10_000_000, "GCAP_ID is read-only")
    bench.write64(HPET.Register.configuration, .max)
    #expect(bench.read64(HPET.Register.configuration) == 3, "reserved GEN_CONF bits read 0")
    var random = ScriptRandom(seed: 0x4e7)
    for _ in 0..<20_000 {
        let offset = random.below(0x500)
        let size = UInt8(random.below(10))
        if random.below(2) == 0 {
            _ = bench.hpet.read(offset: offset, size: size)
        } else {
            bench.hpet.write(offset: offset, size: size, value: random.next() << 31 | random.next())
        }
        bench.clock.advance(by: random.below(1 << random.below(40)))
        bench.hpet.advance()
        if let next = bench.hpet.nextEventTime(after: bench.clock.nanoseconds) {
            #expect(next > bench.clock.nanoseconds)
        }
    }
}
