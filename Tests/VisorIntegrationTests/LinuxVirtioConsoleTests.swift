// Debian's Linux kernel with its console on virtio-console (`visor run linux --console virtio`):
// the kernel gets console=hvc0 after its console=ttyS0, /init loads virtio_console and moves its
// standard streams to /dev/hvc0, and the shell runs there. A release build only, as the other
// shell tests (about 40 s per boot on interp).

import Foundation
import Testing

@Suite("Linux's shell on virtio-console (issue 16)", .serialized,
       .enabled(if: LinuxGuest.interpRunsLinux, "the interp CPU lacks the FPU, FXSR, SSE or SSE2 that Linux requires"),
       .enabled(if: LinuxGuest.releaseBuild, "a debug build's software CPU takes over ten minutes to boot Linux: run swift test -c release --filter LinuxVirtioConsoleTests"))
struct LinuxVirtioConsoleTests {
    /// Bytes the shell writes in one command: more than the kernel writes to ttyS0 in its whole
    /// boot, so COM1's port count says whether they went through it.
    static let payloadBytes = 65536

    @Test("commands typed reach the shell on hvc0, their output comes back, and COM1 carries none of it",
          .enabled(if: LinuxGuest.bzImageFetched, LinuxGuest.notFetched))
    func shellOnHVC0() throws {
        let session = try ConsoleSession(["run", "linux", "--engine", "interp", "--console", "virtio", "--stats",
                                          "--timeout", "900s"])
        guard let marker = session.waitFor("visor-linux: /init is running", timeout: 900),
              var at = session.waitFor("/ # ", from: marker, timeout: 120) else {
            Issue.record("no shell: \(session.text.suffix(2000)) \(session.stderr)")
            _ = session.finish(timeout: 0)
            return
        }
        #expect(session.text.contains("Command line: console=ttyS0 console=hvc0"), "the kernel was told hvc0")
        /// Types `command`, waits for `answer` and the next prompt; the text in between.
        @discardableResult
        func run(_ command: String, expecting answer: String) -> String {
            session.type(command)
            guard let end = session.waitFor(answer, from: at, timeout: 120) else {
                Issue.record("'\(command)' did not answer '\(answer)': \(session.text[at...].suffix(1000))")
                return ""
            }
            let text = String(session.text[at..<end])
            at = session.waitFor("/ # ", from: end, timeout: 60) ?? end
            return text
        }
        run("echo $((6*7))", expecting: "\n42\n")
        run("readlink /proc/self/fd/0; readlink /proc/self/fd/1", expecting: "/dev/hvc0\n/dev/hvc0\n")
        // The guest's own count of ttyS0's traffic (tx/rx of the tty, not the kernel's console
        // writes) before and after the shell's output: the shell's bytes went elsewhere.
        let serialCounters = "echo serial-$(grep -o 'tx:[0-9]* rx:[0-9]*' /proc/tty/driver/serial | head -n1 | tr ' ' _)-$((5+5))"
        let before = run(serialCounters, expecting: "-10\n")
        run("head -c \(Self.payloadBytes) /dev/zero | tr '\\0' v | wc -c; echo payload-$((2*21))", expecting: "payload-42")
        run("head -c \(Self.payloadBytes) /dev/zero | tr '\\0' v; echo; echo payload-$((3*21))", expecting: "payload-63")
        #expect(session.text.contains(String(repeating: "v", count: Self.payloadBytes)), "the shell's output came back whole")
        let after = run(serialCounters, expecting: "-10\n")
        #expect(Self.counters(before) != nil && Self.counters(before) == Self.counters(after),
                "ttyS0's tty counters did not move: \(before) / \(after)")
        #expect(Self.counters(after)?.rx == 0, "no typed byte reached ttyS0: \(after)")
        session.type("poweroff -f")
        let status = session.finish(timeout: 300)
        #expect(status == 0, "visor ends with the guest's power-off: \(session.stderr)")

        // Visor's count of port accesses to COM1's data register: every byte through the UART
        // is one. The payload alone would be more than the whole run's count.
        let ports = session.stderr.split(separator: "\n").first { $0.hasPrefix("ports: ") } ?? ""
        let com1 = ports.split(separator: " ").first { $0.hasPrefix("0x3f8=") }.flatMap { UInt64($0.dropFirst(6)) } ?? 0
        #expect(com1 > 0, "the boot log went through COM1: \(ports)")
        #expect(com1 < UInt64(Self.payloadBytes), "COM1 carried less than the payload, so none of the shell's output: \(ports)")
    }

    /// ttyS0's tty counters as `serialCounters` prints them ("serial-tx:123_rx:0-10").
    struct Counters: Equatable { var tx: Int, rx: Int }

    static func counters(_ text: String) -> Counters? {
        guard let match = text.firstMatch(of: /serial-tx:(\d+)_rx:(\d+)-10/),
              let tx = Int(match.1), let rx = Int(match.2) else { return nil }
        return Counters(tx: tx, rx: rx)
    }
}
