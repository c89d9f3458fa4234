// The host asks a running guest to power off or reboot (`Domain.requestShutdown`, what the
// toolstack's shutdown and reboot use): through PV when the guest bound VIRQ_SHUTDOWN_REQUEST,
// through the ACPI power button when it enabled PWRBTN_EN, not at all otherwise. `minios` listens
// both ways (PV by default, the power button with `pv=off`); `parked` listens to neither.
//
// The guests are waited for by console markers, with generous limits for a loaded 2-core host;
// nothing here measures time.

import Foundation
import Testing
import VisorABI
import VisorCore
@testable import Visor
@testable import VisorBench

/// How long a guest may take to boot to its marker, or to end after a request, on a busy host.
private let hangGuard: Double = 180

@Suite("Shutdown requests: which way a request goes")
struct ShutdownDeliveryTests {
    private func powerButtonStatus(_ domain: Domain) -> Bool {
        domain.platform.lock.withLock { domain.platform.pm1aEvent.status & PlatformPorts.acpiPowerButton != 0 }
    }

    @Test("a guest that listens for nothing is asked nothing")
    func nothingListens() throws {
        let domain = try idleHelloDomain()
        #expect(domain.requestShutdown(.powerOff) == .none)
        #expect(domain.requestShutdown(.reboot) == .none)
        #expect(!powerButtonStatus(domain))
        #expect(domain.platform.lock.withLock { domain.pv.pendingShutdownRequest } == nil)
    }

    @Test("with PWRBTN_EN set, a power-off presses the button; a reboot cannot go through ACPI")
    func powerButton() throws {
        let domain = try idleHelloDomain()
        domain.platform.lock.withLock {
            domain.platform.bus.write(port: PlatformPorts.acpiPM1aEvent + 2, size: 2, value: UInt32(PlatformPorts.acpiPowerButton))
        }
        let sciSeen = { domain.platform.lock.withLock { domain.platform.pic.irr & 1 << 9 != 0 } }
        #expect(domain.requestShutdown(.reboot) == .none)
        #expect(!powerButtonStatus(domain) && !sciSeen())
        #expect(domain.requestShutdown(.powerOff) == .acpiPowerButton)
        #expect(powerButtonStatus(domain))
        #expect(sciSeen(), "the SCI did not rise on ISA IRQ 9")
    }

    @Test("a guest that bound VIRQ_SHUTDOWN_REQUEST is asked through PV, before the power button")
    func paravirtualFirst() throws {
        let domain = try idleHelloDomain()
        let port = try domain.platform.lock.withLock { () throws -> UInt32 in
            domain.platform.bus.write(port: PlatformPorts.acpiPM1aEvent + 2, size: 2, value: UInt32(PlatformPorts.acpiPowerButton))
            #expect(domain.pv.writeMSR(PVDiscovery.sharedInfoMSR, value: 0x20_0000 | 0xf0) == .accepted)
            let port = try #require(domain.pv.freePort())
            domain.pv.bind(port, .virq(VIRQ.shutdownRequest, vcpu: 0))  // as bind_virq does
            return port
        }
        #expect(domain.requestShutdown(.reboot) == .paravirtual)
        #expect(domain.platform.lock.withLock { domain.pv.pendingShutdownRequest } == .reboot)
        #expect(domain.requestShutdown(.powerOff) == .paravirtual)
        #expect(domain.platform.lock.withLock { domain.pv.pendingShutdownRequest } == .poweroff)
        #expect(!powerButtonStatus(domain))
        // Closed again: the power button is next.
        domain.platform.lock.withLock { domain.pv.close(port) }
        #expect(domain.requestShutdown(.powerOff) == .acpiPowerButton)
    }

    @Test("a domain that has ended is asked nothing")
    func ended() throws {
        let domain = try idleHelloDomain()
        domain.platform.lock.withLock {
            domain.platform.bus.write(port: PlatformPorts.acpiPM1aEvent + 2, size: 2, value: UInt32(PlatformPorts.acpiPowerButton))
        }
        domain.requestStop(reason: "the test")
        #expect(domain.requestShutdown(.powerOff) == .none)
        #expect(!powerButtonStatus(domain))
    }
}

@Suite("Shutdown requests: guests honour them", .serialized, .timeLimit(.minutes(30)))
struct ShutdownRequestGuestTests {
    // MARK: minios, both ways

    @Test("minios (PV) powers off on request (interp)")
    func pvPowerOffInterp() throws { try powerOff(engine: "interp", pv: true) }
    @Test("minios (PV) powers off on request (kvm)", .enabled(if: Host.kvmAvailable, Host.noKVM))
    func pvPowerOffKVM() throws { try powerOff(engine: "kvm", pv: true) }
    @Test("minios (pv=off) powers off on the ACPI power button (interp)")
    func nativePowerOffInterp() throws { try powerOff(engine: "interp", pv: false) }
    @Test("minios (pv=off) powers off on the ACPI power button (kvm)", .enabled(if: Host.kvmAvailable, Host.noKVM))
    func nativePowerOffKVM() throws { try powerOff(engine: "kvm", pv: false) }

    @Test("minios (PV) reboots on request (interp)")
    func pvRebootInterp() throws { try pvReboot(engine: "interp") }
    @Test("minios (PV) reboots on request (kvm)", .enabled(if: Host.kvmAvailable, Host.noKVM))
    func pvRebootKVM() throws { try pvReboot(engine: "kvm") }

    @Test("minios (pv=off) cannot be asked to reboot and keeps running (interp)")
    func nativeRebootInterp() throws { try nativeRebootRefused(engine: "interp") }
    @Test("minios (pv=off) cannot be asked to reboot and keeps running (kvm)", .enabled(if: Host.kvmAvailable, Host.noKVM))
    func nativeRebootKVM() throws { try nativeRebootRefused(engine: "kvm") }

    // MARK: cpuhog, spinning at CPL3 with interrupts on

    @Test("cpuhog ends as asked while it spins (interp)", arguments: CPUHogCase.all)
    func cpuhogInterp(_ c: CPUHogCase) throws { try cpuhog(engine: "interp", c) }
    @Test("cpuhog ends as asked while it spins (kvm)", .enabled(if: Host.kvmAvailable, Host.noKVM), arguments: CPUHogCase.all)
    func cpuhogKVM(_ c: CPUHogCase) throws { try cpuhog(engine: "kvm", c) }

    // MARK: a guest that listens to neither

    @Test("a guest that listens to neither is asked nothing and keeps running (interp)",
          arguments: ["bsp=halt", "bsp=block"])
    func deafInterp(commandLine: String) throws { try deaf(engine: "interp", commandLine: commandLine) }
    @Test("a guest that listens to neither is asked nothing and keeps running (kvm)",
          .enabled(if: Host.kvmAvailable, Host.noKVM), arguments: ["bsp=halt", "bsp=block"])
    func deafKVM(commandLine: String) throws { try deaf(engine: "kvm", commandLine: commandLine) }

    // MARK: Steps

    func powerOff(engine: String, pv: Bool) throws {
        let guest = try BootedGuest(engine: engine, guest: "minios", commandLine: pv ? "" : "pv=off",
                                    marker: "minios: shell ready")
        #expect(guest.console.contains(pv ? "minios: shutdown requests: pv" : "minios: shutdown requests: acpi"))
        // A request that did not go out would leave the guest running until the hang guard: stop here.
        try #require(guest.domain.requestShutdown(.powerOff) == (pv ? .paravirtual : .acpiPowerButton), "\(guest.console.text)")
        let outcome = try guest.outcome()
        #expect(outcome == .poweredOff, "\(guest.console.text)")
        #expect(guest.console.contains(pv ? "shutdown requested: poweroff\n" : "shutdown requested: poweroff (ACPI power button)"),
                "\(guest.console.text)")
    }

    func pvReboot(engine: String) throws {
        let guest = try BootedGuest(engine: engine, guest: "minios", commandLine: "", marker: "minios: shell ready")
        try #require(guest.domain.requestShutdown(.reboot) == .paravirtual, "\(guest.console.text)")
        let outcome = try guest.outcome()
        #expect(outcome == .rebooted(how: "sched_op shutdown"), "\(guest.console.text)")
        #expect(guest.console.contains("shutdown requested: reboot\n"), "\(guest.console.text)")
    }

    /// A reboot request is refused; the shell still answers a command typed afterwards, and a
    /// power-off request still works.
    func nativeRebootRefused(engine: String) throws {
        let guest = try BootedGuest(engine: engine, guest: "minios", commandLine: "pv=off", marker: "minios: shell ready")
        #expect(guest.domain.requestShutdown(.reboot) == .none)
        try guest.type("help\n", until: "help: commands:")
        #expect(!guest.domain.hasEnded, "\(guest.console.text)")
        #expect(!guest.console.contains("shutdown requested"), "\(guest.console.text)")
        try #require(guest.domain.requestShutdown(.powerOff) == .acpiPowerButton, "\(guest.console.text)")
        #expect(try guest.outcome() == .poweredOff, "\(guest.console.text)")
    }

    func cpuhog(engine: String, _ c: CPUHogCase) throws {
        let guest = try BootedGuest(engine: engine, guest: "cpuhog", commandLine: c.commandLine + " ms=3600000",
                                    marker: "cpuhog: ms=3600000")
        try #require(guest.domain.requestShutdown(c.request) == c.delivery, "\(guest.console.text)")
        #expect(try guest.outcome() == c.outcome, "\(guest.console.text)")
        #expect(guest.console.contains(c.line), "\(guest.console.text)")
        #expect(!guest.console.contains("cpuhog: PASS"), "it ran to its end instead: \(guest.console.text)")
    }

    /// `parked` with its vCPU halted (native, no PWRBTN_EN) or PV-blocked (VIRQ_SHUTDOWN_REQUEST
    /// not bound): neither request reaches it, and it is still there to be stopped.
    func deaf(engine: String, commandLine: String) throws {
        let guest = try BootedGuest(engine: engine, guest: "parked", commandLine: commandLine, marker: "parked: cpu 0 parks")
        #expect(guest.domain.requestShutdown(.powerOff) == .none)
        #expect(guest.domain.requestShutdown(.reboot) == .none)
        #expect(!guest.domain.hasEnded, "\(guest.console.text)")
        guest.domain.requestStop(reason: "stopped by the test")
        #expect(try guest.outcome() == .stopped(reason: "stopped by the test"), "\(guest.console.text)")
    }
}

/// The guests' native path against another machine's power button: QEMU's `system_powerdown`
/// (its monitor command for the ACPI power button) ends them the way Visor's does.
@Suite("Shutdown requests: QEMU's power button", .serialized, .enabled(if: Host.qemuPath != nil, Host.noQEMU))
struct ShutdownRequestQEMUTests {
    @Test("QEMU's system_powerdown powers off minios and cpuhog through the ACPI power button",
          arguments: [("minios", "", "minios: shell ready"), ("cpuhog", "ms=3600000", "cpuhog: ms=3600000")])
    func powerdown(guest: String, commandLine: String, marker: String) throws {
        let serial = FileManager.default.temporaryDirectory.appendingPathComponent("visor-qemu-\(getpid())-\(guest).out").path
        defer { unlink(serial) }
        let qemu = Process()
        qemu.executableURL = URL(fileURLWithPath: try #require(Host.qemuPath))
        qemu.arguments = ["-accel", "tcg", "-display", "none", "-nodefaults", "-no-reboot", "-serial", "file:\(serial)",
                          "-monitor", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
                          "-kernel", try guestImage(guest)] + (commandLine.isEmpty ? [] : ["-append", commandLine])
        let monitor = Pipe()
        qemu.standardInput = monitor
        qemu.standardOutput = FileHandle.nullDevice
        qemu.standardError = FileHandle.nullDevice
        try qemu.run()
        defer {
            if qemu.isRunning { qemu.terminate(); kill(qemu.processIdentifier, SIGKILL) }
            qemu.waitUntilExit()
        }
        let console = { (try? String(contentsOfFile: serial, encoding: .utf8)) ?? "" }
        try #require(waitUntil(seconds: hangGuard) { console().contains(marker) || !qemu.isRunning },
                     "\(guest) never printed \"\(marker)\" under QEMU:\n\(console())")
        try #require(qemu.isRunning, "QEMU ended before the request:\n\(console())")
        monitor.fileHandleForWriting.write(Data("system_powerdown\n".utf8))
        try #require(waitUntil(seconds: hangGuard) { !qemu.isRunning }, "still running after system_powerdown:\n\(console())")
        qemu.waitUntilExit()
        #expect(qemu.terminationStatus == 0, "\(console())")
        #expect(console().contains("shutdown requested: poweroff (ACPI power button)"), "\(console())")
    }
}

/// A domain booted from a built-in guest and run on its own thread until its console shows
/// `marker`. On the way out of a failing test it is stopped, so no run outlives its test.
private final class BootedGuest {
    let domain: Domain
    let console: ConsoleBuffer
    private let run: DomainRun

    init(engine: String, guest: String, commandLine: String, marker: String) throws {
        let engine = try #require(EngineRegistry.engine(named: engine))
        let image = try GuestCatalog.standard().image(named: guest)
        let console = ConsoleBuffer()
        self.console = console
        domain = try Domain(configuration: BenchmarkGuest.configuration(image: image, commandLine: commandLine,
                                                                        engine: engine, memoryBytes: 32 << 20)) {
            console.append($0)
        }
        run = DomainRun(domain, pcpus: 1)
        let booted = waitUntil(seconds: hangGuard) { console.contains(marker) || domain.hasEnded }
        guard booted, !domain.hasEnded else {
            domain.requestStop(reason: "the test gave up waiting")
            _ = run.wait(seconds: hangGuard)
            throw BootFailure(description: "\(guest) never printed \"\(marker)\" (ended: \(domain.hasEnded)):\n\(console.text)")
        }
    }

    deinit {
        domain.requestStop(reason: "the test ended")
        _ = run.wait(seconds: hangGuard)
    }

    /// Types `text` into the guest's console and waits for `answer` on it.
    func type(_ text: String, until answer: String) throws {
        for byte in text.utf8 {
            try #require(waitUntil(seconds: hangGuard) { domain.sendConsoleInput(byte) }, "the console took no input")
        }
        try #require(waitUntil(seconds: hangGuard) { console.contains(answer) }, "no \"\(answer)\":\n\(console.text)")
    }

    /// How the run ended, once it has (the hang guard turns "never" into a failure).
    func outcome() throws -> DomainOutcome {
        try #require(run.wait(seconds: hangGuard), "the domain still runs \(hangGuard) s after the request:\n\(console.text)")
    }

    struct BootFailure: Error, CustomStringConvertible {
        var description: String
    }
}

/// A request to cpuhog, how it goes and how the guest ends.
struct CPUHogCase: Sendable, CustomTestStringConvertible {
    var commandLine: String
    var request: ShutdownRequest
    var delivery: ShutdownDelivery
    var outcome: DomainOutcome
    var line: String
    var testDescription: String { "\(commandLine.isEmpty ? "pv" : commandLine) \(request)" }

    static let all = [
        CPUHogCase(commandLine: "", request: .powerOff, delivery: .paravirtual, outcome: .poweredOff,
                   line: "shutdown requested: poweroff\n"),
        CPUHogCase(commandLine: "", request: .reboot, delivery: .paravirtual, outcome: .rebooted(how: "sched_op shutdown"),
                   line: "shutdown requested: reboot\n"),
        CPUHogCase(commandLine: "pv=off", request: .powerOff, delivery: .acpiPowerButton, outcome: .poweredOff,
                   line: "shutdown requested: poweroff (ACPI power button)"),
    ]
}
