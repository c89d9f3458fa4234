// The PV ABI end to end: pvtest calls every hypercall from a guest, minios boots PV or native
// and runs its shell, and a tmux-driven test types into minios's console.

import Foundation
import Testing

private let engines: [String] = Host.kvmAvailable ? ["kvm", "interp"] : ["interp"]

@Suite("Paravirtual guests", .serialized, .timeLimit(.minutes(5)))
struct ParavirtGuestTests {
    @Test("pvtest: every hypercall and error path checks out from a guest", arguments: engines)
    func pvtest(engine: String) throws {
        let r = try runVisor(["run", "--engine", engine, "pvtest", "--timeout", "60s"])
        #expect(r.status == 0, "stdout: \(r.stdout)\nstderr: \(r.stderr)")
        #expect(r.stdout.contains("pvtest: all checks passed"))
        #expect(!r.stdout.contains("FAIL"))
    }

    @Test("pvtest on two vCPUs: vcpu_op initialise/up and per-vCPU timers", arguments: engines)
    func pvtestSMP(engine: String) throws {
        let r = try runVisor(["run", "--engine", engine, "--vcpus", "2", "pvtest", "--cmdline", "cpus=2", "--timeout", "60s"])
        #expect(r.status == 0, "stdout: \(r.stdout)\nstderr: \(r.stderr)")
        #expect(r.stdout.contains("pvtest: all checks passed"))
    }

    /// Issue #10 item 3: its timer checks failed about 1 run in 15 on a busy host (the cancel
    /// check, the pvclock-against-TSC check, the periodic count, poll's timeout), each because the
    /// guest assumed the host would not keep its vCPU off the CPU for a few milliseconds. They
    /// now check only what the guest can observe; ten runs in a row, both vCPU counts.
    @Test("pvtest passes run after run on one and two vCPUs (timer checks that survive a busy host)",
          arguments: engines)
    func pvtestRepeated(engine: String) throws {
        for run in 1...10 {
            let vcpus = run % 2 + 1
            let r = try runVisor(["run", "--engine", engine, "--vcpus", "\(vcpus)", "pvtest", "--cmdline", "cpus=\(vcpus)",
                                  "--timeout", "60s"])
            #expect(r.status == 0 && r.stdout.contains("pvtest: all checks passed"),
                    "run \(run), \(vcpus) vCPUs:\n\(r.stdout)\n\(r.stderr)")
            let skipped = r.stdout.split(separator: "\n").filter { $0.hasPrefix("SKIP") }
            if !skipped.isEmpty { print("pvtest run \(run) on \(engine): \(skipped.joined(separator: "; "))") }
        }
    }

    @Test("minios comes up PV on Visor and native with pv=off; the shell runs either way", arguments: engines)
    func miniosBothModes(engine: String) throws {
        let pv = try runVisor(["run", "--engine", engine, "minios", "--stats", "--timeout", "60s",
                               "--cmdline", "script=help;ps;sleep 20;halt"])
        #expect(pv.status == 0, "stdout: \(pv.stdout)\nstderr: \(pv.stderr)")
        #expect(pv.stdout.contains("minios: booting (pv)"))
        #expect(pv.stdout.contains("help: commands:"))
        #expect(pv.stderr.contains("hypercalls:"), "--stats shows hypercalls: \(pv.stderr)")
        let native = try runVisor(["run", "--engine", engine, "minios", "--timeout", "60s",
                                   "--cmdline", "pv=off script=help;ps;halt"])
        #expect(native.status == 0, "stdout: \(native.stdout)\nstderr: \(native.stderr)")
        #expect(native.stdout.contains("minios: booting (native)"))
        #expect(native.stdout.contains("help: commands:"))
    }

    @Test("minios boots native under QEMU with the same ELF",
          .enabled(if: Host.qemuPath != nil, "needs qemu-system-x86_64"))
    func miniosUnderQEMU() throws {
        let r = try runProcess(Host.qemuPath!, [
            "-accel", "tcg", "-cpu", "max", "-display", "none", "-nodefaults", "-no-reboot", "-serial", "stdio",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-kernel", try guestImage("minios"),
            "-append", "script=help;ps;halt",
        ], timeout: 60)
        #expect(r.status == 0, "stdout: \(r.stdout)\nstderr: \(r.stderr)")
        #expect(r.stdout.contains("minios: booting (native)"))
        #expect(r.stdout.contains("help: commands:"))
    }

    @Test("typing into minios's shell in a terminal (tmux): help, ps, halt", arguments: engines)
    func interactiveShell(engine: String) throws {
        guard let tmux = ["/usr/bin/tmux", "/usr/local/bin/tmux"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            FileHandle.standardError.write(Data("*** SKIPPING the tmux shell test: tmux is not installed (apt-get install tmux).\n".utf8))
            return
        }
        let session = "visor-test-\(getpid())-\(engine)"
        let status = FileManager.default.temporaryDirectory.appendingPathComponent("\(session).status").path
        defer {
            _ = try? runUnmasked(tmux, ["kill-session", "-t", session])
            unlink(status)
        }
        let command = "'\(Host.visorPath)' run minios --engine \(engine) --timeout 60s; echo $? > '\(status)'; sleep 30"
        _ = try runUnmasked(tmux, ["new-session", "-d", "-s", session, "-x", "160", "-y", "50", command])
        func screen() -> String {
            guard let r = try? runUnmasked(tmux, ["capture-pane", "-p", "-t", session, "-S", "-200"]) else { return "(capture-pane did not run)" }
            return r.stdout.isEmpty ? "(capture-pane: status \(r.status))" : r.stdout
        }
        func waitFor(_ text: String, seconds: Double = 20) -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                if screen().contains(text) { return true }
                usleep(100_000)
            }
            return false
        }
        #expect(waitFor("minios: shell ready"), "screen:\n\(screen())")
        _ = try runUnmasked(tmux, ["send-keys", "-t", session, "help", "Enter"])
        #expect(waitFor("help: commands:"), "screen:\n\(screen())")
        _ = try runUnmasked(tmux, ["send-keys", "-t", session, "ps", "Enter"])
        #expect(waitFor("name=shell"), "screen:\n\(screen())")
        _ = try runUnmasked(tmux, ["send-keys", "-t", session, "halt", "Enter"])
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, !FileManager.default.fileExists(atPath: status) { usleep(100_000) }
        let code = (try? String(contentsOfFile: status, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(code == "0", "visor's status after halt: \(code ?? "none"); screen:\n\(screen())")
    }
}
