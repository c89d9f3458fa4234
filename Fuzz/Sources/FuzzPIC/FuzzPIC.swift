// Fuzz target `pic`: the 8259A pair and its ELCRs under a script of guest port accesses (byte
// ports and the bus windows with 2- and 4-byte accesses), device lines and INTA cycles.
//
// Operations until the input ends, each an opcode byte and its operands:
//   0 port read   1 port write (0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1 or any port)
//   2 a line (any Int8, so also ones that do not exist) driven high or low
//   3 the CPU's INTA when something is pending (or a spurious one)
//   4 a read or 5 a write through one of the three port windows, size 1/2/4, any offset
// Invariant, beyond "never traps": INT is high exactly when `pendingVector()` has a vector, and
// the model's `interruptLevel` agrees with the level it drove.

import FuzzSupport
import VisorDevices

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPIC(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    var input = FuzzInput(data, count)
    let line = FuzzLine()
    let pic = PIC8259Pair(interruptLine: line)
    let ports: [UInt16] = [0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1]
    let windows = [pic.masterPorts, pic.slavePorts, pic.elcrPorts]
    let sizes: [UInt8] = [1, 2, 4]
    func port(_ input: inout FuzzInput) -> UInt16 {
        let pick = input.byte()
        return pick < 0xf8 ? ports[Int(pick) % ports.count] : input.u16()
    }
    while !input.isAtEnd {
        switch input.byte() % 6 {
        case 0: _ = pic.readPort(port(&input))
        case 1: pic.writePort(port(&input), input.byte())
        case 2: pic.setIRQ(Int(Int8(bitPattern: input.byte())), level: input.bool())
        case 3:
            let vector = pic.pendingVector()
            let acknowledged = pic.acknowledge()
            if let vector { require(acknowledged == vector, "INTA gave \(acknowledged), pending was \(vector)") }
        case 4:
            _ = windows[input.below(3)].read(offset: UInt16(input.byte() % 4), size: sizes[input.below(3)])
        default:
            windows[input.below(3)].write(offset: UInt16(input.byte() % 4), size: sizes[input.below(3)], value: input.u32())
        }
        require(line.isHigh == (pic.pendingVector() != nil), "INT \(line.isHigh), pending \(String(describing: pic.pendingVector()))")
        require(pic.interruptLevel == line.isHigh, "model level \(pic.interruptLevel), line \(line.isHigh)")
    }
    return 0
}
