// The local APIC, one behaviour per test, through the guest's register accesses, the runtime's
// delivery and acknowledge calls, and a virtual clock moved by hand.

import Testing
import VisorDevices

private typealias Reg = LocalAPIC.Register

private final class RecordingIPISink: IPISink {
    private(set) var sent: [InterprocessorInterrupt] = []
    func send(_ ipi: InterprocessorInterrupt) { sent.append(ipi) }
}

extension LocalAPIC {
    fileprivate func get(_ register: UInt64) -> UInt32 {
        UInt32(truncatingIfNeeded: read(offset: register, size: 4))
    }
    fileprivate func set(_ register: UInt64, _ value: UInt32) {
        write(offset: register, size: 4, value: UInt64(value))
    }
    /// Bit `vector` of the 256-bit register array at `base` (ISR, TMR or IRR).
    fileprivate func bit(_ vector: UInt8, of base: UInt64) -> Bool {
        get(base + UInt64(vector >> 5) * 0x10) & (1 << UInt32(vector & 31)) != 0
    }
}

private func makeAPIC(id: UInt8 = 0, enabled: Bool = true)
    -> (LocalAPIC, ManualClock, RecordingIPISink, RecordingLine)
{
    let clock = ManualClock()
    let sink = RecordingIPISink()
    let line = RecordingLine()
    let apic = LocalAPIC(id: id, clock: clock, ipiSink: sink, interruptLine: line)
    if enabled { apic.set(Reg.svr, 0x1ff) }
    return (apic, clock, sink, line)
}

// MARK: Registers

@Test func idAndVersionRegisters() {
    let (apic, _, _, _) = makeAPIC(id: 3)
    #expect(apic.get(Reg.id) == 0x0300_0000)
    #expect(apic.get(Reg.version) == 0x0005_0014)
}

@Test func taskPriorityKeepsItsLowByte() {
    let (apic, _, _, _) = makeAPIC()
    apic.set(Reg.tpr, 0x1234)
    #expect(apic.get(Reg.tpr) == 0x34)
}

@Test func spuriousVectorRegisterResetsDisabledAndEnables() {
    let (apic, _, _, _) = makeAPIC(enabled: false)
    #expect(apic.get(Reg.svr) == 0xff)
    #expect(!apic.isSoftwareEnabled)
    apic.set(Reg.svr, 0xffff_f1ff)
    #expect(apic.get(Reg.svr) == 0x1ff, "reserved bits (and EOI-broadcast suppression) read 0")
    #expect(apic.isSoftwareEnabled)
}

@Test func lvtEntriesResetMasked() {
    let (apic, _, _, _) = makeAPIC()
    for register in stride(from: Reg.lvtTimer, through: Reg.lvtError, by: 0x10) {
        #expect(apic.get(register) == 0x1_0000)
    }
}

@Test func lvtEntriesStayMaskedWhileSoftwareDisabled() {
    let (apic, _, _, _) = makeAPIC(enabled: false)
    apic.set(Reg.lvtTimer, 0x20)
    #expect(apic.get(Reg.lvtTimer) == 0x1_0020)
}

@Test func softwareDisableMasksEveryLVT() {
    let (apic, _, _, _) = makeAPIC()
    apic.set(Reg.lvtLINT0, 0x700)
    apic.set(Reg.svr, 0xff)
    #expect(apic.get(Reg.lvtLINT0) == 0x1_0700)
}

@Test func lvtEntriesKeepOnlyTheirDefinedBits() {
    let (apic, _, _, _) = makeAPIC()
    apic.set(Reg.lvtTimer, 0xffff_ffff)
    apic.set(Reg.lvtLINT1, 0xffff_ffff)
    apic.set(Reg.lvtError, 0xffff_ffff)
    #expect(apic.get(Reg.lvtTimer) == 0x7_00ff)
    #expect(apic.get(Reg.lvtLINT1) == 0x1_a7ff, "delivery status and remote IRR are read-only")
    #expect(apic.get(Reg.lvtError) == 0x1_00ff)
}

@Test func logicalDestinationAndFormatRegisters() {
    let (apic, _, _, _) = makeAPIC()
    #expect(apic.get(Reg.dfr) == 0xffff_ffff)
    apic.set(Reg.ldr, 0x0312_3456)
    apic.set(Reg.dfr, 0x0000_0000)
    #expect(apic.get(Reg.ldr) == 0x0300_0000)
    #expect(apic.get(Reg.dfr) == 0x0fff_ffff)
}

@Test func subDwordReadsTakeBytesOfTheRegister() {
    let (apic, _, _, _) = makeAPIC()
    #expect(apic.read(offset: Reg.version + 2, size: 1) == 0x05)
    #expect(apic.read(offset: Reg.version, size: 2) == 0x0014)
    #expect(apic.read(offset: Reg.version + 4, size: 4) == 0, "the rest of the slot reads 0")
}

@Test func registersOnlyTakeAlignedDwordWrites() {
    let (apic, _, _, _) = makeAPIC()
    apic.write(offset: Reg.tpr, size: 1, value: 0x40)
    apic.write(offset: Reg.tpr + 1, size: 4, value: 0x40)
    apic.write(offset: Reg.tpr, size: 8, value: 0x40)
    #expect(apic.get(Reg.tpr) == 0)
}

@Test func esrShowsErrorsOnlyAfterAWrite() {
    let (apic, _, _, _) = makeAPIC()
    _ = apic.read(offset: 0x010, size: 4)
    #expect(apic.get(Reg.esr) == 0)
    apic.set(Reg.esr, 0)
    #expect(apic.get(Reg.esr) == LocalAPIC.ESR.illegalRegisterAddress)
    apic.set(Reg.esr, 0)
    #expect(apic.get(Reg.esr) == 0, "the write also clears what was logged")
}

@Test func errorLVTRaisesAnInterruptOnError() {
    let (apic, _, _, _) = makeAPIC()
    apic.set(Reg.lvtError, 0xfe)
    apic.set(0x3f0, 1)  // no register there
    #expect(apic.pendingVector() == 0xfe)
}

@Test func hostileAccessesAtEveryOffsetAndSizeDoNotTrap() {
    let (apic, clock, _, _) = makeAPIC()
    var random = ScriptRandom(seed: 7)
    for offset in UInt64(0)..<0x1000 {
        for size: UInt8 in [1, 2, 4, 8] {
            _ = apic.read(offset: offset, size: size)
            apic.write(offset: offset, size: size, value: random.next() | random.next() << 32)
            clock.advance(by: random.below(100))
        }
    }
    for offset: UInt64 in [0x1000, 0xffc, 0xfff, .max, .max - 3] {
        _ = apic.read(offset: offset, size: 8)
        apic.write(offset: offset, size: 4, value: .max)
        _ = apic.read(offset: offset, size: 0)
        _ = apic.read(offset: offset, size: 255)
    }
    apic.writeTSCDeadline(.max)
    apic.advance()
    _ = apic.nextEventTime(after: .max)
    #expect(apic.read(offset: Reg.version, size: 4) == 0x0005_0014)
}

// MARK: Acceptance, priority and EOI

@Test func acceptedInterruptSetsItsIRRBitAndRaisesINTR() {
    let (apic, _, _, line) = makeAPIC()
    apic.acceptInterrupt(vector: 0x31)
    #expect(apic.get(Reg.irr + 0x10) == 1 << 17)
    #expect(line.isHigh)
}

@Test func highestVectorIsTakenFirst() {
    let (apic, _, _, _) = makeAPIC()
    apic.acceptInterrupt(vector: 0x40)
    apic.acceptInterrupt(vector: 0x80)
    #expect(apic.acknowledge() == 0x80)
    #expect(apic.bit(0x80, of: Reg.isr))
    #expect(!apic.bit(0x80, of: Reg.irr))
}

@Test func taskPriorityBlocksItsClassAndBelow() {
    let (apic, _, _, line) = makeAPIC()
    apic.set(Reg.tpr, 0x50)
    apic.acceptInterrupt(vector: 0x5f)
    #expect(apic.pendingVector() == nil)
    #expect(!line.isHigh)
    apic.acceptInterrupt(vector: 0x61)
    #expect(apic.pendingVector() == 0x61)
}

@Test func loweringTaskPriorityReleasesHeldInterrupts() {
    let (apic, _, _, line) = makeAPIC()
    apic.set(Reg.tpr, 0xf0)
    apic.acceptInterrupt(vector: 0x40)
    #expect(!line.isHigh)
    apic.set(Reg.tpr, 0x00)
    #expect(line.isHigh)
}

@Test func inServiceClassBlocksTheSameClass() {
    let (apic, _, _, _) = makeAPIC()
    apic.acceptInterrupt(vector: 0x61)
    _ = apic.acknowledge()
    #expect(apic.get(Reg.ppr) == 0x60)
    apic.acceptInterrupt(vector: 0x6f)
    #expect(apic.pendingVector() == nil, "a higher vector of the same class waits")
    apic.acceptInterrupt(vector: 0x71)
    #expect(apic.pendingVector() == 0x71)
}

@Test func processorPriorityIsTaskPriorityWhenItsClassIsHigher() {
    let (apic, _, _, _) = makeAPIC()
    apic.acceptInterrupt(vector: 0x61)
    _ = apic.acknowledge()
    apic.set(Reg.tpr, 0x72)
    #expect(apic.get(Reg.ppr) == 0x72)
    apic.set(Reg.tpr, 0x6a)
    #expect(apic.get(Reg.ppr) == 0x6a, "equal class: TPR wins")
    apic.set(Reg.tpr, 0x5a)
    #expect(apic.get(Reg.ppr) == 0x60)
}

@Test func eoiClearsTheHighestInServiceVector() {
    let (apic, _, _, _) = makeAPIC()
    apic.acceptInterrupt(vector: 0x40)
    _ = apic.acknowledge()
    apic.acceptInterrupt(vector: 0x80)
    _ = apic.acknowledge()
    apic.set(Reg.eoi, 0)
    #expect(!apic.bit(0x80, of: Reg.isr))
    #expect(apic.bit(0x40, of: Reg.isr))
}

@Test func eoiReleasesALowerPriorityRequest() {
    let (apic, _, _, line) = makeAPIC()
    apic.acceptInterrupt(vector: 0x90)
    _ = apic.acknowledge()
    apic.acceptInterrupt(vector: 0x85)
    #expect(!line.isHigh)
    apic.set(Reg.eoi, 0)
    #expect(line.isHigh)
    #expect(apic.pendingVector() == 0x85)
}

@Test func acknowledgeWithNothingPendingReturnsTheSpuriousVector() {
    let (apic, _, _, _) = makeAPIC()
    apic.set(Reg.svr, 0x1ef)
    #expect(apic.acknowledge() == 0xef)
    #expect(apic.get(Reg.isr + 0x70) == 0)
}

@Test func levelTriggeredInterruptSetsTMRUntilEOI() {
    let (apic, _, _, _) = makeAPIC()
    apic.acceptInterrupt(vector: 0x41, levelTriggered: true)
    #expect(apic.bit(0x41, of: Reg.tmr))
    _ = apic.acknowledge()
    apic.set(Reg.eoi, 0)
    #expect(!apic.bit(0x41, of: Reg.tmr))
}

@Test func vectorsBelow16AreRefusedWithReceiveIllegalVector() {
    let (apic, _, _, _) = makeAPIC()
    #expect(!apic.acceptInterrupt(vector: 0x0f))
    #expect(apic.pendingVector() == nil)
    apic.set(Reg.esr, 0)
    #expect(apic.get(Reg.esr) == LocalAPIC.ESR.receiveIllegalVector)
}

@Test func softwareDisabledAPICRefusesFixedInterrupts() {
    let (apic, _, _, _) = makeAPIC(enabled: false)
    #expect(!apic.acceptInterrupt(vector: 0x40))
    #expect(apic.pendingVector() == nil)
}

@Test func initResetKeepsOnlyTheID() {
    let (apic, _, _, _) = makeAPIC(id: 5)
    apic.set(Reg.tpr, 0x20)
    apic.acceptInterrupt(vector: 0x40)
    apic.reset()
    #expect(apic.get(Reg.id) == 0x0500_0000)
    #expect(apic.get(Reg.tpr) == 0)
    #expect(apic.get(Reg.svr) == 0xff)
    #expect(apic.pendingVector() == nil)
}

// MARK: Timer

@Test func oneShotTimerCountsDownAndFiresOnce() {
    let (apic, clock, _, _) = makeAPIC()
    apic.set(Reg.timerDivideConfiguration, 0b1011)  // divide by 1
    apic.set(Reg.lvtTimer, 0x30)
    apic.set(Reg.timerInitialCount, 1000)
    clock.nanoseconds = 400
    #expect(apic.get(Reg.timerCurrentCount) == 600)
    #expect(apic.nextEventTime(after: 400) == 1000)
    clock.nanoseconds = 999
    apic.advance()
    #expect(apic.pendingVector() == nil)
    clock.nanoseconds = 1000
    apic.advance()
    #expect(apic.acknowledge() == 0x30)
    apic.set(Reg.eoi, 0)
    clock.nanoseconds = 5000
    apic.advance()
    #expect(apic.pendingVector() == nil)
    #expect(apic.get(Reg.timerCurrentCount) == 0)
    #expect(apic.nextEventTime(after: 5000) == nil)
}

@Test(arguments: [
    (UInt32(0b0000), UInt64(2)), (0b0001, 4), (0b0010, 8), (0b0011, 16),
    (0b1000, 32), (0b1001, 64), (0b1010, 128), (0b1011, 1),
])
func timerDivideConfiguration(code: UInt32, divider: UInt64) {
    let (apic, clock, _, _) = makeAPIC()
    apic.set(Reg.timerDivideConfiguration, code)
    #expect(apic.get(Reg.timerDivideConfiguration) == code)
    apic.set(Reg.lvtTimer, 0x30)
    apic.set(Reg.timerInitialCount, 100)
    clock.nanoseconds = 10 * divider
    #expect(apic.get(Reg.timerCurrentCount) == 90)
    #expect(apic.nextEventTime(after: 0) == 100 * divider)
}

@Test func periodicTimerReloadsAndFiresEachPeriod() {
    let (apic, clock, _, _) = makeAPIC()
    apic.set(Reg.timerDivideConfiguration, 0b1011)
    apic.set(Reg.lvtTimer, LocalAPIC.LVT.periodic | 0x31)
    apic.set(Reg.timerInitialCount, 200_000)
    clock.nanoseconds = 200_000
    apic.advance()
    #expect(apic.acknowledge() == 0x31)
    apic.set(Reg.eoi, 0)
    clock.nanoseconds = 250_000
    #expect(apic.get(Reg.timerCurrentCount) == 150_000)
    #expect(apic.nextEventTime(after: 250_000) == 400_000)
    clock.nanoseconds = 400_000
    apic.advance()
    #expect(apic.acknowledge() == 0x31)
}

@Test(arguments: [(UInt32(0b1011), UInt64(1)), (0b0000, 2), (0b1010, 128)])
func periodicTimerFiresNoMoreOftenThanTheMinimumPeriod(code: UInt32, divider: UInt64) {
    // A hostile guest's count 1 (1 ns at divide 1): one expiry per 100 µs, not per nanosecond.
    let (apic, clock, _, _) = makeAPIC()
    let minimum = LocalAPIC.minimumPeriodNanoseconds
    apic.set(Reg.timerDivideConfiguration, code)
    apic.set(Reg.lvtTimer, LocalAPIC.LVT.periodic | 0x31)
    apic.set(Reg.timerInitialCount, 1)
    let first = apic.nextEventTime(after: 0)
    #expect(first.map { $0 >= minimum } ?? false, "first expiry at \(String(describing: first)) ns")
    #expect(first.map { $0 < minimum + divider } ?? false, "the period is the minimum, rounded up to a tick")
    var expiries = 0
    var now: UInt64 = 0
    // Follow the timer for 1 ms of virtual time as the runtime does: advance at each event.
    while let next = apic.nextEventTime(after: now), next <= 1_000_000 {
        #expect(next > now, "the next event is in the future")
        now = next
        clock.nanoseconds = now
        apic.advance()
        if apic.pendingVector() == 0x31 {
            expiries += 1
            _ = apic.acknowledge()
            apic.set(Reg.eoi, 0)
        }
    }
    let period = (minimum + divider - 1) / divider * divider
    #expect(expiries == Int(1_000_000 / period), "\(expiries) expiries in 1 ms")
}

@Test func maskedTimerDeliversNothingAndAsksForNoEvents() {
    let (apic, clock, _, _) = makeAPIC()
    apic.set(Reg.lvtTimer, LocalAPIC.LVT.mask | 0x30)
    apic.set(Reg.timerInitialCount, 10)
    #expect(apic.nextEventTime(after: 0) == nil)
    clock.nanoseconds = 1000
    apic.advance()
    #expect(apic.pendingVector() == nil)
    #expect(apic.get(Reg.timerCurrentCount) == 0, "it still counted")
}

@Test func tscDeadlineTimerFiresAtTheDeadlineAndDisarms() {
    let (apic, clock, _, _) = makeAPIC()
    apic.set(Reg.lvtTimer, LocalAPIC.LVT.tscDeadline | 0x32)
    apic.writeTSCDeadline(5000)
    #expect(apic.tscDeadline == 5000)
    #expect(apic.nextEventTime(after: 0) == 5000)
    clock.nanoseconds = 4999
    apic.advance()
    #expect(apic.pendingVector() == nil)
    clock.nanoseconds = 5000
    apic.advance()
    #expect(apic.pendingVector() == 0x32)
    #expect(apic.tscDeadline == 0)
}

@Test func tscDeadlineFollowsTheTSCFrequency() {
    let clock = ManualClock()
    let apic = LocalAPIC(id: 0, clock: clock, ipiSink: NoIPISink(), tscFrequency: 2_000_000_000)
    apic.set(Reg.svr, 0x1ff)
    apic.set(Reg.lvtTimer, LocalAPIC.LVT.tscDeadline | 0x32)
    apic.writeTSCDeadline(5000)
    #expect(apic.nextEventTime(after: 0) == 2500)
}

@Test func aPassedTSCDeadlineFiresAtOnce() {
    let (apic, clock, _, _) = makeAPIC()
    clock.nanoseconds = 10_000
    apic.set(Reg.lvtTimer, LocalAPIC.LVT.tscDeadline | 0x32)
    apic.writeTSCDeadline(1)
    #expect(apic.pendingVector() == 0x32)
}

@Test func tscDeadlineIsIgnoredOutsideDeadlineMode() {
    let (apic, _, _, _) = makeAPIC()
    apic.set(Reg.lvtTimer, 0x30)
    apic.writeTSCDeadline(5000)
    #expect(apic.tscDeadline == 0)
}

@Test func initialCountIsIgnoredInDeadlineMode() {
    let (apic, _, _, _) = makeAPIC()
    apic.set(Reg.lvtTimer, LocalAPIC.LVT.tscDeadline | 0x32)
    apic.set(Reg.timerInitialCount, 100)
    #expect(apic.get(Reg.timerInitialCount) == 0)
    #expect(apic.get(Reg.timerCurrentCount) == 0)
}

@Test func changingTheTimerModeDisarmsTheTimer() {
    let (apic, _, _, _) = makeAPIC()
    apic.set(Reg.lvtTimer, 0x30)
    apic.set(Reg.timerInitialCount, 100)
    apic.set(Reg.lvtTimer, LocalAPIC.LVT.periodic | 0x30)
    #expect(apic.get(Reg.timerInitialCount) == 0)
    #expect(apic.nextEventTime(after: 0) == nil)
}

// MARK: ICR and IPIs

@Test func icrWriteSendsAnINITToThePhysicalDestination() {
    let (apic, _, sink, _) = makeAPIC(id: 0)
    apic.set(Reg.icrHigh, 0x0100_0000)
    apic.set(Reg.icrLow, 0x0000_4500)
    #expect(sink.sent.count == 1)
    let ipi = sink.sent[0]
    #expect(ipi.deliveryMode == .initialization)
    #expect(ipi.assert)
    #expect(!ipi.logicalDestination)
    #expect(ipi.shorthand == .none)
    #expect(ipi.destination == 1)
    #expect(ipi.source == 0)
}

@Test func startupIPICarriesItsVector() {
    let (apic, _, sink, _) = makeAPIC()
    apic.set(Reg.icrHigh, 0x0200_0000)
    apic.set(Reg.icrLow, 0x0000_4608)
    #expect(sink.sent.last?.deliveryMode == .startup)
    #expect(sink.sent.last?.vector == 0x08, "start at 0x8000")
    #expect(sink.sent.last?.destination == 2)
}

@Test func icrShorthandsAreDecoded() {
    let (apic, _, sink, _) = makeAPIC()
    apic.set(Reg.icrLow, 0x0004_0030)
    apic.set(Reg.icrLow, 0x0008_0031)
    apic.set(Reg.icrLow, 0x000c_4500)
    #expect(sink.sent.map(\.shorthand) == [.selfOnly, .allIncludingSelf, .allExcludingSelf])
    #expect(sink.sent.map(\.vector) == [0x30, 0x31, 0x00])
}

@Test func icrLogicalLevelNMIFieldsAreDecoded() {
    let (apic, _, sink, _) = makeAPIC()
    apic.set(Reg.icrHigh, 0x0f00_0000)
    apic.set(Reg.icrLow, 0x0000_cc00)
    let ipi = sink.sent[0]
    #expect(ipi.deliveryMode == .nmi)
    #expect(ipi.logicalDestination)
    #expect(ipi.levelTriggered)
    #expect(ipi.destination == 0x0f)
}

@Test func icrReadsBackWithoutDeliveryStatus() {
    let (apic, _, _, _) = makeAPIC()
    apic.set(Reg.icrHigh, 0xffff_ffff)
    apic.set(Reg.icrLow, 0xffff_ffff)
    #expect(apic.get(Reg.icrHigh) == 0xff00_0000)
    #expect(apic.get(Reg.icrLow) == 0x000c_cfff)
}

@Test func fixedIPIWithAnIllegalVectorIsNotSent() {
    let (apic, _, sink, _) = makeAPIC()
    apic.set(Reg.icrLow, 0x0000_0005)
    #expect(sink.sent.isEmpty)
    apic.set(Reg.esr, 0)
    #expect(apic.get(Reg.esr) == LocalAPIC.ESR.sendIllegalVector)
}

@Test func everyDeliveryModeAndShorthandDecodes() {
    // A guest may write any ICR value: each of the eight modes and four shorthands is a case.
    for mode in UInt64(0)..<8 {
        for shorthand in UInt64(0)..<4 {
            let ipi = InterprocessorInterrupt(icr: ~UInt64(0) & ~(0x7 << 8 | 0x3 << 18) | mode << 8 | shorthand << 18, source: 0)
            #expect(UInt64(ipi.deliveryMode.rawValue) == mode)
            #expect(UInt64(ipi.shorthand.rawValue) == shorthand)
        }
    }
}

@Test func nmiIPIIsSentWhateverItsVector() {
    // An NMI carries no vector (the target takes vector 2): a vector below 16 is no error.
    let (apic, _, sink, _) = makeAPIC()
    apic.set(Reg.icrHigh, 0x0100_0000)
    apic.set(Reg.icrLow, 0x0000_4400)
    #expect(sink.sent.map(\.deliveryMode) == [.nmi])
    apic.set(Reg.esr, 0)
    #expect(apic.get(Reg.esr) == 0)
}

@Test func destinationMatchingPhysicalAndBroadcast() {
    let (apic, _, _, _) = makeAPIC(id: 2)
    #expect(apic.isTarget(of: InterprocessorInterrupt(icr: 0x0200_0000_0000_0030, source: 0)))
    #expect(!apic.isTarget(of: InterprocessorInterrupt(icr: 0x0300_0000_0000_0030, source: 0)))
    #expect(apic.isTarget(of: InterprocessorInterrupt(icr: 0xff00_0000_0000_0030, source: 0)))
    #expect(!apic.isTarget(of: InterprocessorInterrupt(icr: 0x000c_0030, source: 2)))
    #expect(apic.isTarget(of: InterprocessorInterrupt(icr: 0x0004_0030, source: 2)))
}

@Test func destinationMatchingLogicalFlatAndCluster() {
    let (apic, _, _, _) = makeAPIC()
    apic.set(Reg.ldr, 0x2400_0000)
    #expect(apic.isTarget(of: InterprocessorInterrupt(icr: 0x0400_0000_0000_0830, source: 0)))
    #expect(!apic.isTarget(of: InterprocessorInterrupt(icr: 0x0800_0000_0000_0830, source: 0)))
    apic.set(Reg.dfr, 0x0fff_ffff)  // cluster model: cluster 2, member bit 2
    #expect(apic.isTarget(of: InterprocessorInterrupt(icr: 0x2600_0000_0000_0830, source: 0)))
    #expect(!apic.isTarget(of: InterprocessorInterrupt(icr: 0x1400_0000_0000_0830, source: 0)))
}

@Test func idRegisterIsWritable() {
    let (apic, _, sink, _) = makeAPIC(id: 0)
    apic.set(Reg.id, 0x0700_0000)
    #expect(apic.id == 7)
    apic.set(Reg.icrLow, 0x0004_0040)
    #expect(sink.sent.last?.source == 7)
}

@Test func readOnlyRegistersIgnoreWrites() {
    let (apic, _, _, _) = makeAPIC()
    apic.set(Reg.version, 0)
    apic.set(Reg.irr, 0xffff_ffff)
    apic.set(Reg.timerCurrentCount, 5)
    #expect(apic.get(Reg.version) == 0x0005_0014)
    #expect(apic.get(Reg.irr) == 0)
    #expect(apic.get(Reg.timerCurrentCount) == 0)
    apic.set(Reg.esr, 0)
    #expect(apic.get(Reg.esr) == 0, "read-only is not illegal")
}

@Test func tscDeadlineIsMeasuredFromTheTSCValueGivenWithIt() {
    let (apic, clock, _, _) = makeAPIC()
    clock.nanoseconds = 1_000
    apic.set(Reg.lvtTimer, LocalAPIC.LVT.tscDeadline | 0x32)
    // The guest's TSC reads 700_000 now (it started before the virtual clock): 300 ticks ahead.
    apic.writeTSCDeadline(700_300, timeStampCounter: 700_000)
    #expect(apic.nextEventTime(after: 1_000) == 1_300)
    apic.writeTSCDeadline(600_000, timeStampCounter: 700_000)
    #expect(apic.pendingVector() == 0x32, "a deadline behind the TSC fires at once")
}

@Test func theBootstrapProcessorsLINT0StartsInVirtualWireMode() {
    let clock = ManualClock()
    let bsp = LocalAPIC(id: 0, clock: clock, ipiSink: NoIPISink(), isBootstrapProcessor: true)
    let ap = LocalAPIC(id: 1, clock: clock, ipiSink: NoIPISink())
    #expect(bsp.acceptsExternalInterrupts)
    #expect(bsp.get(Reg.lvtLINT0) == 0x700)
    #expect(!ap.acceptsExternalInterrupts)
    bsp.set(Reg.svr, 0x1ff)
    bsp.set(Reg.lvtLINT0, 0x1_0700)
    #expect(!bsp.acceptsExternalInterrupts, "masked")
    bsp.reset()
    #expect(bsp.acceptsExternalInterrupts, "INIT restores virtual wire")
}
