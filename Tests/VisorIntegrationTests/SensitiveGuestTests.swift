// The sensitive guest (issue 13 item 3): Robin and Irvine's sensitive-but-unprivileged
// instructions at CPL0 and CPL3, and `--stats` counting each of them at both levels on the
// software engines, which execute them themselves. On kvm the hardware runs them without an
// exit: `--stats` says they are not counted.

import Foundation
import Testing
import VisorCore

@Suite("The sensitive guest")
struct SensitiveGuestTests {
    /// The engines that see every instruction the guest executes (add "bt" when it is ready).
    static let softwareEngines = ["interp", "bt"]

    /// The counts `--stats` printed for `name`, by CPL: "  NAME  cpl0 N  cpl3 M [cpl1 K ...]".
    func counts(of name: String, in stderr: String) -> [Int: UInt64]? {
        let prefix = "  " + name + " "
        guard let line = stderr.split(separator: "\n").first(where: { $0.hasPrefix(prefix) }) else { return nil }
        let words = line.dropFirst(prefix.count).split(separator: " ")
        var result: [Int: UInt64] = [:]
        for (word, value) in zip(words, words.dropFirst()) where word.hasPrefix("cpl") {
            guard let level = Int(word.dropFirst(3)), let count = UInt64(value) else { return nil }
            result[level] = count
        }
        return result
    }

    @Test("the guest runs every instruction at CPL0 and CPL3, and --stats counts each at both",
          arguments: softwareEngines)
    func countsEveryInstructionAtBothLevels(engine: String) throws {
        let r = try runVisor(["run", "sensitive", "--engine", engine, "--stats"], timeout: 120)
        #expect(!r.timedOut)
        #expect(r.status == 0, "stderr: \(r.stderr)")
        let lines = r.stdout.split(separator: "\n").filter { $0.hasPrefix("sensitive: ") }
        #expect(lines.last == "sensitive: done", "\(r.stdout)")

        // What the guest saw at CPL3, executed by Visor's own CPU: no trap, and the CPU's own
        // privilege rules (POPF drops IF and IOPL; ring-0 selectors and gates refuse CPL3).
        let out = r.stdout
        #expect(out.contains("sensitive: popf cpl3 asked IF=1 IOPL=3, got IF=0 IOPL=0 (IF and IOPL unchanged: silently dropped, no trap)"), "\(out)")
        #expect(out.contains("sensitive: popf cpl0 asked IF=1 IOPL=3, got IF=1 IOPL=3 (taken)"), "\(out)")
        #expect(out.contains("sensitive: mov from sreg cpl3 cs=0x0023"), "\(out)")
        #expect(out.contains("sensitive: mov to sreg cpl3 ds=0x0010 (DPL 0): #GP(0x0010)"), "\(out)")
        #expect(out.contains("to 0x0008: #GP(0x0008)"), "\(out)")
        #expect(out.contains("int 0x82 (gate DPL 0): #GP(0x0412)"), "\(out)")
        #expect(out.contains("sensitive: into cpl3 OF=1: #OF delivered from cs=0x0043; OF=0: nothing"), "\(out)")
        #expect(!out.contains("FAILED"), "\(out)")
        // SGDT at CPL3 shows the guest's own GDT, the same as at CPL0.
        func gdt(_ cpl: Int) -> Substring? {
            lines.first { $0.hasPrefix("sensitive: sgdt cpl\(cpl) ") }?.split(separator: " ").first { $0.hasPrefix("base=") }
        }
        #expect(gdt(0) != nil && gdt(0) == gdt(3), "\(out)")

        let stats = r.stderr
        #expect(stats.contains("sensitive instructions (unprivileged but sensitive, Robin & Irvine 2000):"), "\(stats)")
        for kind in SensitiveInstruction.allCases {
            let levels = counts(of: kind.name, in: stats)
            #expect((levels?[0] ?? 0) > 0 && (levels?[3] ?? 0) > 0, "\(kind.name): \(stats)")
        }
    }

    @Test("the guest sees the same under QEMU's TCG as on the software engines (but TCG's IDT error code)",
          .enabled(if: Host.qemuPath != nil, Host.noQEMU), arguments: softwareEngines)
    func sameAsQEMU(engine: String) throws {
        let visor = try runVisor(["run", "sensitive", "--engine", engine], timeout: 120)
        #expect(visor.status == 0, "stderr: \(visor.stderr)")
        let image = try guestImage("sensitive")
        let qemu = try runProcess(Host.qemuPath!, [
            "-accel", "tcg", "-display", "none", "-nodefaults", "-no-reboot", "-serial", "stdio",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-kernel", image,
        ], timeout: 60)
        #expect(!qemu.timedOut)
        #expect(qemu.status == 0, "QEMU stderr: \(qemu.stderr)")
        // TCG's #GP for a gate whose DPL refuses INT n has vector * 16 + 2 as its error code, not
        // the SDM's IDT selector (vector * 8 + 2): INT 0x82 at CPL3 is #GP(0x0822) there.
        func lines(_ text: String) -> [String] {
            text.split(separator: "\n").filter { $0.hasPrefix("sensitive: ") }
                .map { $0.replacingOccurrences(of: "#GP(0x0822)", with: "#GP(0x0412)") }
        }
        #expect(lines(qemu.stdout).count > 40)
        #expect(lines(qemu.stdout) == lines(visor.stdout), "QEMU:\n\(qemu.stdout)\n\(engine):\n\(visor.stdout)")
    }

    @Test("on kvm --stats says the sensitive instructions are not counted", .enabled(if: Host.kvmAvailable, Host.noKVM))
    func notCountedOnKVM() throws {
        let r = try runVisor(["run", "hello", "--engine", "kvm", "--stats"], timeout: 120)
        #expect(r.status == 0, "stderr: \(r.stderr)")
        #expect(r.stderr.contains("sensitive instructions: not counted (the hardware runs them without an exit)"), "\(r.stderr)")
        #expect(!r.stderr.contains("Robin & Irvine"), "\(r.stderr)")
    }
}
