// The 8259A pair, one behaviour per test, driven through the guest's port accesses and the
// device and CPU sides of the model.

import Testing
import VisorDevices

/// A pair programmed as Linux and most BIOSes do: edge triggered, cascade on IR2, 8086 mode,
/// master vectors from `masterBase`, slave vectors from `slaveBase`, nothing masked.
private func makePIC(masterBase: UInt8 = 0x20, slaveBase: UInt8 = 0x28, autoEOI: Bool = false)
    -> (PIC8259Pair, RecordingLine)
{
    let line = RecordingLine()
    let pic = PIC8259Pair(interruptLine: line)
    let icw4: UInt8 = autoEOI ? 0x03 : 0x01
    for (cmd, data, icw3) in [(UInt16(0x20), UInt16(0x21), UInt8(0x04)), (0xa0, 0xa1, 0x02)] {
        pic.writePort(cmd, 0x11)
        pic.writePort(data, cmd == 0x20 ? masterBase : slaveBase)
        pic.writePort(data, icw3)
        pic.writePort(data, icw4)
    }
    return (pic, line)
}

/// Raises and lowers `line`: one edge.
private func pulse(_ pic: PIC8259Pair, _ line: Int) {
    pic.setIRQ(line, level: true)
    pic.setIRQ(line, level: false)
}

@Test func initialisationSequenceSetsTheVectorBases() {
    let (pic, _) = makePIC(masterBase: 0x30, slaveBase: 0x78)
    pulse(pic, 1)
    #expect(pic.acknowledge() == 0x31)
    pic.writePort(0x20, 0x20)
    pulse(pic, 12)
    #expect(pic.acknowledge() == 0x7c)
}

@Test func vectorBaseIgnoresTheLowThreeBitsOfICW2() {
    let (pic, _) = makePIC(masterBase: 0x25)
    pulse(pic, 3)
    #expect(pic.pendingVector() == 0x23)
}

@Test func dataPortReadsTheMaskAfterInitialisation() {
    let (pic, _) = makePIC()
    #expect(pic.readPort(0x21) == 0, "ICW1 clears IMR")
    pic.writePort(0x21, 0xfb)
    pic.writePort(0xa1, 0xff)
    #expect(pic.readPort(0x21) == 0xfb)
    #expect(pic.readPort(0xa1) == 0xff)
    #expect(pic.imr == 0xfffb)
}

@Test func aRisingEdgeRaisesINTR() {
    let (pic, line) = makePIC()
    #expect(!line.isHigh)
    pic.setIRQ(4, level: true)
    #expect(line.isHigh)
    #expect(pic.pendingVector() == 0x24)
}

@Test func aLineHeldHighRequestsOnlyOnce() {
    let (pic, _) = makePIC()
    pic.setIRQ(4, level: true)
    #expect(pic.acknowledge() == 0x24)
    pic.writePort(0x20, 0x20)
    pic.setIRQ(4, level: true)
    #expect(pic.pendingVector() == nil, "no new edge, no new request")
}

@Test func maskedRequestsStayInIRRButDoNotRaiseINTR() {
    let (pic, line) = makePIC()
    pic.writePort(0x21, 0x10)
    pulse(pic, 4)
    #expect(!line.isHigh)
    #expect(pic.pendingVector() == nil)
    #expect(pic.irr == 0x10)
    pic.writePort(0x21, 0x00)
    #expect(line.isHigh, "unmasking delivers the latched request")
    #expect(pic.pendingVector() == 0x24)
}

@Test func lowerIRQNumberHasPriority() {
    let (pic, _) = makePIC()
    pulse(pic, 6)
    pulse(pic, 3)
    #expect(pic.acknowledge() == 0x23)
    pic.writePort(0x20, 0x20)
    #expect(pic.acknowledge() == 0x26)
}

@Test func inServiceIRQBlocksLowerPriorityUntilEOI() {
    let (pic, line) = makePIC()
    pulse(pic, 3)
    #expect(pic.acknowledge() == 0x23)
    pulse(pic, 5)
    #expect(pic.pendingVector() == nil)
    #expect(!line.isHigh)
    pic.writePort(0x20, 0x20)  // non-specific EOI
    #expect(line.isHigh)
    #expect(pic.pendingVector() == 0x25)
}

@Test func higherPriorityIRQNestsOverAnInServiceOne() {
    let (pic, _) = makePIC()
    pulse(pic, 5)
    #expect(pic.acknowledge() == 0x25)
    pulse(pic, 1)
    #expect(pic.acknowledge() == 0x21)
    #expect(pic.isr == 0b10_0010)
}

@Test func nonSpecificEOIClearsTheHighestPriorityISRBit() {
    let (pic, _) = makePIC()
    pulse(pic, 5)
    _ = pic.acknowledge()
    pulse(pic, 1)
    _ = pic.acknowledge()
    pic.writePort(0x20, 0x20)
    #expect(pic.isr == 0b10_0000)
}

@Test func specificEOIClearsTheNamedISRBit() {
    let (pic, _) = makePIC()
    pulse(pic, 5)
    _ = pic.acknowledge()
    pulse(pic, 1)
    _ = pic.acknowledge()
    pic.writePort(0x20, 0x60 | 5)
    #expect(pic.isr == 0b00_0010)
}

@Test func slaveInterruptsCascadeThroughIRQ2() {
    let (pic, line) = makePIC()
    pulse(pic, 10)
    #expect(line.isHigh)
    #expect(pic.irr == 0x0404, "slave IR2 and master IR2 (the cascade)")
    #expect(pic.acknowledge() == 0x2a)
    #expect(pic.isr == 0x0404, "both chips have the request in service")
}

@Test func slaveRanksAtIRQ2InMasterPriority() {
    let (pic, _) = makePIC()
    pulse(pic, 3)
    pulse(pic, 14)
    pulse(pic, 1)
    #expect(pic.acknowledge() == 0x21)
    pic.writePort(0x20, 0x20)
    #expect(pic.acknowledge() == 0x2e, "IRQ14 via IR2 before IRQ3")
    pic.writePort(0xa0, 0x20)
    pic.writePort(0x20, 0x20)
    #expect(pic.acknowledge() == 0x23)
}

@Test func maskingIRQ2OnTheMasterMasksTheWholeSlave() {
    let (pic, line) = makePIC()
    pic.writePort(0x21, 0x04)
    pulse(pic, 8)
    #expect(!line.isHigh)
    #expect(pic.pendingVector() == nil)
}

@Test func slaveNeedsEOIOnBothChips() {
    let (pic, _) = makePIC()
    pulse(pic, 9)
    _ = pic.acknowledge()
    pic.writePort(0xa0, 0x20)
    pulse(pic, 11)
    #expect(pic.pendingVector() == nil, "master IR2 still in service")
    pic.writePort(0x20, 0x20)
    #expect(pic.pendingVector() == 0x2b)
}

@Test func aRequestMaskedBeforeINTAGivesSpuriousIRQ7() {
    let (pic, _) = makePIC()
    pulse(pic, 4)
    #expect(pic.pendingVector() == 0x24)
    pic.writePort(0x21, 0x10)
    #expect(pic.acknowledge() == 0x27)
    #expect(pic.isr == 0, "a spurious IRQ7 sets no ISR bit")
}

@Test func aSlaveRequestVanishingGivesSpuriousIRQ15() {
    let (pic, _) = makePIC()
    pulse(pic, 9)
    #expect(pic.pendingVector() == 0x29)
    pic.writePort(0xa1, 0x02)  // masked on the slave after the master latched the cascade
    #expect(pic.acknowledge() == 0x2f)
    #expect(pic.isr == 0x0004, "the master serves IR2; the slave sets nothing for IRQ15")
}

@Test func aSlaveWithASecondRequestReRaisesTheCascadeAfterINTA() {
    let (pic, _) = makePIC()
    pulse(pic, 12)
    pulse(pic, 10)
    #expect(pic.acknowledge() == 0x2a)
    pic.writePort(0xa0, 0x20)
    pic.writePort(0x20, 0x20)
    #expect(pic.acknowledge() == 0x2c)
}

@Test func autoEOIModeLeavesNothingInService() {
    let (pic, _) = makePIC(autoEOI: true)
    pulse(pic, 3)
    #expect(pic.acknowledge() == 0x23)
    #expect(pic.isr == 0)
    pulse(pic, 5)
    #expect(pic.pendingVector() == 0x25, "no EOI needed")
}

@Test func ocw3SelectsIRROrISRForReading() {
    let (pic, _) = makePIC()
    pulse(pic, 3)
    _ = pic.acknowledge()
    pulse(pic, 5)
    #expect(pic.readPort(0x20) == 0x20, "IRR after ICW1")
    pic.writePort(0x20, 0x0b)
    #expect(pic.readPort(0x20) == 0x08)
    pic.writePort(0x20, 0x0a)
    #expect(pic.readPort(0x20) == 0x20)
}

@Test func pollCommandAcknowledgesAndReportsTheLevel() {
    let (pic, line) = makePIC()
    pulse(pic, 6)
    pic.writePort(0x20, 0x0c)
    #expect(pic.readPort(0x20) == 0x86)
    #expect(pic.isr == 0x40)
    #expect(!line.isHigh)
    pic.writePort(0x20, 0x0c)
    #expect(pic.readPort(0x20) == 0x00, "nothing pending")
}

@Test func levelTriggeredLineFollowsItsLevel() {
    let (pic, _) = makePIC()
    pic.writePort(0x4d1, 0x08)  // IRQ11
    #expect(pic.readPort(0x4d1) == 0x08)
    pic.setIRQ(11, level: true)
    #expect(pic.acknowledge() == 0x2b)
    pic.writePort(0xa0, 0x20)
    pic.writePort(0x20, 0x20)
    #expect(pic.pendingVector() == 0x2b, "still high after EOI: requests again")
    pic.setIRQ(11, level: false)
    #expect(pic.irr & 0x0800 == 0)
    #expect(pic.acknowledge() == 0x2f, "the master had latched the cascade: spurious IRQ15")
}

@Test func elcrBitsWiredToEdgeReadZero() {
    let (pic, _) = makePIC()
    pic.writePort(0x4d0, 0xff)
    pic.writePort(0x4d1, 0xff)
    #expect(pic.readPort(0x4d0) == 0xf8, "IRQ0-2 are always edge")
    #expect(pic.readPort(0x4d1) == 0xde, "IRQ8 and IRQ13 are always edge")
}

@Test func rotateOnNonSpecificEOIMakesTheServedIRQLowest() {
    let (pic, _) = makePIC()
    pulse(pic, 1)
    _ = pic.acknowledge()
    pic.writePort(0x20, 0xa0)
    pulse(pic, 0)
    pulse(pic, 1)
    pulse(pic, 3)
    #expect(pic.acknowledge() == 0x23, "after rotation IR2 is highest, then IR3 ... IR1 lowest")
}

@Test func reinitialisingRequiresANewEdge() {
    let (pic, _) = makePIC()
    pic.setIRQ(4, level: true)
    pic.writePort(0x20, 0x11)
    pic.writePort(0x21, 0x20)
    pic.writePort(0x21, 0x04)
    pic.writePort(0x21, 0x01)
    #expect(pic.irr & 0x10 == 0)
    pic.setIRQ(4, level: false)
    pic.setIRQ(4, level: true)
    #expect(pic.pendingVector() == 0x24)
}

@Test func portWindowsSplitWideAccessesIntoBytes() {
    let (pic, _) = makePIC()
    pic.elcrPorts.write(offset: 0, size: 2, value: 0x0800)
    #expect(pic.readPort(0x4d1) == 0x08)
    pic.masterPorts.write(offset: 1, size: 1, value: 0x5a)
    #expect(pic.masterPorts.read(offset: 1, size: 4) == 0xffff_ff5a, "past port 1 reads 0xff")
}

@Test func outOfRangeLinesAreIgnored() {
    let (pic, line) = makePIC()
    pic.setIRQ(-1, level: true)
    pic.setIRQ(16, level: true)
    pic.setIRQ(2, level: true)
    #expect(!line.isHigh)
    #expect(pic.irr == 0)
}


@Test func withoutIC4TheSequenceEndsAfterICW3() {
    let pic = PIC8259Pair()
    pic.writePort(0x20, 0x10)  // ICW1 without IC4
    pic.writePort(0x21, 0x40)
    pic.writePort(0x21, 0x04)
    pic.writePort(0x21, 0xfe)  // OCW1 now, not ICW4
    #expect(pic.readPort(0x21) == 0xfe)
    pic.setIRQ(0, level: true)
    #expect(pic.acknowledge() == 0x40)
    #expect(pic.isr == 0x01, "ICW4 defaults: normal EOI")
}

@Test func singleModeSkipsICW3AndMakesIR2AnOrdinaryInput() {
    let pic = PIC8259Pair()
    pic.writePort(0x20, 0x13)  // ICW1: SNGL, IC4
    pic.writePort(0x21, 0x50)
    pic.writePort(0x21, 0x01)  // ICW4, straight after ICW2
    #expect(pic.readPort(0x21) == 0x00)
    pic.setIRQ(2, level: true)
    #expect(pic.pendingVector() == 0x52)
}

@Test func specialMaskModeLetsLowerLevelsPastAMaskedInServiceLevel() {
    let (pic, _) = makePIC()
    pulse(pic, 3)
    _ = pic.acknowledge()
    pic.writePort(0x21, 0x08)  // mask IR3, still in service
    pulse(pic, 5)
    #expect(pic.pendingVector() == nil)
    pic.writePort(0x20, 0x68)  // OCW3: set special mask mode
    #expect(pic.pendingVector() == 0x25)
    pic.writePort(0x20, 0x48)  // OCW3: reset special mask mode
    #expect(pic.pendingVector() == nil)
}

@Test func setPriorityCommandRotatesPriority() {
    let (pic, _) = makePIC()
    pic.writePort(0x20, 0xc0 | 4)  // IR4 lowest, IR5 highest
    pulse(pic, 3)
    pulse(pic, 6)
    #expect(pic.acknowledge() == 0x26)
}

@Test func randomGuestAndDeviceScriptsNeverTrap() {
    let (pic, line) = makePIC()
    var random = ScriptRandom(seed: 11)
    let ports: [UInt16] = [0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1, 0x22]
    for _ in 0..<20_000 {
        let port = ports[Int(random.below(UInt64(ports.count)))]
        switch random.below(4) {
        case 0: pic.writePort(port, UInt8(truncatingIfNeeded: random.next()))
        case 1: _ = pic.readPort(port)
        case 2: pic.setIRQ(Int(random.below(18)) - 1, level: random.below(2) == 0)
        default: _ = pic.acknowledge()
        }
        #expect(line.isHigh == (pic.pendingVector() != nil))
    }
}
