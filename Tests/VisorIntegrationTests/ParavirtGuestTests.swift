// The PV ABI end to end: pvtest calls every hypercall from a guest, minios boots PV or native
// and runs its shell, and a tmux-driven test types into minios's console.

import Foundation
import Testing

/// The engines here (see `Host.engines`).
private let engines = Host.engines

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
          .enabled(if: Host.qemuPath != nil, Host.noQEMU))
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

    @Test("typing into minios's shell in a terminal (tmux): help, ps, long lines, halt",
          .enabled(if: Host.tmuxPath != nil, Host.noTmux), arguments: engines, ["pv=on", "pv=off"])
    func interactiveShell(engine: String, mode: String) throws {
        let tmux = try #require(Host.tmuxPath)
        let session = "visor-test-\(getpid())-\(engine)-\(mode)"
        let status = FileManager.default.temporaryDirectory.appendingPathComponent("\(session).status").path
        let socket = FileManager.default.temporaryDirectory.appendingPathComponent("\(session).tmux").path
        defer {
            _ = try? runUnmasked(tmux, ["-S", socket, "kill-server"])
            unlink(status)
            unlink(socket)
        }
        let command = "'\(Host.visorPath)' run minios --engine \(engine) --cmdline \(mode) --timeout 60s; echo $? > '\(status)'; sleep 30"
        // A tmux server of its own (-S): a shared one that exits as another test kills its last
        // session can take this test's new session down with it.
        let started = try runUnmasked(tmux, ["-S", socket, "new-session", "-d", "-s", session, "-x", "160", "-y", "50", command])
        #expect(started.status == 0, "tmux new-session: status \(started.status)")
        func screen() -> String {
            guard let r = try? runUnmasked(tmux, ["-S", socket, "capture-pane", "-p", "-t", session, "-S", "-200"]) else { return "(capture-pane did not run)" }
            return r.stdout.isEmpty ? "(capture-pane: status \(r.status))" : r.stdout
        }
        /// Waits until the screen shows `text` at least `times` times.
        func waitFor(_ text: String, times: Int = 1, seconds: Double = 20) -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                if screen().components(separatedBy: text).count > times { return true }
                usleep(100_000)
            }
            return false
        }
        #expect(waitFor("minios: shell ready"), "screen:\n\(screen())")
        #expect(screen().contains(mode == "pv=off" ? "minios: booting (native)" : "minios: booting (pv)"))
        _ = try runUnmasked(tmux, ["-S", socket, "send-keys", "-t", session, "help", "Enter"])
        #expect(waitFor("help: commands:"), "screen:\n\(screen())")
        _ = try runUnmasked(tmux, ["-S", socket, "send-keys", "-t", session, "ps", "Enter"])
        #expect(waitFor("name=shell"), "screen:\n\(screen())")
        // Long lines, each sent at once: far more than COM1's 16-byte FIFO and than one 16-byte
        // read of the shell, so the console's queueing is exercised, not just its first bytes.
        // The shell answers an unknown word with the word, which shows every byte arrived once.
        for word in ["the-quick-brown-fox-jumps-over-the-lazy-dog-0123456789",
                     "abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOPQRSTUVWXYZ",
                     "pack-my-box-with-five-dozen-liquor-jugs-9876543210-zyxw"] {
            _ = try runUnmasked(tmux, ["-S", socket, "send-keys", "-t", session, "-l", word])
            _ = try runUnmasked(tmux, ["-S", socket, "send-keys", "-t", session, "Enter"])
            #expect(waitFor("unknown command: \(word) (try help)"), "screen:\n\(screen())")
        }
        _ = try runUnmasked(tmux, ["-S", socket, "send-keys", "-t", session, "help", "Enter"])
        #expect(waitFor("help: commands:", times: 2), "the shell still answers; screen:\n\(screen())")
        _ = try runUnmasked(tmux, ["-S", socket, "send-keys", "-t", session, "halt", "Enter"])
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, !FileManager.default.fileExists(atPath: status) { usleep(100_000) }
        let code = (try? String(contentsOfFile: status, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(code == "0", "visor's status after halt: \(code ?? "none"); screen:\n\(screen())")
    }
}
