// The nmi guest (issue 15 item 5): NMIs sent through one CPU's local APIC to another, which is
// halted with IF clear, and an INIT that resets it, on every engine and under QEMU with the same ELF. (One CPU's own NMIs,
// their blocking until IRET and the collapsing of a pending one are systest's checks, run by
// InterpBootTests, KVMBootTests and QEMUSideBySideTests.)

import Testing

@Suite("NMIs between CPUs", .serialized, .timeLimit(.minutes(2)))
struct NMIGuestTests {
    func expectPassed(_ r: ProcessResult) {
        #expect(r.status == 0, "stdout: \(r.stdout)\nstderr: \(r.stderr)")
        #expect(r.stdout.contains("nmi: PASS"))
        #expect(!r.stdout.contains("FAIL"))
        #expect(r.stdout.split(separator: "\n").filter { $0.hasPrefix("PASS") }.count == 4)
    }

    @Test("nmi: an NMI IPI wakes a CPU halted with IF clear, twice; all-excluding-self spares the sender; INIT then SIPI restarts it",
          arguments: Host.engines)
    func nmiBetweenCPUs(engine: String) throws {
        expectPassed(try runVisor(["run", "--engine", engine, "--vcpus", "2", "nmi", "--timeout", "60s"]))
    }

    @Test("nmi fails, saying so, with a single CPU")
    func needsTwoCPUs() throws {
        let r = try runVisor(["run", "--engine", "interp", "nmi", "--timeout", "60s"])
        #expect(r.status != 0)
        #expect(r.stdout.contains("nmi: FAIL (needs two CPUs"), "stdout: \(r.stdout)")
    }

    @Test("nmi passes under QEMU with the same ELF", .enabled(if: Host.qemuPath != nil, Host.noQEMU))
    func underQEMU() throws {
        let r = try runProcess(Host.qemuPath!, [
            "-accel", "tcg", "-cpu", "max", "-smp", "2", "-display", "none", "-nodefaults", "-no-reboot",
            "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-kernel", try guestImage("nmi"),
        ], timeout: 60)
        #expect(!r.timedOut)
        expectPassed(r)
    }
}
