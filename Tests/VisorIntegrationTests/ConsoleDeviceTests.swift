// How a domain's console device is chosen (`--console`, xl.cfg `console`) and what it does to
// the platform: a virtio-console after the disks, console=hvc0 for a Linux kernel.

import Foundation
import Testing
@testable import Visor
import VisorX86

@Suite struct ConsoleDeviceTests {
    /// The smallest image with a Linux setup header: the boot flag 0xaa55 at 0x1fe, "HdrS" at 0x202.
    static let bzImage: [UInt8] = {
        var image = [UInt8](repeating: 0, count: 0x400)
        image.replaceSubrange(0x1fe..<0x200, with: [0x55, 0xaa])
        image.replaceSubrange(0x202..<0x206, with: Array("HdrS".utf8))
        return image
    }()

    @Test("a virtio console is the virtio-mmio device after the disks; Linux gets console=hvc0 after its own")
    func linuxCommandLine() {
        var configuration = DomainConfiguration(name: "d", kernelDescription: "d", kernel: Self.bzImage,
                                                commandLine: "console=ttyS0", engine: InterpEngine())
        configuration.disks = [DiskConfiguration(path: "a.img", readOnly: false)]
        configuration.console = .virtio
        #expect(configuration.virtioDeviceCount == 2)
        #expect(Domain.commandLine(for: configuration)
                == "console=ttyS0 console=hvc0 virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6")
        configuration.commandLine = "console=hvc0,115200 quiet"
        #expect(Domain.commandLine(for: configuration).hasPrefix("console=hvc0,115200 quiet virtio_mmio"),
                "a command line that names hvc itself is left to say so")
        configuration.console = .serial
        configuration.commandLine = "console=ttyS0"
        #expect(Domain.commandLine(for: configuration) == "console=ttyS0 virtio_mmio.device=4K@0xd0000000:5")
    }

    @Test("the virtio console counts among the five virtio devices")
    func countsAsADevice() throws {
        let kernel = [0x7f, 0x45, 0x4c, 0x46] + [UInt8](repeating: 0, count: 60)
        var configuration = DomainConfiguration(name: "d", kernelDescription: "d", kernel: kernel, engine: InterpEngine())
        configuration.disks = Array(repeating: DiskConfiguration(path: "/dev/null", readOnly: true), count: 5)
        configuration.console = .virtio
        do {
            _ = try Domain(configuration: configuration, consoleOutput: { _ in })
            Issue.record("five disks and a virtio console were accepted")
        } catch {
            #expect("\(error)".contains("at most 5 virtio devices (disks, network interfaces and a virtio console), not 6"), "\(error)")
        }
    }

    @Test("xl.cfg console: serial or virtio, anything else refused by name; the JSON form keeps it")
    func xlConfig() throws {
        let base = "name = \"d\"\nkernel = \"demo\"\n"
        #expect(try XLConfig.parse(base, path: "a.cfg").spec.console == nil)
        let spec = try XLConfig.parse(base + "console = \"virtio\"\n", path: "a.cfg").spec
        #expect(spec.console == .virtio)
        #expect(XLConfigObject(spec).console == .virtio)
        #expect(try XLConfig.parse(base + "console = \"serial\"\n", path: "a.cfg").spec.console == .serial)
        do {
            _ = try XLConfig.parse(base + "console = \"hvc\"\n", path: "a.cfg")
            Issue.record("console = \"hvc\" was accepted")
        } catch {
            #expect(error.description.contains("'hvc' is not a console device: choose serial"), "\(error)")
        }
    }

    @Test("visor run --console refuses an unknown device by name")
    func badOption() throws {
        let r = try runVisor(["run", "demo", "--console", "pty"])
        #expect(r.status == ExitStatus.badOption, "\(r.stderr)")
        #expect(r.stderr.contains("--console 'pty' is not a console device"), "\(r.stderr)")
    }
}
