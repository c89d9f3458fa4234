// Fuzz target `rtc`: the MC146818 CMOS RTC under a script of guest port accesses (index and
// data ports) and time steps, with the runtime's timer pass.
//
// Input: 4 bytes of wall-clock seconds at virtual time 0 and 8 bytes of start time, then
// operations until the input ends, each an opcode byte and its operands:
//   0 index write (any register, NMI bit)   1 data read   2 data write   3 time moves on
//   4 the runtime's timer pass   5 a read or 6 a write through the port window, size 1/2/4
//   7 a read or write of any other port
// Invariants, beyond "never traps": after `advance()` the next event is in the future; the
// interrupt line is at the level the model says it drives.

import FuzzSupport
import VisorDevices

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRTC(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    var input = FuzzInput(data, count)
    let epoch = Int64(input.u32())
    let clock = FuzzClock(input.u64() >> 4)
    let line = FuzzLine()
    let rtc = MC146818RTC(clock: clock, epochSeconds: epoch, interruptLine: line)
    let window = rtc.ports
    let sizes: [UInt8] = [1, 2, 4]
    while !input.isAtEnd {
        switch input.byte() % 8 {
        case 0: rtc.writePort(0x70, input.byte())
        case 1: _ = rtc.readPort(0x71)
        case 2: rtc.writePort(0x71, input.byte())
        case 3: clock.advance(by: input.scaled())
        case 4:
            rtc.advance()
            let now = clock.nanoseconds
            if let next = rtc.nextEventTime(after: now) {
                require(next > now, "after advance() at \(now) the next event is at \(next)")
            }
        case 5: _ = window.read(offset: UInt16(input.byte() % 3), size: sizes[input.below(3)])
        case 6: window.write(offset: UInt16(input.byte() % 3), size: sizes[input.below(3)], value: input.u32())
        default:
            let port = input.u16()
            if input.bool() { _ = rtc.readPort(port) } else { rtc.writePort(port, input.byte()) }
        }
        require(rtc.interruptLevel == line.isHigh, "model level \(rtc.interruptLevel), line \(line.isHigh)")
    }
    return 0
}
