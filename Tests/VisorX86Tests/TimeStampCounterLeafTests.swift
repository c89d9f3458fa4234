// The interp CPU states its TSC rate in Intel's leaves 0x15 and 0x16, where Linux reads it (and
// then trusts it without calibrating against the PIT).

import Testing
import VisorCore
import VisorX86

@Test func theTSCRateIsInLeaves0x15And0x16() {
    let table = CPUIDTable(hostSupported: InterpEngine.cpuidLeaves, timeStampCounterFrequency: 1_000_000_000)
    #expect(table.lookup(function: 0).eax >= 0x16, "the highest basic leaf reaches 0x16")
    let crystal = table.lookup(function: 0x15)
    #expect(crystal.eax != 0 && crystal.ebx != 0, "a ratio Linux accepts")
    let tscHz = UInt64(crystal.ecx) * UInt64(crystal.ebx) / UInt64(crystal.eax)
    #expect(Double(tscHz) == InterpEngine.timeStampCounterHz, "crystal × EBX / EAX is the TSC's rate")
    #expect(Double(table.lookup(function: 0x16).eax) * 1e6 == InterpEngine.timeStampCounterHz, "base frequency in MHz")
    #expect(table.lookup(function: 0x4000_0010).eax == 1_000_000, "and Visor's own timing leaf agrees (kHz)")
}
