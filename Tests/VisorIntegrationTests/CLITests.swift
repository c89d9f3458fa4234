// The command line's answers to bad input, and its help: no guest, no KVM needed.

import Foundation
import Testing
import Visor
import VisorX86

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

    /// One bad option value and the words its message must contain: the option, the value and
    /// what is allowed.
    struct BadOption: Sendable, CustomTestStringConvertible {
        var arguments: [String]
        var message: String
        var testDescription: String { arguments.joined(separator: " ") }
    }

    static let memoryAllowed = "guest RAM is 4 KiB to 64 GiB, in whole 4 KiB pages"
    static let durationAllowed = "give a duration above zero"

    /// Every option of `run` and of each `bench` subcommand that takes a value: garbage,
    /// negative, zero and huge values (negative ones were taken for options: "Missing value").
    static let badOptions: [BadOption] = [
        BadOption(arguments: ["run", "--memory", "lots"], message: "--memory 'lots' is not a size: \(memoryAllowed)"),
        BadOption(arguments: ["run", "--memory", "1.5G"], message: "--memory '1.5G' is not a size: \(memoryAllowed)"),
        BadOption(arguments: ["run", "--memory", "-1"], message: "--memory '-1' is not a size: \(memoryAllowed)"),
        BadOption(arguments: ["run", "--memory", "0"], message: "--memory '0' is out of range: \(memoryAllowed)"),
        BadOption(arguments: ["run", "--memory", "100b"], message: "--memory '100b' is out of range: \(memoryAllowed)"),
        BadOption(arguments: ["run", "--memory", "65G"], message: "--memory '65G' is out of range: \(memoryAllowed)"),
        BadOption(arguments: ["run", "--memory", "99999999999999999999G"],
                  message: "--memory '99999999999999999999G' is out of range: \(memoryAllowed)"),
        BadOption(arguments: ["run", "--vcpus", "0"], message: "--vcpus '0' is out of range: a domain has 1 to 64 vCPUs"),
        BadOption(arguments: ["run", "--vcpus", "-1"], message: "--vcpus '-1' is out of range: a domain has 1 to 64 vCPUs"),
        BadOption(arguments: ["run", "--vcpus", "65"], message: "--vcpus '65' is out of range: a domain has 1 to 64 vCPUs"),
        BadOption(arguments: ["run", "--vcpus", "99999999999999999999"],
                  message: "--vcpus '99999999999999999999' is out of range: a domain has 1 to 64 vCPUs"),
        BadOption(arguments: ["run", "--vcpus", "two"], message: "--vcpus 'two' is not a whole number: a domain has 1 to 64 vCPUs"),
        BadOption(arguments: ["run", "--timeout", "soon"], message: "--timeout 'soon' is not a duration: \(durationAllowed)"),
        BadOption(arguments: ["run", "--timeout", "-1"], message: "--timeout '-1' is negative: \(durationAllowed)"),
        BadOption(arguments: ["run", "--timeout", "0"], message: "--timeout '0' is zero: \(durationAllowed)"),
        BadOption(arguments: ["run", "--timeout", "1e99"], message: "--timeout '1e99' is not a duration: \(durationAllowed)"),
        BadOption(arguments: ["run", "--timeout", "99999999999h"],
                  message: "--timeout '99999999999h' is too long: at most 1000000000 seconds"),
        BadOption(arguments: ["run", "--for", "-5s"], message: "--for '-5s' is negative: \(durationAllowed)"),
        BadOption(arguments: ["run", "--for", "0s"], message: "--for '0s' is zero: \(durationAllowed)"),
        BadOption(arguments: ["run", "--for", "a while"], message: "--for 'a while' is not a duration: \(durationAllowed)"),
        BadOption(arguments: ["run", "--pcpus", "0"], message: "--pcpus '0' is out of range: the pool has 1 to 256 pCPUs"),
        BadOption(arguments: ["run", "--pcpus", "-2"], message: "--pcpus '-2' is out of range: the pool has 1 to 256 pCPUs"),
        BadOption(arguments: ["run", "--pcpus", "257"], message: "--pcpus '257' is out of range: the pool has 1 to 256 pCPUs"),
        BadOption(arguments: ["run", "--pcpus", "1.5"], message: "--pcpus '1.5' is not a whole number: the pool has 1 to 256 pCPUs"),
        BadOption(arguments: ["run", "--sched", "fifo"],
                  message: "--sched 'fifo' is not a scheduler: choose credit, credit2, rtds or null"),
        BadOption(arguments: ["run", "--sched", "-1"], message: "--sched '-1' is not a scheduler: choose credit, credit2, rtds or null"),
        BadOption(arguments: ["run", "--trace", "/nonexistent/folder/run.json"],
                  message: "--trace '/nonexistent/folder/run.json': the folder '/nonexistent/folder' does not exist"),
        BadOption(arguments: ["run", "--trace", "/"], message: "--trace '/': '/' is a folder: give the path of a file to write"),
        BadOption(arguments: ["run", "--trace", ""], message: "--trace '': give the path of a file to write"),
        BadOption(arguments: ["run", "--engine", "vmware"], message: "--engine: unknown engine 'vmware': choose one of kvm, interp, bt"),
        BadOption(arguments: ["run", "--engine", "-kvm"], message: "--engine: unknown engine '-kvm': choose one of kvm, interp, bt"),
        BadOption(arguments: ["bench", "exits", "--count", "0"], message: "--count '0' is out of range: give 1 to 100000000 port writes"),
        BadOption(arguments: ["bench", "exits", "--count", "-5"], message: "--count '-5' is out of range: give 1 to 100000000 port writes"),
        BadOption(arguments: ["bench", "exits", "--count", "lots"],
                  message: "--count 'lots' is not a whole number: give 1 to 100000000 port writes"),
        BadOption(arguments: ["bench", "exits", "--rounds", "101"], message: "--rounds '101' is out of range: give 1 to 100 rounds"),
        BadOption(arguments: ["bench", "exits", "--rounds", "-1"], message: "--rounds '-1' is out of range: give 1 to 100 rounds"),
        BadOption(arguments: ["bench", "cpu", "--engine", "jit"], message: "--engine: unknown engine 'jit': choose one of kvm, interp, bt"),
        BadOption(arguments: ["bench", "irq", "--engine", "-1"], message: "--engine: unknown engine '-1': choose one of kvm, interp, bt"),
        BadOption(arguments: ["bench", "sched", "--rounds", "0"], message: "--rounds '0' is out of range: give 1 to 100 rounds"),
        BadOption(arguments: ["bench", "shares", "--seconds", "-1"],
                  message: "--seconds '-1' is out of range: give 0.5 to 600 seconds per scenario"),
        BadOption(arguments: ["bench", "shares", "--seconds", "nan"],
                  message: "--seconds 'nan' is not a number: give 0.5 to 600 seconds per scenario"),
        BadOption(arguments: ["bench", "shares", "--seconds", "601"],
                  message: "--seconds '601' is out of range: give 0.5 to 600 seconds per scenario"),
        BadOption(arguments: ["bench", "shares", "--sched", "rtds"],
                  message: "--sched 'rtds' is not offered here: choose credit or credit2"),
        BadOption(arguments: ["bench", "shares", "--engine", "qemu"], message: "--engine: unknown engine 'qemu': choose one of kvm, interp, bt"),
        BadOption(arguments: ["bench", "pv", "--iterations", "9"], message: "--iterations '9' is out of range: give 10 to 1000000 round trips"),
        BadOption(arguments: ["bench", "pv", "--iterations", "-10"],
                  message: "--iterations '-10' is out of range: give 10 to 1000000 round trips"),
        BadOption(arguments: ["bench", "pv", "--iterations", "1e3"],
                  message: "--iterations '1e3' is not a whole number: give 10 to 1000000 round trips"),
        BadOption(arguments: ["bench", "linux", "--rounds", "0"], message: "--rounds '0' is out of range: give 1 to 100 rounds"),
        BadOption(arguments: ["bench", "linux", "--vcpus", "65"], message: "--vcpus '65' is out of range: a domain has 1 to 64 vCPUs"),
        BadOption(arguments: ["bench", "linux", "--engine", "tcg"], message: "--engine: unknown engine 'tcg': choose one of kvm, interp, bt"),
        BadOption(arguments: ["bench", "linux", "--timeout", "-1"], message: "--timeout '-1' is negative: \(durationAllowed)"),
    ]

    @Test("a bad option value is a usage error, status 64, naming the option, the value and what is allowed",
          arguments: badOptions)
    func badOption(_ bad: BadOption) throws {
        let r = try runVisor(bad.arguments)
        #expect(r.status == 64, "stderr: \(r.stderr)")
        #expect(r.stderr.contains(bad.message), "stderr: \(r.stderr)")
    }

    /// A hang guard for a run that may first build its guest, waiting its turn at the build lock
    /// behind other tests' builds: minutes on a loaded 2-core host.
    let guestBuildGuard: Double = 300

    @Test("an option value that starts with '-' is a value, not another option")
    func dashValues() throws {
        let r = try runVisor(["run", "--engine", "interp", "--cmdline", "-v exit=3", "hello"], timeout: guestBuildGuard)
        #expect(r.status == 7, "hello's exit=3 was read from a command line starting with '-': \(r.stderr)")
    }

    @Test("visor help run gives the exit statuses of README's table")
    func helpStatuses() throws {
        let r = try runVisor(["help", "run"])
        #expect(r.status == 0)
        let help = r.stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        #expect(help.contains("64 for a bad option, 65 for a bad kernel, initrd or module, 69 when the engine is unavailable or a fetched guest has not been fetched, 70 for an internal error"))
        let readme = try String(contentsOf: Checkout.root.appendingPathComponent("README.md"), encoding: .utf8)
        #expect(readme.contains("| 64 / 65 / 69 / 70 | bad option / bad kernel, initrd or module / engine unavailable or fetched guest not fetched / internal error |"))
    }

    @Test("a missing module is named in the error")
    func missingModule() throws {
        let r = try runVisor(["run", "hello", "--module", "/nonexistent/initrd arg"], timeout: guestBuildGuard)
        #expect(r.status == 65)
        #expect(r.stderr.contains("module '/nonexistent/initrd' does not exist"))
    }

    @Test("--disk: a missing image, a directory and a bad option are refused before the guest starts")
    func badDisks() throws {
        let missing = try runVisor(["run", "hello", "--disk", "/nonexistent/disk.img"], timeout: guestBuildGuard)
        #expect(missing.status == 65)
        #expect(missing.stderr.contains("--disk: disk image /nonexistent/disk.img does not exist"), "stderr: \(missing.stderr)")
        let directory = try runVisor(["run", "hello", "--disk", "/tmp,ro"], timeout: guestBuildGuard)
        #expect(directory.status == 65)
        #expect(directory.stderr.contains("--disk: disk image /tmp is a directory, not a file"), "stderr: \(directory.stderr)")
        let option = try runVisor(["run", "hello", "--disk", "disk.img,readonly"])
        #expect(option.status == 64)
        #expect(option.stderr.contains("'readonly' is not an option: write FILE, FILE,ro or FILE,rw"), "stderr: \(option.stderr)")
    }

    @Test("a guest runs with a disk attached: its worker starts and stops with the domain")
    func runWithDisk() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("visor-disk-\(getpid()).img")
        try Data(repeating: 0, count: 1 << 20).write(to: path)
        defer { try? FileManager.default.removeItem(at: path) }
        let plain = try runVisor(["run", "hello", "--engine", "interp"], timeout: guestBuildGuard)
        let r = try runVisor(["run", "hello", "--engine", "interp", "--disk", path.path + ",ro"], timeout: guestBuildGuard)
        #expect(r.status == plain.status, "stderr: \(r.stderr)")
        #expect(r.stdout == plain.stdout)
    }

    @Test("a Linux kernel's command line names each virtio-mmio device; other kernels' is left alone")
    func virtioCommandLine() throws {
        // The smallest image with a Linux setup header: the boot flag 0xaa55 at 0x1fe, "HdrS" at 0x202.
        var bzImage = [UInt8](repeating: 0, count: 0x400)
        bzImage.replaceSubrange(0x1fe..<0x200, with: [0x55, 0xaa])
        bzImage.replaceSubrange(0x202..<0x206, with: Array("HdrS".utf8))
        var configuration = DomainConfiguration(name: "d", kernelDescription: "d", kernel: bzImage,
                                                commandLine: "console=ttyS0", engine: InterpEngine())
        configuration.disks = [DiskConfiguration(path: "a.img", readOnly: false), DiskConfiguration(path: "b.img", readOnly: true)]
        #expect(Domain.commandLine(for: configuration)
                == "console=ttyS0 virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6")
        configuration.kernel = [0x7f, 0x45, 0x4c, 0x46] + [UInt8](repeating: 0, count: 60)
        #expect(Domain.commandLine(for: configuration) == "console=ttyS0")
    }

    @Test("guest RAM too small for the kernel is refused clearly")
    func tooLittleMemory() throws {
        let r = try runVisor(["run", "hello", "--memory", "1M"], timeout: guestBuildGuard)
        #expect(r.status == 65)
        #expect(r.stderr.contains("visor: "))
        #expect(!r.stderr.isEmpty)
    }

    @Test("visor guests lists every built-in guest with an existing ELF path")
    func guests() async throws {
        // It may have to build every guest (the other tests build only those they run): on a
        // busy machine that takes minutes, so the time limit is only there to catch a hang.
        let r = try await onOwnThread { try runVisor(["guests"], timeout: 900) }
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

    @Test("a size or duration that cannot be read says why")
    func problems() {
        #expect(ByteSize.read("12X") == .failure(.notASize))
        #expect(ByteSize.read("-1") == .failure(.notASize))
        #expect(ByteSize.read("99999999999999999999") == .failure(.tooLarge))
        #expect(ByteSize.read("17179869184G") == .failure(.tooLarge))
        #expect(DurationText.read("-1") == .failure(.negative))
        #expect(DurationText.read("-soon") == .failure(.notADuration))
        #expect(DurationText.read("999999999999") == .failure(.tooLong))
        #expect(DurationText.read("0") == .success(.zero))
    }
}
