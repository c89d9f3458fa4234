// The command line's answers to bad input, and its help: no guest, no KVM needed.

import Foundation
import Testing
import Visor

@Suite("visor command line")
struct CLITests {
    @Test("a kernel path that does not exist is named in the error, status 65")
    func missingKernel() throws {
        let r = try runVisor(["run", "/nonexistent/kernel.elf"])
        #expect(r.status == 65)
        #expect(r.stderr.contains("kernel '/nonexistent/kernel.elf' does not exist"))
    }

    @Test("a file that is not a kernel is refused, status 65")
    func notAKernel() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("visor-not-a-kernel-\(getpid()).bin")
        try Data(repeating: 0x41, count: 4096).write(to: path)
        defer { try? FileManager.default.removeItem(at: path) }
        let r = try runVisor(["run", path.path])
        #expect(r.status == 65)
        #expect(r.stderr.contains("not an ELF image"))
    }

    @Test("an unknown built-in guest lists the known ones, status 65")
    func unknownGuest() throws {
        let r = try runVisor(["run", "no-such-guest"])
        #expect(r.status == 65)
        #expect(r.stderr.contains("neither a file nor a built-in guest"))
        #expect(r.stderr.contains("hello"))
    }

    @Test("bad option values are usage errors naming the option, status 64")
    func badOptions() throws {
        for (args, needle) in [(["run", "--memory", "lots"], "--memory 'lots'"),
                               (["run", "--engine", "vmware"], "unknown engine 'vmware'"),
                               (["run", "--timeout", "soon"], "--timeout 'soon'")] {
            let r = try runVisor(args)
            #expect(r.status == 64, "\(args)")
            #expect(r.stderr.contains(needle), "\(args): \(r.stderr)")
        }
    }

    @Test("a missing module is named in the error")
    func missingModule() throws {
        let r = try runVisor(["run", "hello", "--module", "/nonexistent/initrd arg"])
        #expect(r.status == 65)
        #expect(r.stderr.contains("module '/nonexistent/initrd' does not exist"))
    }

    @Test("guest RAM too small for the kernel is refused clearly")
    func tooLittleMemory() throws {
        let r = try runVisor(["run", "hello", "--memory", "1M"])
        #expect(r.status == 65)
        #expect(r.stderr.contains("visor: "))
        #expect(!r.stderr.isEmpty)
    }

    @Test("visor guests lists every built-in guest with an existing ELF path")
    func guests() throws {
        let r = try runVisor(["guests"])
        #expect(r.status == 0)
        for name in ["demo", "hello", "triplefault", "exitbench"] {
            let line = r.stdout.split(separator: "\n").first { $0.hasPrefix(name + " ") }
            #expect(line != nil, "\(name) missing from: \(r.stdout)")
            if let path = line?.split(separator: " ").last {
                #expect(FileManager.default.fileExists(atPath: String(path)))
            }
        }
    }

    @Test("help names the run options")
    func help() throws {
        let r = try runVisor(["run", "--help"])
        #expect(r.status == 0)
        for option in ["--engine", "--memory", "--cmdline", "--module", "--stats", "--timeout", "Ctrl-]"] {
            #expect(r.stdout.contains(option), "\(option)")
        }
    }
}

@Suite("sizes and durations")
struct UnitsTests {
    @Test("sizes take K, M, G units; a bare number is MiB")
    func sizes() {
        #expect(ByteSize.parse("128M") == 128 << 20)
        #expect(ByteSize.parse("128") == 128 << 20)
        #expect(ByteSize.parse("1G") == 1 << 30)
        #expect(ByteSize.parse("512KiB") == 512 << 10)
        #expect(ByteSize.parse("4096b") == 4096)
        #expect(ByteSize.parse("") == nil)
        #expect(ByteSize.parse("M") == nil)
        #expect(ByteSize.parse("12X") == nil)
        #expect(ByteSize.parse("99999999999999999999G") == nil)
        #expect(ByteSize.parse("18446744073709551615G") == nil)
    }

    @Test("durations take ms, s, m, h; a bare number is seconds")
    func durations() {
        #expect(DurationText.parse("10s") == .seconds(10))
        #expect(DurationText.parse("500ms") == .milliseconds(500))
        #expect(DurationText.parse("2m") == .seconds(120))
        #expect(DurationText.parse("1.5") == .milliseconds(1500))
        #expect(DurationText.parse("soon") == nil)
        #expect(DurationText.parse("5 parsecs") == nil)
        #expect(DurationText.parse("1e99") == nil)
    }
}
