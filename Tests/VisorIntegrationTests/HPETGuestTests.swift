// The hpet guest (issue 15 item 9): the HPET as an OS finds and uses it (the ACPI HPET table,
// GCAP_ID, the main counter, a one-shot comparator through the I/O APIC, a periodic timer 0,
// legacy replacement on IRQ0 cutting the PIT off), on every engine here and under QEMU's `pc`
// machine, whose HPET is the reference. Every check must PASS everywhere: none is a known
// departure of an engine or of QEMU.

import Foundation
import Testing

@Suite("The HPET guest")
struct HPETGuestTests {
    /// The guest's verdict lines, and that there are enough of them.
    func expectAllPassed(_ stdout: String, _ place: String) {
        #expect(stdout.contains("hpet: all checks passed"), "\(place): \(stdout)")
        #expect(!stdout.contains("FAIL") && !stdout.contains("SKIP"), "\(place): \(stdout)")
        #expect(stdout.split(separator: "\n").filter { $0.hasPrefix("PASS") }.count == 19, "\(place): \(stdout)")
    }

    @Test("every HPET check passes on Visor", arguments: Host.engines)
    func onVisor(engine: String) throws {
        let r = try runVisor(["run", "hpet", "--engine", engine], timeout: 120)
        #expect(r.status == 0, "stderr: \(r.stderr)")
        expectAllPassed(r.stdout, engine)
    }

    @Test("every HPET check passes under QEMU's pc machine", .enabled(if: Host.qemuPath != nil, Host.noQEMU))
    func underQEMU() throws {
        // As QEMUSideBySideTests runs QEMU: its default machine (`pc`, which has an HPET),
        // multiboot through -kernel, the debug-exit device at Visor's port.
        let image = try guestImage("hpet")
        let qemu = try runProcess(Host.qemuPath!, [
            "-accel", "tcg", "-display", "none", "-nodefaults", "-no-reboot", "-serial", "stdio",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-kernel", image,
        ], timeout: 60)
        #expect(!qemu.timedOut)
        #expect(qemu.status == 0, "QEMU stderr: \(qemu.stderr)")
        expectAllPassed(qemu.stdout, "QEMU")
    }
}
