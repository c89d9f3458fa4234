// The 8042 keyboard controller with nothing plugged in: what Linux's i8042 probe and `reboot`
// do to it, through the two ports.

import Testing
import VisorDevices

private func makeController() -> (I8042, RecordingLine, RecordingLine) {
    let keyboard = RecordingLine(), auxiliary = RecordingLine()
    return (I8042(keyboardLine: keyboard, auxiliaryLine: auxiliary), keyboard, auxiliary)
}

@Test func anIdleControllerHasAnEmptyOutputBuffer() {
    let (kbc, _, _) = makeController()
    #expect(kbc.readPort(0x64) & I8042.Status.outputFull == 0, "Linux's flush finds nothing to drain")
    #expect(kbc.readPort(0x64) & I8042.Status.system != 0, "the system flag, as firmware leaves it")
    #expect(kbc.readPort(0x64) != 0xff, "0xff would mean no controller")
}

@Test func theSelfTestAnswers0x55() {
    let (kbc, _, _) = makeController()
    kbc.writePort(0x64, 0xaa)
    #expect(kbc.readPort(0x64) & I8042.Status.outputFull != 0)
    #expect(kbc.readPort(0x64) & I8042.Status.command != 0, "the last write went to the command port")
    #expect(kbc.readPort(0x60) == 0x55)
    #expect(kbc.readPort(0x64) & I8042.Status.outputFull == 0, "reading the data port empties the buffer")
}

@Test func theCommandByteReadsBackWhatWasWritten() {
    let (kbc, _, _) = makeController()
    kbc.writePort(0x64, 0x20)
    #expect(kbc.readPort(0x60) == 0x45, "keyboard interrupt, system flag, translation")
    kbc.writePort(0x64, 0x60)
    kbc.writePort(0x60, 0x74)
    #expect(kbc.commandByte == 0x74)
    kbc.writePort(0x64, 0x20)
    #expect(kbc.readPort(0x60) == 0x74)
}

@Test func auxiliaryPortEnableAndDisableFlipTheCommandByte() {
    let (kbc, _, _) = makeController()
    kbc.writePort(0x64, 0xa7)
    #expect(kbc.commandByte & I8042.CommandByte.auxiliaryDisabled != 0)
    kbc.writePort(0x64, 0xa8)
    #expect(kbc.commandByte & I8042.CommandByte.auxiliaryDisabled == 0)
    kbc.writePort(0x64, 0xad)
    #expect(kbc.commandByte & I8042.CommandByte.keyboardDisabled != 0)
    kbc.writePort(0x64, 0xae)
    #expect(kbc.commandByte & I8042.CommandByte.keyboardDisabled == 0)
}

@Test func theAuxiliaryLoopEchoesAsAuxiliaryData() {
    let (kbc, keyboard, auxiliary) = makeController()
    kbc.writePort(0x64, 0x60)
    kbc.writePort(0x60, 0x47)  // both interrupts on
    kbc.writePort(0x64, 0xd3)
    kbc.writePort(0x60, 0x5a)
    #expect(kbc.readPort(0x64) & (I8042.Status.outputFull | I8042.Status.auxiliaryData) == 0x21)
    #expect(auxiliary.isHigh, "IRQ 12 for auxiliary data")
    #expect(!keyboard.isHigh)
    #expect(kbc.readPort(0x60) == 0x5a)
    #expect(!auxiliary.isHigh)
}

@Test func aByteForTheAbsentKeyboardGetsResend() {
    let (kbc, keyboard, _) = makeController()
    kbc.writePort(0x60, 0xf2)  // "identify", to the keyboard
    #expect(keyboard.isHigh, "IRQ 1: keyboard interrupts are on")
    #expect(kbc.readPort(0x64) & I8042.Status.auxiliaryData == 0)
    #expect(kbc.readPort(0x60) == 0xfe, "nothing there understood it")
    #expect(!keyboard.isHigh)
}

@Test func aByteForTheAbsentMouseGetsResendFromTheAuxiliarySide() {
    let (kbc, _, auxiliary) = makeController()
    kbc.writePort(0x64, 0x60)
    kbc.writePort(0x60, 0x47)
    kbc.writePort(0x64, 0xd4)
    kbc.writePort(0x60, 0xf2)
    #expect(auxiliary.isHigh)
    #expect(kbc.readPort(0x60) == 0xfe)
}

@Test func interruptsFollowTheCommandByte() {
    let (kbc, keyboard, _) = makeController()
    kbc.writePort(0x64, 0x60)
    kbc.writePort(0x60, 0x44)  // keyboard interrupt off
    kbc.writePort(0x64, 0xaa)
    #expect(!keyboard.isHigh, "the controller's own answers raise nothing with interrupts off")
    #expect(kbc.readPort(0x60) == 0x55)
}

@Test func command0xFEResetsTheMachine() {
    let (kbc, _, _) = makeController()
    var resets = 0
    kbc.onReset = { resets += 1 }
    kbc.writePort(0x64, 0xfe)
    #expect(resets == 1)
    kbc.writePort(0x64, 0xff)
    #expect(resets == 1, "0xff pulses no line")
    kbc.writePort(0x64, 0xfc)
    #expect(resets == 2, "any pulse with bit 0 clear pulses the reset line")
}

@Test func clearingOutputPortBit0ResetsTheMachine() {
    let (kbc, _, _) = makeController()
    var resets = 0
    kbc.onReset = { resets += 1 }
    kbc.writePort(0x64, 0xd0)
    #expect(kbc.readPort(0x60) == 0x03, "reset line high, A20 on")
    kbc.writePort(0x64, 0xd1)
    kbc.writePort(0x60, 0x03)
    #expect(resets == 0)
    kbc.writePort(0x64, 0xd1)
    kbc.writePort(0x60, 0x02)
    #expect(resets == 1)
}

@Test func theOutputQueueIsBounded() {
    let (kbc, _, _) = makeController()
    for _ in 0..<1000 { kbc.writePort(0x60, 0xee) }
    var read = 0
    while kbc.readPort(0x64) & I8042.Status.outputFull != 0 {
        _ = kbc.readPort(0x60)
        read += 1
    }
    #expect(read == I8042.queueLimit)
}

@Test func otherPortsAndWideAccessesAreHarmless() {
    let (kbc, _, _) = makeController()
    #expect(kbc.readPort(0x61) == 0xff)
    kbc.writePort(0x61, 0xfe)
    #expect(kbc.resetRequests == 0)
    let window = kbc.statusWindow
    #expect(window.read(offset: 0, size: 2) & 0xff00 == 0xff00)
    window.write(offset: 1, size: 1, value: 0xfe)
    #expect(kbc.resetRequests == 0, "only offset 0 is the port")
    window.write(offset: 0, size: 4, value: 0xffff_fffe)
    #expect(kbc.resetRequests == 1, "the low byte is the command")
}
