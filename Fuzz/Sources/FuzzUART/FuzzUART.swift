// Fuzz target `uart`: the 16550A UART model under a script of guest register accesses, host
// input bytes and snapshot round trips.
//
// Operations until the input ends, each an opcode byte and its operands:
//   0 read (offset 0-9, size 1/2/4)   1 write (offset, size, value)   2 one host byte arrives
//   3 a burst of host bytes (while `canReceive`)   4 snapshot and restore
// Invariants, beyond "never traps": the interrupt line is at the level the model says it
// drives; a UART restored from a snapshot has the same snapshot.

import FuzzSupport
import VisorDevices

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzUART(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    var input = FuzzInput(data, count)
    let sink = FuzzSink()
    var line = FuzzLine()
    var uart = UART16550(sink: sink, interruptLine: line)
    let sizes: [UInt8] = [1, 2, 4]
    while !input.isAtEnd {
        switch input.byte() % 5 {
        case 0:
            _ = uart.read(offset: UInt16(input.byte() % 10), size: sizes[input.below(3)])
        case 1:
            let offset = UInt16(input.byte() % 10)
            uart.write(offset: offset, size: sizes[input.below(3)], value: input.bool() ? UInt32(input.byte()) : input.u32())
        case 2:
            _ = uart.receive(input.byte())
        case 3:
            for byte in input.take(1 + input.below(32)) where uart.canReceive { _ = uart.receive(byte) }
        default:
            let snapshot = uart.state
            let restoredLine = FuzzLine()
            let restored = UART16550(state: snapshot, sink: sink, interruptLine: restoredLine)
            require(restored.state == snapshot, "snapshot \(snapshot) restored as \(restored.state)")
            require(restoredLine.isHigh == uart.interruptLevel, "restored line \(restoredLine.isHigh), original \(uart.interruptLevel)")
            uart = restored
            line = restoredLine
        }
        require(line.isHigh == uart.interruptLevel, "line \(line.isHigh), model \(uart.interruptLevel)")
    }
    return 0
}
