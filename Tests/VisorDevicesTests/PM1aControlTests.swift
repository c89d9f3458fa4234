// ACPI PM1a control: SLP_EN powers off, other bits read back.

import Testing
import VisorDevices

@Test func settingSLPENPowersOff() {
    var calls = 0
    let pm = PM1aControl { calls += 1 }
    pm.write(offset: 0, size: 2, value: 0x2000)
    #expect(pm.poweredOff)
    #expect(calls == 1)
    pm.write(offset: 0, size: 2, value: 0x2000)
    #expect(calls == 1, "the handler runs once")
}

@Test func otherControlBitsReadBackWithoutPoweringOff() {
    let pm = PM1aControl()
    pm.write(offset: 0, size: 2, value: 0x1c01)  // SLP_TYP 7, SCI_EN
    #expect(!pm.poweredOff)
    #expect(pm.read(offset: 0, size: 2) == 0x1c01)
    #expect(pm.read(offset: 1, size: 1) == 0x1c)
}

@Test func slpENIsWriteOnly() {
    let pm = PM1aControl()
    pm.write(offset: 0, size: 2, value: 0x3401)
    #expect(pm.poweredOff)
    #expect(pm.read(offset: 0, size: 2) == 0x1401)
    #expect(pm.control & PM1aControl.sleepEnable == 0)
}

@Test func byteWriteToTheHighPortCanPowerOff() {
    let pm = PM1aControl()
    pm.write(offset: 0, size: 1, value: 0x20)  // low byte: not SLP_EN
    #expect(!pm.poweredOff)
    pm.write(offset: 1, size: 1, value: 0x20)
    #expect(pm.poweredOff)
}

@Test func pm1aControlHandlesAnyOffsetAndSize() {
    let pm = PM1aControl()
    for offset in UInt16(2)...0xffff {
        for size in UInt8(0)...0xff {
            pm.write(offset: offset, size: size, value: 0xffff_ffff)
            _ = pm.read(offset: offset, size: size)
        }
    }
    #expect(!pm.poweredOff, "writes past the register touch nothing")
    #expect(pm.read(offset: 2, size: 1) == 0xff)
    for size in UInt8(0)...0xff {
        pm.write(offset: 0, size: size, value: 0)
        _ = pm.read(offset: 0, size: size)
        _ = pm.read(offset: 1, size: size)
    }
    pm.write(offset: 1, size: 4, value: 0xffff_ff20)
    #expect(pm.poweredOff)
}
