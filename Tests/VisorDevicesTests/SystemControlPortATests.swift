// Port 0x92: a 0-to-1 write of bit 0 is one INIT pulse; A20 always reads open.

import Testing
import VisorDevices

@Suite struct SystemControlPortATests {
    @Test func resetStateReadsA20Open() {
        let port = SystemControlPortA()
        #expect(port.read(offset: 0, size: 1) == 0x02)
        #expect(port.read(offset: 0, size: 2) == 0xff02, "bytes past the one port float high")
        #expect(port.initRequests == 0)
    }

    @Test func risingBitZeroPulsesInitOnce() {
        var pulses = 0
        let port = SystemControlPortA { pulses += 1 }
        port.write(offset: 0, size: 1, value: 0x01)
        #expect(pulses == 1)
        port.write(offset: 0, size: 1, value: 0x03)  // bit 0 stays set: no new edge
        #expect(pulses == 1)
        #expect(port.read(offset: 0, size: 1) == 0x03, "bit 0 reads back as written")
        port.write(offset: 0, size: 1, value: 0x00)
        #expect(port.read(offset: 0, size: 1) == 0x02, "A20 cannot be closed")
        port.write(offset: 0, size: 1, value: 0x01)
        #expect(pulses == 2)
        #expect(port.initRequests == 2)
    }

    @Test func onlyTheLowByteCounts() {
        var pulses = 0
        let port = SystemControlPortA { pulses += 1 }
        port.write(offset: 0, size: 4, value: 0xffff_ff00)
        #expect(pulses == 0)
        port.write(offset: 1, size: 1, value: 0x01)  // a port past 0x92 is not this register
        #expect(pulses == 0)
    }
}
