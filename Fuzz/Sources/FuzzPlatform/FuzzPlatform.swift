// Fuzz target `platform`: Visor's whole PC platform as a domain builds it (`DevicePlatform`, two
// vCPUs): every port device (UART, PIC pair and ELCRs, PIT and port 0x61, RTC, debug exit, the
// 8042 and its reset line, port 0x92, the ACPI PM1a event and control blocks and PM timer),
// both local APICs, the I/O APIC and the HPET by MMIO, and the wiring between them (ISA lines to
// the PIC and the I/O APIC, the SCI, the HPET's pins and its legacy replacement of the PIT's and
// RTC's lines, IPIs, level-triggered EOI broadcast, INIT/SIPI signals), under a
// script of guest accesses, time steps, INTA cycles and host console input. Where `ports` and
// `apic` fuzz device models on their own, this is where the routing between them is.
//
// Operations until the input ends, each an opcode byte and its operands:
//   0-1 port read   2-3 port write (a port some device decodes ± 3 mostly, any port sometimes;
//   size 1, 2 or 4)   4 local APIC MMIO read   5 local APIC MMIO write (vCPU and offset from
//   the input)   6 I/O APIC MMIO read   7 I/O APIC MMIO write   8 TSC-deadline write
//   9 time moves on and both vCPUs' timers are brought up to date   10 INTA on a vCPU
//   11 a byte of host console input   12 HPET MMIO read   13 HPET MMIO write (a 1 KiB window;
//   any size 1-8, so misaligned and odd-sized accesses too)
// Invariants, beyond "never traps": a vCPU has a pending interrupt exactly when its INTA
// returns a vector; after `advanceTimers` the next timer event is in the future; a reported
// outcome is one the devices document.

import FuzzSupport
@testable import Visor
import VisorABI
import VisorCore
import VisorDevices

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPlatform(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    var input = FuzzInput(data, count)
    let clock = FuzzClock()
    let platform: DevicePlatform
    do {
        platform = try DevicePlatform(vcpuCount: 2, clock: clock, tscFrequency: 1_000_000_000,
                                      apicTimerFrequency: 1_000_000_000, consoleOutput: { _ in })
    } catch {
        fatalError("the platform cannot be built: \(error)")
    }
    var signals = 0
    platform.setSignalHandler { index, _ in
        require(index == 0 || index == 1, "a signal for vCPU \(index) of 2")
        signals += 1
    }
    let decoded: [UInt16] = [PlatformPorts.com1, PlatformPorts.debugExit, PlatformPorts.acpiPM1aControl,
                             PlatformPorts.acpiPM1aEvent, PlatformPorts.acpiPMTimer, 0x20, 0xa0, 0x4d0, 0x40,
                             0x61, 0x70, 0x60, 0x64, 0x92]
    let sizes: [UInt8] = [1, 2, 4]
    func port(_ input: inout FuzzInput) -> UInt16 {
        let pick = input.byte()
        guard pick < 0xf0 else { return input.u16() }
        return decoded[Int(pick) % decoded.count] &+ UInt16(pick >> 4 & 7) &- 3
    }
    /// An offset in a 4 KiB register window: a register's start mostly, anywhere sometimes.
    func offset(_ input: inout FuzzInput) -> UInt64 {
        let raw = UInt64(input.u16())
        return raw & 1 == 0 ? raw >> 1 & 0xff0 : raw >> 1 & 0xfff
    }
    while !input.isAtEnd {
        let vcpu = Int(input.byte() & 1)
        switch input.byte() % 14 {
        case 0, 1:
            let size = sizes[input.below(3)]
            let value = platform.bus.read(port: port(&input), size: size)
            require(size == 4 || value >> (UInt32(size) * 8) == 0, "a \(size)-byte read returned \(value)")
        case 2, 3:
            let at = port(&input)
            platform.bus.write(port: at, size: sizes[input.below(3)], value: input.u32())
        case 4: _ = platform.apics[vcpu].read(offset: offset(&input), size: [1, 2, 4, 8][input.below(4)])
        case 5: platform.apics[vcpu].write(offset: offset(&input), size: [1, 2, 4, 8][input.below(4)], value: input.u64())
        case 6: _ = platform.ioapic.read(offset: offset(&input), size: [1, 2, 4, 8][input.below(4)])
        case 7: platform.ioapic.write(offset: offset(&input), size: [1, 2, 4, 8][input.below(4)], value: input.u64())
        case 8: platform.apics[vcpu].writeTSCDeadline(input.scaled(), timeStampCounter: clock.nanoseconds)
        case 9:
            clock.advance(by: input.scaled())
            for index in 0..<2 {
                platform.advanceTimers(for: index)
                if let next = platform.nextTimerEvent(for: index) {
                    require(next > clock.nanoseconds || clock.nanoseconds == FuzzClock.endOfTime,
                            "vCPU \(index)'s next timer event \(next) is not after now \(clock.nanoseconds)")
                }
            }
        case 10:
            let pending = platform.hasPendingInterrupt(for: vcpu)
            let vector = platform.acknowledgeInterrupt(for: vcpu)
            require(pending == (vector != nil), "vCPU \(vcpu): pending \(pending) but INTA gave \(String(describing: vector))")
        case 12: _ = platform.hpet.read(offset: offset(&input) & 0x7ff, size: UInt8(input.below(9)))
        case 13: platform.hpet.write(offset: offset(&input) & 0x7ff, size: UInt8(input.below(9)), value: input.u64())
        default:
            let byte = input.byte()
            // Console input, and now and then the host pressing the power button (visor shutdown).
            if byte == 0xff { _ = platform.pressPowerButtonIfEnabled() } else { _ = platform.receive(byte) }
        }
        if let outcome = platform.takeRequestedOutcome() {
            switch outcome {
            // The 8042's reset line asks for a reboot.
            case .debugExit, .poweredOff, .rebooted, .stopped: break
            default: require(false, "a device asked for \(outcome)")
            }
        }
    }
    _ = signals
    return 0
}
