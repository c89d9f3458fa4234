// The wires between device models and vCPUs, without an engine: which vCPU hears about which
// interrupt, which vector the INTA cycle yields, and where IPIs go. Driven through the same
// guest-visible accesses a guest makes (port I/O, APIC register writes).

import Synchronization
import Testing
import VisorCore
import VisorDevices
@testable import Visor

/// A clock the tests move by hand.
private final class TestClock: TimeSource {
    var nanoseconds: UInt64 = 0
}

/// A platform with `vcpus` vCPUs whose signals are recorded.
private final class Harness {
    let clock = TestClock()
    let platform: DevicePlatform
    var signals: [(Int, VCPUSignal)] = []

    init(vcpus: Int = 2) throws {
        platform = try DevicePlatform(vcpuCount: vcpus, clock: clock, tscFrequency: 1_000_000_000,
                                      apicTimerFrequency: 1_000_000_000, consoleOutput: { _ in })
        platform.setSignalHandler { [unowned self] index, signal in self.signals.append((index, signal)) }
    }

    func out(_ port: UInt16, _ value: UInt8) { platform.bus.write(port: port, size: 1, value: UInt32(value)) }
    func apicWrite(_ vcpu: Int, _ register: UInt64, _ value: UInt32) {
        platform.apics[vcpu].write(offset: register, size: 4, value: UInt64(value))
    }

    /// The PIC pair as Linux programs it: vectors 0x20 and 0x28, cascade on IR2, all unmasked
    /// but for `masked`.
    func programPIC(unmasked irqs: [Int]) {
        for (cmd, data, base, icw3) in [(UInt16(0x20), UInt16(0x21), UInt8(0x20), UInt8(4)), (0xa0, 0xa1, 0x28, 2)] {
            out(cmd, 0x11); out(data, base); out(data, icw3); out(data, 0x01)
        }
        var mask: UInt16 = 0xffff
        for irq in irqs { mask &= ~(1 << UInt16(irq)) }
        if irqs.contains(where: { $0 >= 8 }) { mask &= ~(1 << 2) }
        out(0x21, UInt8(truncatingIfNeeded: mask)); out(0xa1, UInt8(truncatingIfNeeded: mask >> 8))
    }
}

private enum Reg {
    static let svr: UInt64 = 0xf0, icrLow: UInt64 = 0x300, icrHigh: UInt64 = 0x310, lvtTimer: UInt64 = 0x320
    static let lvtLINT0: UInt64 = 0x350, initialCount: UInt64 = 0x380, divide: UInt64 = 0x3e0, eoi: UInt64 = 0xb0
}

@Suite("Platform wiring")
struct PlatformWiringTests {
    @Test("COM1's receive interrupt reaches vCPU 0 through IRQ4, the PIC and LINT0 (virtual wire)")
    func uartThroughThePIC() throws {
        let h = try Harness()
        h.programPIC(unmasked: [4])
        h.out(0x3f9, 0x01)  // IER: received-data interrupt
        #expect(h.platform.hasPendingInterrupt(for: 0) == false)
        #expect(h.platform.receive(0x41))
        #expect(h.signals.contains { $0.0 == 0 && $0.1 == .interrupt })
        #expect(h.platform.hasPendingInterrupt(for: 0))
        #expect(!h.platform.hasPendingInterrupt(for: 1), "legacy interrupts go to the BSP only")
        #expect(h.platform.acknowledgeInterrupt(for: 0) == 0x24)
    }

    @Test("PIT channel 0 in mode 2 raises IRQ0 each period once the timers are advanced")
    func pitThroughThePIC() throws {
        let h = try Harness()
        h.programPIC(unmasked: [0])
        h.out(0x43, 0x34)  // channel 0, lobyte/hibyte, mode 2
        h.out(0x40, 0x9c); h.out(0x40, 0x2e)  // 11932 ticks: 10 ms
        let next = try #require(h.platform.nextTimerEvent(for: 0))
        #expect(next > 9_000_000 && next < 11_000_000)
        #expect(h.platform.nextTimerEvent(for: 1) == nil, "the PIT is vCPU 0's")
        h.clock.nanoseconds = next
        h.platform.advanceTimers(for: 0)
        #expect(h.platform.acknowledgeInterrupt(for: 0) == 0x20)
    }

    @Test("a masked LINT0 keeps the PIC away from the BSP")
    func maskedLINT0() throws {
        let h = try Harness()
        h.programPIC(unmasked: [4])
        h.out(0x3f9, 0x01)
        h.apicWrite(0, Reg.svr, 0x1ff)
        h.apicWrite(0, Reg.lvtLINT0, 0x1_0700)
        _ = h.platform.receive(0x41)
        #expect(!h.platform.hasPendingInterrupt(for: 0))
        #expect(h.platform.acknowledgeInterrupt(for: 0) == nil)
    }

    @Test("the APIC's own vector is taken before an ExtINT from the PIC")
    func apicBeforeExtINT() throws {
        let h = try Harness()
        h.programPIC(unmasked: [4])
        h.out(0x3f9, 0x01)
        h.apicWrite(0, Reg.svr, 0x1ff)
        _ = h.platform.receive(0x41)
        h.platform.apics[0].acceptInterrupt(vector: 0x50)
        #expect(h.platform.acknowledgeInterrupt(for: 0) == 0x50)
        #expect(h.platform.acknowledgeInterrupt(for: 0) == 0x24)
    }

    @Test("the APIC timer interrupts its own vCPU only")
    func apicTimer() throws {
        let h = try Harness()
        h.apicWrite(1, Reg.svr, 0x1ff)
        h.apicWrite(1, Reg.divide, 0xb)  // divide by 1
        h.apicWrite(1, Reg.lvtTimer, 0x40)
        h.apicWrite(1, Reg.initialCount, 1000)
        #expect(h.platform.nextTimerEvent(for: 1) == 1000)
        h.clock.nanoseconds = 1000
        h.platform.advanceTimers(for: 1)
        #expect(h.signals.map(\.0) == [1])
        #expect(h.platform.acknowledgeInterrupt(for: 1) == 0x40)
        #expect(!h.platform.hasPendingInterrupt(for: 0))
    }

    @Test("a fixed IPI lands in the target's IRR and signals only the target")
    func fixedIPI() throws {
        let h = try Harness(vcpus: 3)
        for vcpu in 0..<3 { h.apicWrite(vcpu, Reg.svr, 0x1ff) }
        h.apicWrite(0, Reg.icrHigh, 2 << 24)
        h.apicWrite(0, Reg.icrLow, 0x0000_0061)  // fixed, physical, vector 0x61
        #expect(h.signals.map(\.0) == [2])
        #expect(h.platform.acknowledgeInterrupt(for: 2) == 0x61)
        #expect(h.platform.acknowledgeInterrupt(for: 1) == nil)
    }

    @Test("INIT and SIPI with the all-excluding-self shorthand reach every other vCPU's runner")
    func initAndStartup() throws {
        let h = try Harness(vcpus: 3)
        h.apicWrite(0, Reg.svr, 0x1ff)
        h.apicWrite(0, Reg.icrLow, 0x000c_4500)  // INIT, assert, all excluding self
        h.apicWrite(0, Reg.icrLow, 0x000c_4670)  // SIPI, vector 0x70
        #expect(h.signals.filter { $0.1 == .initialize }.map(\.0) == [1, 2])
        #expect(h.signals.filter { $0.1 == .startup(vector: 0x70) }.map(\.0) == [1, 2])
    }

    @Test("a level de-assert INIT and SMIs deliver nothing; SMIs and reserved modes are counted as ignored")
    func ignoredIPIs() throws {
        let h = try Harness(vcpus: 2)
        h.apicWrite(0, Reg.svr, 0x1ff)
        h.apicWrite(0, Reg.icrHigh, 1 << 24)
        h.apicWrite(0, Reg.icrLow, 0x0000_8500)  // INIT level de-assert
        h.apicWrite(0, Reg.icrLow, 0x0000_0200)  // SMI
        h.apicWrite(0, Reg.icrLow, 0x0000_0700)  // reserved mode 7
        #expect(h.signals.isEmpty)
        #expect(h.platform.ignoredIPIs == 2)
        #expect(!h.platform.hasPendingNMI(for: 1))
    }

    @Test("an NMI IPI latches on its target only (even with the target's APIC software-disabled), signals it, and two collapse into one")
    func nmiIPI() throws {
        let h = try Harness(vcpus: 3)
        h.apicWrite(0, Reg.svr, 0x1ff)  // vCPU 2's APIC stays software-disabled
        h.apicWrite(0, Reg.icrHigh, 2 << 24)
        h.apicWrite(0, Reg.icrLow, 0x0000_0400)  // NMI, physical, to APIC 2
        h.apicWrite(0, Reg.icrLow, 0x0000_0400)
        #expect(h.signals.map(\.0) == [2, 2])
        #expect(h.signals.allSatisfy { $0.1 == .interrupt })
        #expect(!h.platform.hasPendingNMI(for: 0) && !h.platform.hasPendingNMI(for: 1))
        #expect(!h.platform.hasPendingInterrupt(for: 2), "an NMI does not go through IRR")
        #expect(h.platform.takeNMI(for: 2))
        #expect(!h.platform.takeNMI(for: 2), "the second collapsed into the first")
        h.apicWrite(0, Reg.icrLow, 0x000c_0400)  // NMI to all excluding self
        #expect(h.platform.takeNMI(for: 1) && h.platform.takeNMI(for: 2) && !h.platform.takeNMI(for: 0))
    }

    @Test("every ICR value decodes and routes without trapping")
    func everyICRValue() throws {
        let h = try Harness(vcpus: 2)
        h.apicWrite(0, Reg.svr, 0x1ff)
        for mode: UInt32 in 0..<8 {
            for shorthand: UInt32 in 0..<4 {
                for flags: UInt32 in [0, 0x0800, 0x4000, 0x8000, 0xc800] {
                    h.apicWrite(0, Reg.icrHigh, 0xff00_0000)
                    h.apicWrite(0, Reg.icrLow, shorthand << 18 | flags | mode << 8 | 0x30)
                }
            }
        }
        #expect(h.platform.ignoredIPIs > 0)
    }

    @Test("a timer access bumps the timer generation, other ports do not")
    func timerGeneration() throws {
        let h = try Harness()
        let before = h.platform.timerGeneration
        h.platform.noteAccess(port: 0x3f8)
        h.platform.noteAccess(port: 0x20)
        #expect(h.platform.timerGeneration == before)
        for port: UInt16 in [0x40, 0x43, 0x61, 0x70, 0x71] { h.platform.noteAccess(port: port) }
        #expect(h.platform.timerGeneration == before + 5)
    }

    @Test("port 0x92's fast INIT (bit 0 rising) sends INIT to every vCPU, once per rising edge")
    func systemControlPortAInit() throws {
        let h = try Harness(vcpus: 3)
        h.out(0x92, 0x02)
        #expect(h.signals.isEmpty)
        h.out(0x92, 0x03)
        #expect(h.signals.map(\.0) == [0, 1, 2])
        #expect(h.signals.allSatisfy { $0.1 == .initialize })
        h.out(0x92, 0x03)
        #expect(h.signals.count == 3, "no new edge, no new INIT")
    }
}

// MARK: The I/O APIC, the 8042, the ACPI blocks (issue #12)

extension Harness {
    /// Writes I/O APIC redirection entry `pin` through IOREGSEL/IOWIN, high half first.
    func ioapicProgram(_ pin: Int, _ entry: UInt64) {
        for (index, half) in [(0x11 + 2 * pin, entry >> 32), (0x10 + 2 * pin, entry & 0xffff_ffff)] {
            platform.ioapic.write(offset: 0x00, size: 4, value: UInt64(index))
            platform.ioapic.write(offset: 0x10, size: 4, value: half)
        }
    }
}

@Suite("Platform wiring: I/O APIC, 8042, ACPI")
struct LinuxPlatformWiringTests {
    @Test("COM1's IRQ4 also reaches the I/O APIC, which sends it to the vCPU its entry names")
    func uartThroughTheIOAPIC() throws {
        let h = try Harness(vcpus: 2)
        h.apicWrite(1, Reg.svr, 0x1ff)
        h.ioapicProgram(4, 0x34 | 1 << 56)  // vector 0x34, fixed, physical destination 1, edge, unmasked
        h.out(0x3f9, 0x01)
        #expect(h.platform.receive(0x41))
        #expect(h.signals.contains { $0.0 == 1 && $0.1 == .interrupt })
        #expect(h.platform.hasPendingInterrupt(for: 1))
        #expect(h.platform.acknowledgeInterrupt(for: 1) == 0x34)
    }

    @Test("the PIT's IRQ0 is I/O APIC pin 2 (the MADT's override), not pin 0")
    func pitOnPin2() throws {
        let h = try Harness(vcpus: 1)
        h.apicWrite(0, Reg.svr, 0x1ff)
        h.apicWrite(0, Reg.lvtLINT0, 1 << 16)  // the 8259 off, as in symmetric I/O mode
        h.ioapicProgram(0, 0x50)
        h.ioapicProgram(2, 0x30)
        h.out(0x43, 0x34); h.out(0x40, 0x9c); h.out(0x40, 0x2e)
        h.clock.nanoseconds = try #require(h.platform.nextTimerEvent(for: 0))
        h.platform.advanceTimers(for: 0)
        #expect(h.platform.acknowledgeInterrupt(for: 0) == 0x30)
        #expect(h.platform.acknowledgeInterrupt(for: 0) == nil, "nothing on pin 0")
    }

    @Test("the SCI is level-triggered: sent again after the EOI while PWRBTN_STS stays set")
    func sciLevelTriggeredWithEOI() throws {
        let h = try Harness(vcpus: 1)
        h.apicWrite(0, Reg.svr, 0x1ff)
        h.apicWrite(0, Reg.lvtLINT0, 1 << 16)
        h.ioapicProgram(9, 0x39 | 1 << 15)  // level, active high
        h.platform.bus.write(port: 0x602, size: 2, value: 0x0100)  // PM1_EN: power button
        h.platform.pm1aEvent.pressPowerButton()
        #expect(h.platform.acknowledgeInterrupt(for: 0) == 0x39)
        h.apicWrite(0, Reg.eoi, 0)
        #expect(h.platform.acknowledgeInterrupt(for: 0) == 0x39, "the EOI broadcast found the SCI still asserted")
        h.platform.bus.write(port: 0x600, size: 2, value: 0x0100)  // the OS clears PWRBTN_STS
        h.apicWrite(0, Reg.eoi, 0)
        #expect(h.platform.acknowledgeInterrupt(for: 0) == nil)
    }

    @Test("the 8042's reset line ends the domain as a reboot request does")
    func keyboardControllerReset() throws {
        let h = try Harness(vcpus: 1)
        h.out(0x64, 0xaa)
        #expect(h.platform.bus.read(port: 0x60, size: 1) == 0x55, "the self test answers")
        #expect(h.platform.takeRequestedOutcome() == nil)
        h.out(0x64, 0xfe)
        #expect(h.platform.takeRequestedOutcome() == .rebooted(how: "8042 reset line"))
    }

    @Test("the ACPI PM timer and PM1 event block are on their ports; the I/O APIC's window is decoded")
    func acpiPortsAndIOAPICWindow() throws {
        let h = try Harness(vcpus: 1)
        h.clock.nanoseconds = 1_000_000_000
        #expect(h.platform.bus.read(port: 0x608, size: 4) == 3_579_545)
        #expect(h.platform.bus.read(port: 0x600, size: 4) == 0, "PM1_STS and PM1_EN clear")
        #expect(h.platform.ioapicOffset(GuestPhysicalAddress(0xfec0_0010)) == 0x10)
        #expect(h.platform.ioapicOffset(GuestPhysicalAddress(0xfec0_1000)) == nil)
        #expect(h.platform.ioapicOffset(GuestPhysicalAddress(0xfebf_ffff)) == nil)
    }

    @Test("the firmware tables describe the platform's vCPUs and blocks")
    func firmwareTables() {
        let tables = DevicePlatform.firmwareTables(vcpuCount: 3)
        #expect(tables.address == 0xe_0000 && tables.rsdpAddress == 0xe_0000)
        #expect(Array(tables.bytes[0..<8]) == Array("RSD PTR ".utf8))
    }
}

// MARK: The HPET (issue 15 item 9)

extension Harness {
    func hpetWrite(_ offset: UInt64, _ value: UInt64) { platform.hpet.write(offset: offset, size: 8, value: value) }
    /// Moves the clock to vCPU 0's next timer event and brings the timers up to it.
    func runToNextTimerEvent() throws {
        clock.nanoseconds = try #require(platform.nextTimerEvent(for: 0))
        platform.advanceTimers(for: 0)
    }
}

@Suite("Platform wiring: HPET")
struct HPETWiringTests {
    @Test("the HPET's block is decoded at 0xfed00000 and the firmware tables announce it")
    func decodedAndAnnounced() throws {
        let h = try Harness(vcpus: 1)
        #expect(h.platform.hpetOffset(GuestPhysicalAddress(0xfed0_0000)) == 0)
        #expect(h.platform.hpetOffset(GuestPhysicalAddress(0xfed0_03ff)) == 0x3ff)
        #expect(h.platform.hpetOffset(GuestPhysicalAddress(0xfed0_0400)) == nil)
        #expect(h.platform.hpetOffset(GuestPhysicalAddress(0xfecf_ffff)) == nil)
        let tables = DevicePlatform.firmwareTables(vcpuCount: 1)
        let hpet = try #require(tables.bytes.indices.first { Array(tables.bytes[$0..<min($0 + 4, tables.bytes.count)]) == Array("HPET".utf8) })
        let base = (0..<8).reduce(UInt64(0)) { $0 | UInt64(tables.bytes[hpet + 44 + $1]) << (8 * UInt64($1)) }
        #expect(base == HPET.defaultBase)
    }

    @Test("timer 2 reaches the vCPU its I/O APIC pin names, at the time its comparator says")
    func timer2ThroughTheIOAPIC() throws {
        let h = try Harness(vcpus: 2)
        h.apicWrite(1, Reg.svr, 0x1ff)
        h.ioapicProgram(23, 0x61 | 1 << 56)  // vector 0x61, vCPU 1, edge, unmasked
        h.hpetWrite(HPET.Register.timerComparator(2), 5_000)
        h.hpetWrite(HPET.Register.timerConfiguration(2), HPET.TimerConfiguration.interruptEnable | 23 << 9)
        h.hpetWrite(HPET.Register.configuration, HPET.Configuration.enable)
        #expect(h.platform.nextTimerEvent(for: 0) == 50_000, "5000 ticks of 10 ns; vCPU 0 keeps the platform's timers")
        #expect(h.platform.nextTimerEvent(for: 1) == nil)
        try h.runToNextTimerEvent()
        #expect(h.signals.contains { $0.0 == 1 && $0.1 == .interrupt })
        #expect(h.platform.acknowledgeInterrupt(for: 1) == 0x61)
    }

    @Test("legacy replacement: timer 0 is IRQ0 on pin 2, the PIT's IRQ0 is cut off, and back after")
    func legacyReplacement() throws {
        let h = try Harness(vcpus: 1)
        h.apicWrite(0, Reg.svr, 0x1ff)
        h.apicWrite(0, Reg.lvtLINT0, 1 << 16)
        h.ioapicProgram(2, 0x30)
        h.hpetWrite(HPET.Register.configuration, HPET.Configuration.enable | HPET.Configuration.legacyRoute)
        h.out(0x43, 0x34); h.out(0x40, 0x9c); h.out(0x40, 0x2e)  // PIT mode 2, 10 ms (OUT rises at once)
        for _ in 0..<4 { try h.runToNextTimerEvent() }
        #expect(h.platform.hasPendingInterrupt(for: 0) == false, "the PIT ticked four times into nothing")
        h.hpetWrite(HPET.Register.timerComparator(0), h.platform.hpet.mainCounter + 1000)
        h.hpetWrite(HPET.Register.timerConfiguration(0), HPET.TimerConfiguration.interruptEnable)
        let due = try #require(h.platform.hpet.nextEventTime(after: h.clock.nanoseconds))
        h.clock.nanoseconds = due
        h.platform.advanceTimers(for: 0)
        #expect(h.platform.acknowledgeInterrupt(for: 0) == 0x30, "the HPET's timer 0 on pin 2")
        h.apicWrite(0, Reg.eoi, 0)
        h.hpetWrite(HPET.Register.configuration, HPET.Configuration.enable)
        for _ in 0..<2 { try h.runToNextTimerEvent() }
        #expect(h.platform.acknowledgeInterrupt(for: 0) == 0x30, "the PIT's IRQ0 again")
    }
}
