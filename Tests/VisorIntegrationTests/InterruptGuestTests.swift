// The interrupt, timer and SMP guests (ticker, sleeper, smp) on both engines and under QEMU,
// and the promise that a halted guest costs no host CPU.

import Foundation
import Testing

/// The engines here (see `Host.engines`).
private let engines = Host.engines

@Suite("Interrupts, timers and SMP", .serialized, .timeLimit(.minutes(5)))
struct InterruptGuestTests {
    @Test("ticker: periodic APIC timer interrupts arrive, never faster than programmed", arguments: engines)
    func ticker(engine: String) throws {
        let r = try runVisor(["run", "--engine", engine, "ticker", "--cmdline", "hz=100 ticks=50", "--timeout", "60s"])
        expectTickerTicked(r)
    }

    @Test("sleeper: hlt-based sleeps wake on time, never early", arguments: engines)
    func sleeper(engine: String) throws {
        let r = try runVisor(["run", "--engine", engine, "sleeper", "--cmdline", "ms=5 count=20", "--timeout", "60s"])
        expectSleeperWokeOnTime(r)
    }

    @Test("sleeper in one-shot mode as well as TSC-deadline mode", arguments: engines)
    func sleeperOneShot(engine: String) throws {
        let r = try runVisor(["run", "--engine", engine, "sleeper", "--cmdline", "ms=5 count=10 mode=oneshot",
                              "--timeout", "60s"])
        expectSleeperWokeOnTime(r)
        #expect(r.stdout.contains("sleeper: mode=oneshot"))
    }

    @Test("smp: four vCPUs come up through INIT/SIPI and answer IPIs", arguments: engines)
    func smp(engine: String) throws {
        let r = try runVisor(["run", "--engine", engine, "--vcpus", "4", "smp", "--cmdline", "cpus=4",
                              "--timeout", "60s"])
        #expect(r.status == 0, "stdout: \(r.stdout)\nstderr: \(r.stderr)")
        #expect(r.stdout.contains("PASS"))
        for cpu in 1...3 { #expect(r.stdout.contains("cpu \(cpu) "), "cpu \(cpu) did not report") }
    }

    @Test("smp passes alone when told to expect one CPU, and fails when a vCPU is missing", arguments: engines)
    func smpCounts(engine: String) throws {
        let alone = try runVisor(["run", "--engine", engine, "smp", "--cmdline", "cpus=1", "--timeout", "60s"])
        #expect(alone.status == 0, "stdout: \(alone.stdout)\nstderr: \(alone.stderr)")
        // Without cpus=, smp wants at least one application processor to answer.
        let none = try runVisor(["run", "--engine", engine, "smp", "--timeout", "60s"])
        #expect(none.status != 0 && none.stdout.contains("FAIL"), "stdout: \(none.stdout)")
        let missing = try runVisor(["run", "--engine", engine, "--vcpus", "2", "smp", "--cmdline", "cpus=3",
                                    "--timeout", "60s"])
        #expect(missing.status != 0, "smp expected 3 CPUs with 2 vCPUs and still passed: \(missing.stdout)")
        #expect(missing.stdout.contains("FAIL"))
    }

    @Test("a halted guest costs no host CPU: sleeper sleeping 1 s uses little CPU time", arguments: engines)
    func haltedGuestIsIdle(engine: String) throws {
        _ = try guestImage("sleeper")  // build first, so make's CPU time is not counted
        let r = try runMeasuringCPU(Host.visorPath, ["run", "--engine", engine, "sleeper", "--cmdline", "ms=100 count=10"])
        expectSleeperWokeOnTime(ProcessResult(status: r.status, stdout: r.stdout, stderr: "", timedOut: false))
        #expect(r.wallSeconds >= 1.0, "the guest slept less than it was asked to")
        // Busy-waiting would burn about 1 s of CPU; start-up, the guest's own work and the
        // wake-ups cost a small fraction of that.
        #expect(r.cpuSeconds < 0.35, "visor used \(r.cpuSeconds) s of CPU in \(r.wallSeconds) s while the guest slept")
    }

    @Test("--vcpus out of range is a clear error")
    func badVCPUCount() throws {
        for bad in ["0", "65", "-1", "many"] {
            let r = try runVisor(["run", "--vcpus", bad, "hello"])
            #expect(r.status != 0)
            #expect(r.stderr.contains("vcpus"), "stderr: \(r.stderr)")
        }
    }
}

@Suite("Interrupt guests under QEMU", .serialized, .enabled(if: Host.qemuPath != nil, Host.noQEMU))
struct InterruptGuestsUnderQEMUTests {
    func runQEMU(_ guest: String, commandLine: String, cpus: Int = 1) throws -> ProcessResult {
        try runProcess(Host.qemuPath!, [
            "-accel", "tcg", "-cpu", "max", "-smp", "\(cpus)", "-display", "none", "-nodefaults", "-no-reboot",
            "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
            "-kernel", try guestImage(guest), "-append", commandLine,
        ], timeout: 60)
    }

    @Test("ticker, sleeper and smp pass under QEMU with the same ELF")
    func sameELFUnderQEMU() throws {
        expectTickerTicked(try runQEMU("ticker", commandLine: "hz=100 ticks=50"))
        expectSleeperWokeOnTime(try runQEMU("sleeper", commandLine: "ms=5 count=20"))
        let smp = try runQEMU("smp", commandLine: "cpus=4", cpus: 4)
        #expect(smp.status == 0 && smp.stdout.contains("PASS"), "\(smp.stdout)\n\(smp.stderr)")
    }
}
