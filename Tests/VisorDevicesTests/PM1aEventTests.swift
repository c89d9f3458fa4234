// ACPI PM1a status and enable: write-one-to-clear status, enable bits, the SCI.

import Testing
import VisorDevices

@Test func thePowerButtonRaisesTheSCIOnceEnabled() {
    let sci = RecordingLine()
    let pm = PM1aEvent(sciLine: sci)
    pm.pressPowerButton()
    #expect(pm.read(offset: 0, size: 2) == 0x0100, "PWRBTN_STS")
    #expect(!sci.isHigh, "not enabled yet")
    pm.write(offset: 2, size: 2, value: 0x0100)
    #expect(sci.isHigh)
    pm.write(offset: 0, size: 2, value: 0x0100)
    #expect(pm.status == 0, "write one to clear")
    #expect(!sci.isHigh)
}

@Test func writingZeroesLeavesStatusBitsSet() {
    let pm = PM1aEvent()
    pm.pressPowerButton()
    pm.write(offset: 0, size: 2, value: 0x0000)
    pm.write(offset: 0, size: 2, value: 0xfeff)
    #expect(pm.status == 0x0100)
    pm.write(offset: 1, size: 1, value: 0x01)
    #expect(pm.status == 0, "a byte write to the high half clears bit 8")
}

@Test func enableKeepsOnlyItsDefinedBits() {
    let pm = PM1aEvent()
    pm.write(offset: 2, size: 2, value: 0xffff)
    #expect(pm.read(offset: 2, size: 2) == 0x0721, "timer, global, power and sleep buttons, RTC")
    #expect(pm.read(offset: 0, size: 4) == 0x0721_0000, "status in the low half, enable in the high")
}

@Test func accessesPastTheBlockAreHarmless() {
    let pm = PM1aEvent()
    for offset in UInt16(0)...16 {
        for size in UInt8(0)...8 {
            pm.write(offset: offset, size: size, value: 0xffff_ffff)
            _ = pm.read(offset: offset, size: size)
        }
    }
    #expect(pm.read(offset: 4, size: 1) == 0xff)
}
