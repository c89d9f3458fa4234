// Fuzz target `pit`: the 8254 PIT and port 0x61 under a script of guest port accesses and
// time steps, with the runtime's timer pass (advance, then ask for the next event).
//
// Input: 8 bytes of start time, then operations until the input ends, each an opcode byte and
// its operands:
//   0 port read   1 port write (0x40-0x43, 0x61 or any port)   2 time moves on (any step)
//   3 the runtime's timer pass   4 a read or 5 a write through a port window, size 1/2/4
//   6 channel outputs read
// Invariants, beyond "never traps": after `advance()` the next event is in the future (a
// deadline at or before now would make the runtime's timer thread spin); the interrupt line
// is at the level the model says it drives.

import FuzzSupport
import VisorDevices

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPIT(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    var input = FuzzInput(data, count)
    let clock = FuzzClock(input.u64() >> 4)
    let line = FuzzLine()
    let pit = PIT8254(clock: clock, interruptLine: line)
    let ports: [UInt16] = [0x40, 0x41, 0x42, 0x43, 0x61]
    let windows = [pit.ports, pit.systemControlPorts]
    let sizes: [UInt8] = [1, 2, 4]
    func port(_ input: inout FuzzInput) -> UInt16 {
        let pick = input.byte()
        return pick < 0xf8 ? ports[Int(pick) % ports.count] : input.u16()
    }
    while !input.isAtEnd {
        switch input.byte() % 7 {
        case 0: _ = pit.readPort(port(&input))
        case 1: pit.writePort(port(&input), input.byte())
        case 2: clock.advance(by: input.scaled())
        case 3:
            pit.advance()
            let now = clock.nanoseconds
            if let next = pit.nextEventTime(after: now) {
                require(next > now, "after advance() at \(now) the next event is at \(next)")
            }
        case 4:
            let window = input.below(2)
            _ = windows[window].read(offset: UInt16(input.byte() % 5), size: sizes[input.below(3)])
        case 5:
            let window = input.below(2)
            windows[window].write(offset: UInt16(input.byte() % 5), size: sizes[input.below(3)], value: input.u32())
        default:
            for channel in -1...3 { _ = pit.output(channel: channel) }
        }
        require(pit.interruptLevel == line.isHigh, "model level \(pit.interruptLevel), line \(line.isHigh)")
    }
    return 0
}
