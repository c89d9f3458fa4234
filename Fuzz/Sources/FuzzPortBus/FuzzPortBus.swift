// Fuzz target `ports`: the guest's whole port space as `DevicePlatform` wires it — the I/O bus with
// the UART, the PIC pair and its ELCRs, the PIT and port 0x61, the RTC, the debug-exit port
// and the ACPI PM1a control register, their interrupt outputs on the PIC's ISA lines — under a
// script of port reads and writes of every size, time steps and INTA cycles. This is where the
// two small models (debug exit, PM1a) are fuzzed, and the routing between all of them.
//
// Operations until the input ends, each an opcode byte and its operands:
//   0-1 a port read   2-3 a port write (a decoded port ± 3 mostly, any port sometimes; size 1,
//   2 or 4)   4 time moves on and the timers are brought up to date   5 the CPU's INTA
// Invariants, beyond "never traps": the PIC's INT is high exactly when it has a vector; the
// debug-exit and power-off requests are the ones the devices document.

import FuzzSupport
import VisorABI
import VisorCore
import VisorDevices

/// An ISA line into the PIC, as `DevicePlatform`'s ISAInterruptLine.
final class ISALine: InterruptLine {
    let irq: Int
    weak var pic: PIC8259Pair?
    init(irq: Int) { self.irq = irq }
    func setLevel(_ high: Bool) { pic?.setIRQ(irq, level: high) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPortBus(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    var input = FuzzInput(data, count)
    let clock = FuzzClock()
    let cpuLine = FuzzLine()
    let pic = PIC8259Pair(interruptLine: cpuLine)
    let lines = [ISALine(irq: 4), ISALine(irq: 0), ISALine(irq: 8)]
    for line in lines { line.pic = pic }
    let uart = UART16550(sink: FuzzSink(), interruptLine: lines[0])
    let pit = PIT8254(clock: clock, interruptLine: lines[1])
    let rtc = MC146818RTC(clock: clock, epochSeconds: 1_700_000_000, interruptLine: lines[2])
    var exitRequests: [Int] = []
    var powerOffs = 0
    let debugExit = DebugExit { exitRequests.append($0) }
    let power = PM1aControl { powerOffs += 1 }
    let bus = IOBus()
    do {
        try bus.attach(uart, base: PlatformPorts.com1, count: PlatformPorts.uartRegisterCount)
        try bus.attach(debugExit, base: PlatformPorts.debugExit, count: PlatformPorts.debugExitSize)
        try bus.attach(power, base: PlatformPorts.acpiPM1aControl, count: PlatformPorts.acpiPM1aControlSize)
        try bus.attach(pic.masterPorts, base: PIC8259Pair.masterBase, count: PIC8259Pair.portCount)
        try bus.attach(pic.slavePorts, base: PIC8259Pair.slaveBase, count: PIC8259Pair.portCount)
        try bus.attach(pic.elcrPorts, base: PIC8259Pair.elcrBase, count: PIC8259Pair.portCount)
        try bus.attach(pit.ports, base: PIT8254.base, count: PIT8254.portCount)
        try bus.attach(pit.systemControlPorts, base: PIT8254.systemControlPort, count: 1)
        try bus.attach(rtc.ports, base: MC146818RTC.base, count: MC146818RTC.portCount)
    } catch {
        fatalError("the platform's ports do not fit the bus: \(error)")
    }
    let decoded: [UInt16] = [PlatformPorts.com1, PlatformPorts.debugExit, PlatformPorts.acpiPM1aControl, 0x20, 0xa0,
                             0x4d0, 0x40, 0x61, 0x70]
    let sizes: [UInt8] = [1, 2, 4]
    func port(_ input: inout FuzzInput) -> UInt16 {
        let pick = input.byte()
        guard pick < 0xf0 else { return input.u16() }
        return decoded[Int(pick) % decoded.count] &+ UInt16(pick >> 4 & 7) &- 3
    }
    while !input.isAtEnd {
        switch input.byte() % 6 {
        case 0, 1:
            let size = sizes[input.below(3)]
            let value = bus.read(port: port(&input), size: size)
            require(size == 4 || value >> (UInt32(size) * 8) == 0, "a \(size)-byte read returned \(value)")
        case 2, 3:
            let at = port(&input)
            bus.write(port: at, size: sizes[input.below(3)], value: input.u32())
        case 4:
            clock.advance(by: input.scaled())
            pit.advance()
            rtc.advance()
        default:
            if pic.pendingVector() != nil { _ = pic.acknowledge() }
        }
        require(cpuLine.isHigh == (pic.pendingVector() != nil), "INT \(cpuLine.isHigh), pending \(String(describing: pic.pendingVector()))")
        require(exitRequests.count <= 1, "debug exit asked \(exitRequests.count) times")
        if let status = exitRequests.first { require(status & 1 == 1, "debug-exit status \(status) is even") }
        require(powerOffs <= 1, "powered off \(powerOffs) times")
    }
    return 0
}
