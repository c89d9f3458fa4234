// The `tasks` guest (hardware task switching in 32-bit protected mode, issue 15 item 6) on
// interp, on kvm and under QEMU's TCG: every check PASSes, with no SKIP, wherever it can run.

import Foundation
import Testing
import VisorKVM

/// The lines of a guest's output that start with `prefix`.
private func lines(_ output: String, _ prefix: String) -> [Substring] {
    output.split(separator: "\n").filter { $0.hasPrefix(prefix) }
}

/// Every check of `tasks` passed (18 of them, none failed or skipped) and it exited 0.
private func expectAllPassed(_ status: Int32, _ stdout: String, _ stderr: String) {
    #expect(status == 0, "stdout: \(stdout) stderr: \(stderr)")
    #expect(stdout.contains("tasks: all checks passed"))
    #expect(lines(stdout, "FAIL").isEmpty && lines(stdout, "SKIP").isEmpty, "\(stdout)")
    #expect(lines(stdout, "PASS").count == 18, "\(stdout)")
}

@Suite("tasks guest: hardware task switches", .serialized, .timeLimit(.minutes(3)))
struct TaskSwitchGuestTests {
    @Test("tasks passes every check on interp")
    func onInterp() throws {
        let r = try runVisor(["run", "--engine", "interp", "tasks"])
        expectAllPassed(r.status, r.stdout, r.stderr)
    }

    /// On this host's KVM (PVM backend) guest CPL0 code is emulated by the host kernel, which
    /// leaves long mode and runs 32-bit protected mode and LTR, but cannot emulate a far JMP to a
    /// TSS (seen: "KVM internal error 1: the instruction could not be emulated" with RIP at the
    /// `ljmp $0x30, $0`, CR0 = 0x13, EFER = 0x800). The guest then ends as crashed before any
    /// check is judged. Where Visor carries out what the host kernel cannot (issue 15 item 1's
    /// fallback, once it admits far JMP/CALL and IRET: then all 18 checks were seen to pass here,
    /// 12 instructions emulated by Visor), or on hardware-assisted KVM, every check must pass.
    @Test("tasks on kvm passes every check: the task switches the host cannot emulate are carried out by Visor's CPU",
          .enabled(if: Host.kvmAvailable, Host.noKVM))
    func onKVM() throws {
        let r = try runVisor(["run", "--engine", "kvm", "tasks", "--stats"])
        #expect(!r.timedOut)
        expectAllPassed(r.status, r.stdout, r.stderr)
        // This host's KVM gives up on the far JMP to a TSS ("the instruction could not be
        // emulated"); where it does, --stats names the far transfers Visor carried out.
        if KVMSystem.isPVMBackend {
            let line = r.stderr.split(separator: "\n").first { $0.hasPrefix("emulated by Visor:") } ?? ""
            #expect(line.contains("jmpFar"), "stderr: \(r.stderr)")
        }
    }

    @Test("tasks passes every check under QEMU's TCG", .enabled(if: Host.qemuPath != nil, Host.noQEMU))
    func underQEMU() throws {
        let r = try runProcess(Host.qemuPath!, [
            "-accel", "tcg", "-display", "none", "-nodefaults", "-no-reboot", "-serial", "stdio",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-kernel", try guestImage("tasks"),
        ], timeout: 60)
        #expect(!r.timedOut)
        expectAllPassed(r.status, r.stdout, r.stderr)
    }
}
