// One register behaviour per test, driven through the same port accesses a guest makes.

import Testing
import VisorDevices

private typealias Reg = UART16550.Register
private typealias IER = UART16550.IER
private typealias IIR = UART16550.IIR
private typealias FCR = UART16550.FCR
private typealias LCR = UART16550.LCR
private typealias MCR = UART16550.MCR
private typealias LSR = UART16550.LSR
private typealias MSR = UART16550.MSR

extension UART16550 {
    fileprivate func get(_ register: UInt16) -> UInt8 {
        UInt8(truncatingIfNeeded: read(offset: register, size: 1))
    }
    fileprivate func set(_ register: UInt16, _ value: UInt8) {
        write(offset: register, size: 1, value: UInt32(value))
    }
}

private func makeUART() -> (UART16550, RecordingSink, RecordingLine) {
    let sink = RecordingSink()
    let line = RecordingLine()
    return (UART16550(sink: sink, interruptLine: line), sink, line)
}

@Test func divisorLatchIsReachedOnlyWhileDLABIsSet() {
    let (uart, sink, _) = makeUART()
    uart.set(Reg.lcr, LCR.dlab | 0b11)
    #expect(uart.get(Reg.dll) == 12, "reset divisor is 12 (9600 baud)")
    #expect(uart.get(Reg.dlm) == 0)
    uart.set(Reg.dlm, 0x02)
    uart.set(Reg.dll, 0x01)
    #expect(uart.get(Reg.dll) == 0x01)
    #expect(uart.get(Reg.dlm) == 0x02)
    #expect(sink.bytes.isEmpty, "a DLL write is not a THR write")
    #expect(uart.get(Reg.lcr) == LCR.dlab | 0b11)

    uart.set(Reg.lcr, 0b11)
    #expect(uart.get(Reg.ier) == 0, "offset 1 is IER again")
    uart.set(Reg.thr, 0x41)
    #expect(sink.bytes == [0x41])
    #expect(uart.state.divisor == 0x0201)
}

@Test func transmittedBytesGoToTheSink() {
    let (uart, sink, _) = makeUART()
    for byte in "hi\n".utf8 { uart.set(Reg.thr, byte) }
    #expect(sink.bytes == Array("hi\n".utf8))
}

@Test func wideAccessesUseTheLowByte() {
    let (uart, sink, _) = makeUART()
    uart.write(offset: Reg.thr, size: 4, value: 0x1234_5641)
    uart.write(offset: Reg.scr, size: 2, value: 0xabcd)
    #expect(sink.bytes == [0x41])
    #expect(uart.read(offset: Reg.scr, size: 4) == 0xcd)
}

@Test func lineStatusReportsTransmitterEmptyAndDataReady() {
    let (uart, _, _) = makeUART()
    #expect(uart.get(Reg.lsr) == LSR.thre | LSR.temt)
    #expect(uart.receive(0x55))
    #expect(uart.get(Reg.lsr) == LSR.thre | LSR.temt | LSR.dr)
    #expect(uart.get(Reg.rbr) == 0x55)
    #expect(uart.get(Reg.lsr) == LSR.thre | LSR.temt)
}

@Test func receiveFIFOKeepsOrder() {
    let (uart, _, _) = makeUART()
    uart.set(Reg.fcr, FCR.fifoEnable)
    for byte in UInt8(0)..<16 { #expect(uart.receive(0xa0 + byte)) }
    let drained = (0..<16).map { _ in uart.get(Reg.rbr) }
    #expect(drained == (UInt8(0)..<16).map { 0xa0 + $0 })
    #expect(uart.get(Reg.lsr) & LSR.dr == 0)
}

@Test func receiveFIFOOverrunsAtSixteenBytes() {
    let (uart, _, _) = makeUART()
    uart.set(Reg.fcr, FCR.fifoEnable)
    for byte in UInt8(0)..<16 { #expect(uart.receive(byte)) }
    #expect(!uart.canReceive)
    #expect(!uart.receive(0xee), "the 17th byte is lost")
    #expect(uart.get(Reg.lsr) & LSR.oe != 0)
    #expect(uart.get(Reg.lsr) & LSR.oe == 0, "reading LSR clears OE")
    #expect(uart.state.receiveFIFO == Array(0..<16), "the FIFO kept the first 16 bytes")
}

@Test func withoutFIFOsTheReceiverHoldsOneByte() {
    let (uart, _, _) = makeUART()
    #expect(uart.receive(1))
    #expect(!uart.canReceive)
    #expect(!uart.receive(2))
    #expect(uart.get(Reg.lsr) & LSR.oe != 0)
    #expect(uart.get(Reg.rbr) == 1)
}

@Test func fifoControlClearsTheReceiveFIFO() {
    let (uart, _, _) = makeUART()
    uart.set(Reg.fcr, FCR.fifoEnable)
    for byte in UInt8(1)...5 { _ = uart.receive(byte) }
    uart.set(Reg.fcr, FCR.fifoEnable | FCR.clearReceiveFIFO | FCR.clearTransmitFIFO)
    #expect(uart.get(Reg.lsr) & LSR.dr == 0)
    #expect(uart.state.receiveFIFO.isEmpty)
    #expect(uart.state.fcr == FCR.fifoEnable, "clear bits are self-clearing")
}

@Test func fifoEnableShowsInIIRBitsSevenAndSix() {
    let (uart, _, _) = makeUART()
    #expect(uart.get(Reg.iir) == IIR.noInterruptPending)
    uart.set(Reg.fcr, FCR.fifoEnable | FCR.trigger14)
    #expect(uart.get(Reg.iir) == IIR.fifosEnabled | IIR.noInterruptPending)
    uart.set(Reg.fcr, 0)
    #expect(uart.get(Reg.iir) == IIR.noInterruptPending)
}

@Test func interruptIdentificationFollowsDatasheetPriority() {
    let (uart, _, line) = makeUART()
    // Make every source pending: overrun (line status), data, THR empty, modem status delta.
    #expect(uart.receive(0x11))
    #expect(!uart.receive(0x22))
    uart.set(Reg.mcr, MCR.loop)  // drops CTS, DSR and DCD: delta bits
    uart.set(Reg.ier, IER.erbfi | IER.etbei | IER.elsi | IER.edssi)
    #expect(line.isHigh)

    #expect(uart.get(Reg.iir) == IIR.receiverLineStatus)
    _ = uart.get(Reg.lsr)
    #expect(uart.get(Reg.iir) == IIR.receivedDataAvailable)
    _ = uart.get(Reg.rbr)
    #expect(uart.get(Reg.iir) == IIR.thrEmpty)
    #expect(uart.get(Reg.iir) == IIR.modemStatus, "the THRE report was acknowledged")
    _ = uart.get(Reg.msr)
    #expect(uart.get(Reg.iir) == IIR.noInterruptPending)
    #expect(!line.isHigh)
}

@Test func enablingETBEIRaisesTHREAndReadingIIRClearsIt() {
    let (uart, _, line) = makeUART()
    #expect(!uart.interruptLevel)
    uart.set(Reg.ier, IER.etbei)
    #expect(line.levels == [true])
    #expect(uart.get(Reg.iir) == IIR.thrEmpty)
    #expect(line.levels == [true, false])
    #expect(uart.get(Reg.iir) == IIR.noInterruptPending)
    // The 8250 driver's start-up probe: disable, re-enable, expect THRE again.
    uart.set(Reg.ier, 0)
    uart.set(Reg.ier, IER.etbei)
    #expect(uart.get(Reg.iir) == IIR.thrEmpty)
}

@Test func writingTHRRearmsTHREWithAFreshEdge() {
    let (uart, sink, line) = makeUART()
    uart.set(Reg.ier, IER.etbei)
    uart.set(Reg.thr, 0x41)
    #expect(sink.bytes == [0x41])
    #expect(line.levels == [true, false, true], "THR write acknowledges, transmit re-raises")
    _ = uart.get(Reg.iir)
    uart.set(Reg.thr, 0x42)
    #expect(uart.get(Reg.iir) == IIR.thrEmpty)
}

@Test func receivedDataDrivesTheInterruptLine() {
    let (uart, _, line) = makeUART()
    uart.set(Reg.ier, IER.erbfi)
    #expect(!line.isHigh)
    #expect(uart.receive(0x7a))
    #expect(line.isHigh)
    #expect(uart.get(Reg.iir) == IIR.receivedDataAvailable)
    #expect(line.isHigh, "reading IIR does not acknowledge received data")
    #expect(uart.get(Reg.rbr) == 0x7a)
    #expect(!line.isHigh)
    #expect(line.levels == [true, false])
}

@Test func dataBelowTheTriggerLevelReportsCharacterTimeout() {
    let (uart, _, _) = makeUART()
    uart.set(Reg.fcr, FCR.fifoEnable | FCR.trigger4)
    uart.set(Reg.ier, IER.erbfi)
    _ = uart.receive(1)
    #expect(uart.get(Reg.iir) == IIR.fifosEnabled | IIR.characterTimeout)
    for byte in UInt8(2)...4 { _ = uart.receive(byte) }
    #expect(uart.get(Reg.iir) == IIR.fifosEnabled | IIR.receivedDataAvailable)
}

@Test func loopbackSendsTransmittedBytesToTheReceiver() {
    let (uart, sink, _) = makeUART()
    uart.set(Reg.mcr, MCR.loop)
    uart.set(Reg.thr, 0x5a)
    #expect(sink.bytes.isEmpty)
    #expect(uart.get(Reg.lsr) & LSR.dr != 0)
    #expect(uart.get(Reg.rbr) == 0x5a)
    #expect(!uart.canReceive, "the serial input is disconnected in loopback")
    #expect(!uart.receive(0x01))
    uart.set(Reg.mcr, 0)
    uart.set(Reg.thr, 0x5b)
    #expect(sink.bytes == [0x5b])
}

@Test func loopbackMirrorsModemControlOutputsInModemStatus() {
    let (uart, _, _) = makeUART()
    uart.set(Reg.mcr, MCR.loop | MCR.rts)
    #expect(uart.get(Reg.msr) & MSR.inputMask == MSR.cts)
    uart.set(Reg.mcr, MCR.loop | MCR.dtr)
    #expect(uart.get(Reg.msr) & MSR.inputMask == MSR.dsr)
    uart.set(Reg.mcr, MCR.loop | MCR.out1)
    #expect(uart.get(Reg.msr) & MSR.inputMask == MSR.ri)
    uart.set(Reg.mcr, MCR.loop | MCR.out2)
    #expect(uart.get(Reg.msr) & MSR.inputMask == MSR.dcd)
    uart.set(Reg.mcr, 0)
    #expect(uart.get(Reg.msr) & MSR.inputMask == MSR.cts | MSR.dsr | MSR.dcd, "host lines again")
}

@Test func modemStatusDeltaBitsSetOnChangeAndClearOnRead() {
    let (uart, _, _) = makeUART()
    #expect(uart.get(Reg.msr) == MSR.cts | MSR.dsr | MSR.dcd, "no deltas after reset")
    uart.set(Reg.mcr, MCR.loop)
    #expect(uart.get(Reg.msr) == MSR.dcts | MSR.ddsr | MSR.ddcd)
    #expect(uart.get(Reg.msr) == 0)
    uart.set(Reg.mcr, MCR.loop | MCR.out1)
    #expect(uart.get(Reg.msr) == MSR.ri, "RI's leading edge sets no delta")
    uart.set(Reg.mcr, MCR.loop)
    #expect(uart.get(Reg.msr) == MSR.teri, "RI's trailing edge sets TERI")
}

@Test func linux8250ProbeIdentifiesA16550A() {
    // The checks of autoconfig() in Linux's drivers/tty/serial/8250/8250_port.c, in order.
    let (uart, _, _) = makeUART()
    uart.set(Reg.ier, 0)
    #expect(uart.get(Reg.ier) & 0x0f == 0)
    uart.set(Reg.ier, 0x0f)
    #expect(uart.get(Reg.ier) & 0x0f == 0x0f, "IER holds its four bits: a UART is present")
    uart.set(Reg.ier, 0)
    uart.set(Reg.mcr, MCR.loop | MCR.out2 | MCR.rts)
    #expect(uart.get(Reg.msr) & MSR.inputMask == 0x90, "loopback wiring: OUT2→DCD, RTS→CTS")
    uart.set(Reg.mcr, 0)
    uart.set(Reg.fcr, FCR.fifoEnable)
    #expect(uart.get(Reg.iir) & IIR.fifosEnabled == IIR.fifosEnabled, "16550A, not 16450/16550")
    uart.set(Reg.lcr, LCR.dlab)
    #expect(uart.get(Reg.iir) != 0, "no EFR behind DLAB: not a 16650")
    uart.set(Reg.fcr, FCR.fifoEnable | 0b0010_0000)
    #expect(uart.get(Reg.iir) & 0b0010_0000 == 0, "no 64-byte FIFO: not a 16750")
}

@Test func upperBitsOfIERAndMCRReadAsZero() {
    let (uart, _, _) = makeUART()
    uart.set(Reg.ier, 0xff)
    uart.set(Reg.mcr, 0xff)
    #expect(uart.get(Reg.ier) == IER.writableMask)
    #expect(uart.get(Reg.mcr) == MCR.writableMask)
}

@Test func scratchRegisterHoldsAnyByte() {
    let (uart, _, _) = makeUART()
    for value: UInt8 in [0x00, 0x5a, 0xa5, 0xff] {
        uart.set(Reg.scr, value)
        #expect(uart.get(Reg.scr) == value)
    }
}

@Test func snapshotRoundTripPreservesRegistersAndFIFO() {
    let (uart, _, _) = makeUART()
    uart.set(Reg.lcr, LCR.dlab)
    uart.set(Reg.dll, 0x03)
    uart.set(Reg.lcr, 0b11)
    uart.set(Reg.fcr, FCR.fifoEnable | FCR.trigger8)
    uart.set(Reg.ier, IER.erbfi | IER.etbei)
    uart.set(Reg.scr, 0x99)
    uart.set(Reg.mcr, MCR.dtr | MCR.out2)
    for byte in Array("abc".utf8) { _ = uart.receive(byte) }
    let saved = uart.state

    let line = RecordingLine()
    let restored = UART16550(state: saved, sink: RecordingSink(), interruptLine: line)
    #expect(restored.state == saved)
    #expect(line.levels == [true], "a pending interrupt is driven on restore")
    #expect(restored.get(Reg.scr) == 0x99)
    #expect((0..<3).map { _ in restored.get(Reg.rbr) } == Array("abc".utf8))
}

@Test func restoringAnImpossibleSnapshotMasksIt() {
    var hostile = UART16550.State()
    hostile.receiveFIFO = Array(repeating: 0x41, count: 1000)
    hostile.ier = 0xff
    hostile.mcr = 0xff
    hostile.lineErrors = 0xff
    let uart = UART16550(state: hostile, sink: RecordingSink())
    #expect(uart.state.receiveFIFO.count == 1, "FIFOs are disabled, so one byte fits")
    #expect(uart.state.ier == IER.writableMask)
    #expect(uart.state.mcr == MCR.writableMask)
    #expect(uart.get(Reg.lsr) & (LSR.thre | LSR.temt) == LSR.thre | LSR.temt)
}

@Test func anyOffsetSizeAndValueIsHandled() {
    let (uart, _, _) = makeUART()
    var unbackedReadsNotAllOnes = 0
    var wideReads = 0
    for offset in UInt16(0)...0xffff {
        for size in UInt8(0)...0xff {
            let value = UInt32(offset) << 16 | UInt32(size) << 8 | UInt32(offset & 0xff)
            uart.write(offset: offset, size: size, value: value)
            let read = uart.read(offset: offset, size: size)
            if offset >= UART16550.registerCount && read != 0xff { unbackedReadsNotAllOnes += 1 }
            if read > 0xff { wideReads += 1 }
        }
    }
    #expect(unbackedReadsNotAllOnes == 0)
    #expect(wideReads == 0, "registers are one byte whatever the access size")
}

@Test func randomRegisterScriptsKeepInvariants() {
    var random = ScriptRandom(seed: 0x16550)
    let (uart, _, line) = makeUART()
    let validIDs: Set<UInt8> = [
        IIR.noInterruptPending, IIR.receiverLineStatus, IIR.receivedDataAvailable,
        IIR.characterTimeout, IIR.thrEmpty, IIR.modemStatus,
    ]
    for _ in 0..<20_000 {
        let offset = UInt16(random.below(8))
        switch random.below(3) {
        case 0: uart.write(offset: offset, size: 1, value: UInt32(random.below(256)))
        case 1: _ = uart.read(offset: offset, size: 1)
        default: _ = uart.receive(UInt8(random.below(256)))
        }
        let state = uart.state
        #expect(state.receiveFIFO.count <= UART16550.fifoDepth)
        #expect(line.isHigh == uart.interruptLevel)
        // Peek at IIR without acknowledging anything: restore the state afterwards.
        let iir = uart.get(Reg.iir)
        uart.state = state
        #expect(validIDs.contains(iir & IIR.identificationMask))
        #expect(iir & 0b0011_0000 == 0)
    }
}
