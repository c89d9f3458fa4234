// isa-debug-exit: status math, sizes, reads, and the first request standing.

import Testing
import VisorDevices

@Test(arguments: [
    (UInt32(0), 1),
    (1, 3),
    (0x7f, 0xff),
    (0x8000_0000, 0x1_0000_0001),
    (0xffff_ffff, 0x1_ffff_ffff),
])
func debugExitStatusIsValueShiftedLeftWithLowBitSet(value: UInt32, status: Int) {
    let device = DebugExit()
    device.write(offset: 0, size: 4, value: value)
    #expect(device.requestedStatus == status)
    #expect(DebugExit.status(forWrittenValue: value) == status)
}

@Test func debugExitUsesOnlyTheLowBytesOfTheAccess() {
    let byte = DebugExit()
    byte.write(offset: 0, size: 1, value: 0x1ff)
    #expect(byte.requestedStatus == 0x1ff)
    let word = DebugExit()
    word.write(offset: 0, size: 2, value: 0xdead_0001)
    #expect(word.requestedStatus == 3)
}

@Test func debugExitReadsAllOnes() {
    let device = DebugExit()
    #expect(device.read(offset: 0, size: 1) == 0xff)
    #expect(device.read(offset: 0, size: 2) == 0xffff)
    #expect(device.read(offset: 0, size: 4) == 0xffff_ffff)
    #expect(device.requestedStatus == nil, "reads request nothing")
}

@Test func debugExitReportsTheFirstRequestOnce() {
    var reported: [Int] = []
    let device = DebugExit { reported.append($0) }
    device.write(offset: 0, size: 1, value: 2)
    device.write(offset: 0, size: 1, value: 9)
    #expect(reported == [5])
    #expect(device.requestedStatus == 5)
    device.reset()
    #expect(device.requestedStatus == nil)
    device.write(offset: 0, size: 1, value: 9)
    #expect(reported == [5, 19])
}

@Test func debugExitHandlesAnyOffsetAndSize() {
    var misbehaved = 0
    let device = DebugExit()
    for offset in UInt16(0)...0xffff {
        for size in UInt8(0)...0xff {
            device.reset()
            if size > 0 && device.read(offset: offset, size: size) == 0 { misbehaved += 1 }
            device.write(offset: offset, size: size, value: 0xffff_ffff)
            if device.requestedStatus.map({ $0 & 1 != 1 }) ?? true { misbehaved += 1 }
        }
    }
    #expect(misbehaved == 0)
}
