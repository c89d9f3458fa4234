// The 82093AA I/O APIC, one behaviour per test, through the guest's IOREGSEL/IOWIN accesses, the
// device pins and the local APICs' EOI broadcast.

import Testing
import VisorDevices

private final class RecordingOutput: IOAPICOutput {
    private(set) var messages: [IOAPICMessage] = []
    func deliver(_ message: IOAPICMessage) { messages.append(message) }
    var vectors: [UInt8] { messages.map(\.vector) }
}

private typealias Entry = IOAPIC.Entry

extension IOAPIC {
    fileprivate func get(_ index: UInt8) -> UInt32 {
        write(offset: IOAPIC.Window.registerSelect, size: 4, value: UInt64(index))
        return UInt32(truncatingIfNeeded: read(offset: IOAPIC.Window.data, size: 4))
    }
    fileprivate func set(_ index: UInt8, _ value: UInt32) {
        write(offset: IOAPIC.Window.registerSelect, size: 4, value: UInt64(index))
        write(offset: IOAPIC.Window.data, size: 4, value: UInt64(value))
    }
    /// Programs pin `pin`'s redirection entry (high half first, as Linux does, so the entry is
    /// complete when the low half with the mask bit lands).
    fileprivate func program(_ pin: Int, _ entry: UInt64) {
        set(0x11 + UInt8(pin) * 2, UInt32(entry >> 32))
        set(0x10 + UInt8(pin) * 2, UInt32(truncatingIfNeeded: entry))
    }
}

private func makeIOAPIC() -> (IOAPIC, RecordingOutput) {
    let output = RecordingOutput()
    return (IOAPIC(id: 0, output: output), output)
}

/// A redirection entry: `vector`, fixed, physical destination `destination`, unmasked.
private func entry(_ vector: UInt8, level: Bool = false, activeLow: Bool = false, masked: Bool = false,
                   destination: UInt8 = 0, mode: UInt64 = 0, logical: Bool = false) -> UInt64 {
    UInt64(vector) | mode << 8 | (logical ? Entry.logicalDestination : 0) | (activeLow ? Entry.activeLow : 0)
        | (level ? Entry.levelTriggered : 0) | (masked ? Entry.mask : 0) | UInt64(destination) << 56
}

// MARK: Registers

@Test func versionSays0x11With24Pins() {
    let (ioapic, _) = makeIOAPIC()
    #expect(ioapic.get(IOAPIC.Register.version) == 0x0017_0011, "max redirection entry 23, version 0x11")
    ioapic.set(IOAPIC.Register.version, 0)
    #expect(ioapic.get(IOAPIC.Register.version) == 0x0017_0011, "read-only")
}

@Test func idIsFourBitsAndLoadsTheArbitrationID() {
    let (ioapic, _) = makeIOAPIC()
    #expect(ioapic.get(IOAPIC.Register.id) == 0)
    ioapic.set(IOAPIC.Register.id, 0xff00_0000)
    #expect(ioapic.get(IOAPIC.Register.id) == 0x0f00_0000, "bits 27-24 only")
    #expect(ioapic.get(IOAPIC.Register.arbitration) == 0x0f00_0000, "written IDs load the arbitration ID")
    ioapic.set(IOAPIC.Register.arbitration, 0)
    #expect(ioapic.get(IOAPIC.Register.arbitration) == 0x0f00_0000, "read-only")
}

@Test func ioregselReadsBack() {
    let (ioapic, _) = makeIOAPIC()
    ioapic.write(offset: IOAPIC.Window.registerSelect, size: 4, value: 0x1234_5613)
    #expect(ioapic.read(offset: IOAPIC.Window.registerSelect, size: 4) == 0x13, "an 8-bit register")
}

@Test func everyEntryIsMaskedAfterReset() {
    let (ioapic, output) = makeIOAPIC()
    for pin in 0..<24 {
        #expect(ioapic.get(0x10 + UInt8(pin) * 2) == UInt32(Entry.mask))
        #expect(ioapic.get(0x11 + UInt8(pin) * 2) == 0)
        ioapic.setPin(pin, level: true)
    }
    #expect(output.messages.isEmpty, "masked pins send nothing")
}

@Test func redirectionEntriesKeepTheirWritableBits() {
    let (ioapic, _) = makeIOAPIC()
    ioapic.set(0x10 + 2 * 5, 0xffff_ffff)
    ioapic.set(0x11 + 2 * 5, 0xffff_ffff)
    #expect(ioapic.get(0x10 + 2 * 5) == 0x0001_afff, "delivery status, Remote IRR and bits 31-17 read 0")
    #expect(ioapic.get(0x11 + 2 * 5) == 0xff00_0000, "only the destination in the high half")
    #expect(ioapic.redirectionEntry(5) == 0xff00_0000_0001_afff)
    #expect(ioapic.redirectionEntry(24) == nil)
}

@Test func registersPastTheTableReadZeroAndIgnoreWrites() {
    let (ioapic, _) = makeIOAPIC()
    for index in [UInt8(0x03), 0x0f, 0x40, 0xff] {
        ioapic.set(index, 0xffff_ffff)
        #expect(ioapic.get(index) == 0)
    }
}

@Test func onlyDwordAccessesAtTheTwoRegistersCount() {
    let (ioapic, _) = makeIOAPIC()
    ioapic.write(offset: IOAPIC.Window.registerSelect, size: 1, value: 0x01)
    #expect(ioapic.read(offset: IOAPIC.Window.registerSelect, size: 4) == 0)
    ioapic.write(offset: IOAPIC.Window.registerSelect, size: 4, value: 0x01)
    #expect(ioapic.read(offset: IOAPIC.Window.data, size: 2) == 0)
    #expect(ioapic.read(offset: 0x20, size: 4) == 0)
    for offset in stride(from: UInt64(0), to: 0x1000, by: 4) {
        for size in [UInt8(0), 1, 2, 3, 4, 8, 255] {
            ioapic.write(offset: offset, size: size, value: .max)
            _ = ioapic.read(offset: offset, size: size)
        }
    }
    #expect(ioapic.get(IOAPIC.Register.version) == 0x0017_0011)
}

// MARK: Edge-triggered pins

@Test func aRisingEdgeSendsTheEntrysMessage() {
    let (ioapic, output) = makeIOAPIC()
    ioapic.program(4, entry(0x34, destination: 1))
    ioapic.setPin(4, level: true)
    #expect(output.messages == [IOAPICMessage(vector: 0x34, deliveryMode: 0, logicalDestination: false,
                                              levelTriggered: false, destination: 1, pin: 4)])
    ioapic.setPin(4, level: true)
    #expect(output.messages.count == 1, "no new edge, no new message")
    ioapic.setPin(4, level: false)
    ioapic.setPin(4, level: true)
    #expect(output.vectors == [0x34, 0x34])
}

@Test func anEdgeOnAMaskedPinIsIgnoredNotHeld() {
    let (ioapic, output) = makeIOAPIC()
    ioapic.program(1, entry(0x31, masked: true))
    ioapic.setPin(1, level: true)
    ioapic.program(1, entry(0x31))
    #expect(output.messages.isEmpty, "the datasheet: edges on a masked pin are not held pending")
    ioapic.setPin(1, level: false)
    ioapic.setPin(1, level: true)
    #expect(output.vectors == [0x31])
}

@Test func activeLowPolarityInvertsThePin() {
    let (ioapic, output) = makeIOAPIC()
    ioapic.program(3, entry(0x40, activeLow: true))
    ioapic.setPin(3, level: true)
    #expect(output.messages.isEmpty, "high is inactive")
    ioapic.setPin(3, level: false)
    #expect(output.vectors == [0x40], "the falling edge is the active one")
}

@Test func edgeEntriesIgnoreEOI() {
    let (ioapic, output) = makeIOAPIC()
    ioapic.program(4, entry(0x34))
    ioapic.setPin(4, level: true)
    ioapic.endOfInterrupt(vector: 0x34)
    #expect(output.messages.count == 1)
    #expect(ioapic.get(0x10 + 8) & UInt32(Entry.remoteIRR) == 0, "edge entries have no Remote IRR")
}

@Test func theMessageCarriesModeDestinationAndTrigger() {
    let (ioapic, output) = makeIOAPIC()
    ioapic.program(7, entry(0x57, mode: 1, logical: true) | 0x0300_0000_0000_0000)
    ioapic.setPin(7, level: true)
    let message = output.messages.first
    #expect(message?.deliveryMode == 1)
    #expect(message?.logicalDestination == true)
    #expect(message?.destination == 0x03)
    #expect(message?.icrValue == 0x0300_0000_0000_4957, "vector, lowest priority, logical, assert")
}

// MARK: Level-triggered pins

@Test func aLevelPinSendsOnceUntilEOI() {
    let (ioapic, output) = makeIOAPIC()
    ioapic.program(9, entry(0x39, level: true))
    ioapic.setPin(9, level: true)
    #expect(output.vectors == [0x39])
    #expect(ioapic.get(0x10 + 18) & UInt32(Entry.remoteIRR) != 0, "Remote IRR set while the APIC serves it")
    ioapic.setPin(9, level: false)
    ioapic.setPin(9, level: true)
    #expect(output.vectors == [0x39], "Remote IRR holds further messages back")
    ioapic.endOfInterrupt(vector: 0x39)
    #expect(output.vectors == [0x39, 0x39], "still asserted after the EOI: sent again")
    ioapic.setPin(9, level: false)
    ioapic.endOfInterrupt(vector: 0x39)
    #expect(ioapic.get(0x10 + 18) & UInt32(Entry.remoteIRR) == 0)
    #expect(output.vectors.count == 2, "deasserted: nothing more")
}

@Test func anEOIForAnotherVectorLeavesRemoteIRR() {
    let (ioapic, output) = makeIOAPIC()
    ioapic.program(9, entry(0x39, level: true))
    ioapic.setPin(9, level: true)
    ioapic.endOfInterrupt(vector: 0x38)
    #expect(ioapic.get(0x10 + 18) & UInt32(Entry.remoteIRR) != 0)
    #expect(output.vectors == [0x39])
}

@Test func unmaskingAnAssertedLevelPinSendsAtOnce() {
    let (ioapic, output) = makeIOAPIC()
    ioapic.program(10, entry(0x3a, level: true, masked: true))
    ioapic.setPin(10, level: true)
    #expect(output.messages.isEmpty)
    ioapic.program(10, entry(0x3a, level: true))
    #expect(output.vectors == [0x3a], "a level is still there when the mask goes")
}

@Test func remoteIRRIsReadOnly() {
    let (ioapic, output) = makeIOAPIC()
    ioapic.program(9, entry(0x39, level: true))
    ioapic.setPin(9, level: true)
    ioapic.set(0x10 + 18, UInt32(entry(0x39, level: true)))  // the guest rewrites the low half
    #expect(ioapic.get(0x10 + 18) & UInt32(Entry.remoteIRR) != 0, "a write does not clear Remote IRR")
    #expect(output.vectors == [0x39])
}

@Test func sharedVectorsAllSeeTheEOI() {
    let (ioapic, output) = makeIOAPIC()
    ioapic.program(16, entry(0x50, level: true))
    ioapic.program(17, entry(0x50, level: true))
    ioapic.setPin(16, level: true)
    ioapic.setPin(17, level: true)
    ioapic.endOfInterrupt(vector: 0x50)
    #expect(output.messages.map(\.pin) == [16, 17, 16, 17], "both still asserted: both sent again")
}

@Test func pinsOutOfRangeAreIgnored() {
    let (ioapic, output) = makeIOAPIC()
    for pin in [-1, 24, 1000, Int.max, Int.min] { ioapic.setPin(pin, level: true) }
    #expect(output.messages.isEmpty)
}

// MARK: With a local APIC

/// The wiring DevicePlatform does: messages into the local APIC's IRR, its EOI broadcast back.
private final class APICWiring: IOAPICOutput, EOIBroadcastSink {
    var apic: LocalAPIC?
    weak var ioapic: IOAPIC?
    func deliver(_ message: IOAPICMessage) {
        apic?.acceptInterrupt(vector: message.vector, levelTriggered: message.levelTriggered)
    }
    func endOfInterrupt(vector: UInt8) { ioapic?.endOfInterrupt(vector: vector) }
}

@Test func theLocalAPICsEOIOfALevelVectorReachesTheIOAPIC() {
    let wiring = APICWiring()
    let apic = LocalAPIC(id: 0, clock: ManualClock(), ipiSink: NoIPISink(), eoiSink: wiring)
    apic.write(offset: LocalAPIC.Register.svr, size: 4, value: 0x1ff)
    let ioapic = IOAPIC(output: wiring)
    wiring.apic = apic
    wiring.ioapic = ioapic
    ioapic.program(9, entry(0x49, level: true))
    ioapic.setPin(9, level: true)
    #expect(apic.acknowledge() == 0x49)
    #expect(apic.pendingVector() == nil)
    apic.write(offset: LocalAPIC.Register.eoi, size: 4, value: 0)
    #expect(apic.pendingVector() == 0x49, "the pin is still asserted: the EOI brought the next message")
    #expect(apic.acknowledge() == 0x49)
    ioapic.setPin(9, level: false)
    apic.write(offset: LocalAPIC.Register.eoi, size: 4, value: 0)
    #expect(apic.pendingVector() == nil)
    #expect(ioapic.get(0x10 + 18) & UInt32(Entry.remoteIRR) == 0)
}

@Test func anEdgeVectorsEOIIsNotBroadcast() {
    final class Counter: EOIBroadcastSink {
        var vectors: [UInt8] = []
        func endOfInterrupt(vector: UInt8) { vectors.append(vector) }
    }
    let counter = Counter()
    let apic = LocalAPIC(id: 0, clock: ManualClock(), ipiSink: NoIPISink(), eoiSink: counter)
    apic.write(offset: LocalAPIC.Register.svr, size: 4, value: 0x1ff)
    apic.acceptInterrupt(vector: 0x30, levelTriggered: false)
    apic.acceptInterrupt(vector: 0x40, levelTriggered: true)
    _ = apic.acknowledge()
    apic.write(offset: LocalAPIC.Register.eoi, size: 4, value: 0)
    _ = apic.acknowledge()
    apic.write(offset: LocalAPIC.Register.eoi, size: 4, value: 0)
    #expect(counter.vectors == [0x40], "only the level-triggered vector's EOI goes to the I/O APIC")
}
