// Linux with its root file system on a virtio-blk disk (issue #16): the `linux` guest's
// initramfs loads the virtio modules and, given `root=/dev/vda`, mounts the disk and switches
// to its /sbin/init; `Guests/linux/fetch` makes the disk, root.img (Guests/linux/mkrootfs).
// Each test boots a copy of that image of its own, on interp, in a release build (about 45 s a
// boot there; `swift test -c release --filter LinuxDiskTests`).

import Foundation
import Testing
@testable import Visor

extension LinuxGuest {
    /// The root disk image `Guests/linux/fetch` makes beside the kernel, when it is there.
    static let rootImage: URL? = {
        guard let files = try? GuestCatalog.standard().fetchedGuest(named: "linux") else { return nil }
        let image = files.kernel.deletingLastPathComponent().appendingPathComponent("root.img")
        return FileManager.default.fileExists(atPath: image.path) ? image : nil
    }()
    static let noRootImage: Comment = "needs root.img beside the fetched kernel: run Guests/linux/fetch (a Debian host with apt-get and mkfs.ext4)"
}

extension Host {
    /// e2fsprogs' e2fsck and debugfs, which read the disk image on the host; often in /sbin
    /// or /usr/sbin, outside a user's PATH.
    static func e2fsprogsTool(_ name: String) -> String? {
        executable(name, alias: "e2fsprogs")
            ?? (pretendMissing.contains("e2fsprogs") ? nil
                : ["/usr/sbin/\(name)", "/sbin/\(name)"].first { FileManager.default.isExecutableFile(atPath: $0) })
    }
    static let e2fsckPath = e2fsprogsTool("e2fsck")
    static let debugfsPath = e2fsprogsTool("debugfs")
    static let noE2fsprogs = skipReason("e2fsprogs", "needs e2fsck and debugfs, which are not here (apt-get install e2fsprogs)")
}

@Suite("Linux with its root on a virtio-blk disk (issue #16)", .serialized,
       .enabled(if: LinuxGuest.interpRunsLinux, "the interp CPU lacks the FPU, FXSR, SSE or SSE2 that Linux requires"),
       .enabled(if: LinuxGuest.releaseBuild, "a debug build's software CPU takes over ten minutes to boot Linux: run swift test -c release --filter LinuxDiskTests"),
       .enabled(if: LinuxGuest.bzImageFetched, LinuxGuest.notFetched),
       .enabled(if: LinuxGuest.rootImage != nil, LinuxGuest.noRootImage))
struct LinuxDiskTests {
    /// A sparse copy of root.img in a folder of its own, removed by `remove()`.
    struct ImageCopy {
        let folder: URL
        var path: String { folder.appendingPathComponent("root.img").path }

        init() throws {
            folder = FileManager.default.temporaryDirectory.appendingPathComponent("visor-rootdisk-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            let source = try #require(LinuxGuest.rootImage).path
            let r = try runProcess("/bin/cp", ["--sparse=always", source, folder.appendingPathComponent("root.img").path])
            try #require(r.status == 0, "copying \(source): \(r.stderr)")
        }

        func remove() { try? FileManager.default.removeItem(at: folder) }
    }

    /// Boots `linux` with `disk` (a --disk argument) as its root; returns the session and where
    /// the disk's shell prompt ends, or nil (with an issue recorded) when it does not get there.
    func bootFromDisk(_ disk: String, mode: String = "rw") throws -> (session: ConsoleSession, prompt: String.Index)? {
        // No root= of the test's: Visor gives the linux guest root=/dev/vda with a disk.
        let session = try ConsoleSession(["run", "linux", "--engine", "interp", "--disk", disk, "--timeout", "900s"])
        guard let mounted = session.waitFor("visor-linux: root is /dev/vda (ext4, \(mode))", timeout: 900),
              let started = session.waitFor("visor-linux: /sbin/init on the root disk is running", from: mounted, timeout: 120),
              let prompt = session.waitFor("/ # ", from: started, timeout: 120) else {
            Issue.record("no shell on the root disk: \(session.text.suffix(3000)) \(session.stderr)")
            _ = session.finish(timeout: 0)
            return nil
        }
        #expect(!session.text.contains("could not load module"), "every virtio module loaded: \(session.text.suffix(3000))")
        #expect(!session.text.contains("visor-linux: /init is running"), "the initramfs's shell was not started")
        return (session, prompt)
    }

    /// Types `poweroff -f` and expects the guest's power-off to end Visor with status 0.
    func powerOff(_ session: ConsoleSession) {
        session.type("poweroff -f")
        let status = session.finish(timeout: 300)
        #expect(status == 0, "visor ends with the guest's power-off: \(session.stderr)")
    }

    @Test("a file written on the disk, synced and powered off, is read back by the next boot; / is /dev/vda")
    func writtenThenReadBack() throws {
        let image = try ImageCopy()
        defer { image.remove() }
        let content = "visor-disk-\(UUID().uuidString)"

        guard let boot = try bootFromDisk(image.path) else { return }
        let session = boot.session
        var at = boot.prompt
        session.run("cat /proc/mounts", expecting: "/dev/vda / ext4 rw", at: &at)
        session.run("cat /sys/block/vda/ro", expecting: "\n0\n", at: &at)
        session.run("echo \(content) > /written.txt && sync && echo written-$((6*7))", expecting: "written-42", at: &at)
        powerOff(session)

        guard let second = try bootFromDisk(image.path) else { return }
        let again = second.session
        var at2 = second.prompt
        again.run("cat /proc/mounts", expecting: "/dev/vda / ext4 rw", at: &at2)
        // The typed command does not hold the content: only the file can answer it.
        again.run("cat /written.txt", expecting: "\n\(content)\n", at: &at2)
        powerOff(again)
    }

    @Test("what the guest's sync returned for is in the image when Visor is killed (SIGKILL) right after",
          .enabled(if: Host.e2fsckPath != nil && Host.debugfsPath != nil, Host.noE2fsprogs))
    func syncedDataOutlivesAKill() throws {
        let image = try ImageCopy()
        defer { image.remove() }
        let content = "visor-kill-\(UUID().uuidString)"

        guard let boot = try bootFromDisk(image.path) else { return }
        let session = boot.session
        var at = boot.prompt
        session.type("echo \(content) > /synced.txt && sync && echo synced-$((6*7))")
        guard session.waitFor("synced-42", from: at, timeout: 120) != nil else {
            Issue.record("the guest's sync did not return: \(session.text[at...].suffix(1000))")
            _ = session.finish(timeout: 0)
            return
        }
        kill(session.process.processIdentifier, SIGKILL)
        session.process.waitUntilExit()
        #expect(session.process.terminationReason == .uncaughtSignal && session.process.terminationStatus == SIGKILL)
        at = session.text.endIndex

        // The file system is as the guest left it: its journal not yet checkpointed, so e2fsck
        // replays it (as the kernel would when mounting) and must find nothing else to mend
        // (exit status 0, or 1 for "file system modified" by the replay).
        let check = try runProcess(try #require(Host.e2fsckPath), ["-f", "-y", image.path], timeout: 120)
        #expect(check.status == 0 || check.status == 1, "e2fsck: \(check.stdout) \(check.stderr)")
        let read = try runProcess(try #require(Host.debugfsPath), ["-R", "cat /synced.txt", image.path], timeout: 60)
        #expect(read.stdout == content + "\n", "debugfs read '\(read.stdout)': \(read.stderr)")
    }

    @Test("a read-only disk (--disk FILE,ro): Linux sees it read-only, mounts it ro, its writes fail, the image is unchanged")
    func readOnlyDisk() throws {
        let image = try ImageCopy()
        defer { image.remove() }
        let before = try Data(contentsOf: URL(fileURLWithPath: image.path))

        guard let boot = try bootFromDisk(image.path + ",ro", mode: "ro") else { return }
        let session = boot.session
        var at = boot.prompt
        #expect(session.text.contains("visor-linux: /dev/vda is a read-only disk: mounting it read-only"))
        session.run("cat /sys/block/vda/ro", expecting: "\n1\n", at: &at)
        session.run("cat /proc/mounts", expecting: "/dev/vda / ext4 ro", at: &at)
        session.run("echo x > /new.txt || echo refused-$((6*7))", expecting: "refused-42", at: &at)
        #expect(session.text.contains("Read-only file system"))
        // Past the file system, straight to the block device: refused as well.
        session.run("dd if=/dev/zero of=/dev/vda bs=512 count=1 conv=fsync || echo refused-$((6*8))", expecting: "refused-48", at: &at)
        session.run("ls /new.txt || echo absent-$((6*7))", expecting: "absent-42", at: &at)
        powerOff(session)

        let after = try Data(contentsOf: URL(fileURLWithPath: image.path))
        #expect(after == before, "not one byte of the image changed")
    }
}

/// The command line a fetched guest gets with disks: the first disk is its root unless the user
/// names one, or replaced the initramfs that understands root=.
@Suite struct RootDiskCommandLineTests {
    let linux = Launcher.ResolvedKernel(path: "bzImage", description: "linux", initrd: "initramfs.cpio.gz",
                                        baseCommandLine: "console=ttyS0")

    @Test func firstDiskIsRoot() {
        #expect(linux.commandLine(adding: "", disks: 1) == "console=ttyS0 root=/dev/vda")
        #expect(linux.commandLine(adding: "quiet", disks: 2) == "console=ttyS0 quiet root=/dev/vda")
    }

    @Test func leftAloneWithoutDisksOrWithTheUsersRootOrInitrd() {
        #expect(linux.commandLine(adding: "", disks: 0) == "console=ttyS0")
        #expect(linux.commandLine(adding: "root=/dev/vdb ro", disks: 2) == "console=ttyS0 root=/dev/vdb ro")
        #expect(linux.commandLine(adding: "", disks: 1, ownInitrd: false) == "console=ttyS0")
        // A kernel file of the user's has no base line: nothing is added to it.
        let file = Launcher.ResolvedKernel(path: "/tmp/bzImage", description: "/tmp/bzImage")
        #expect(file.commandLine(adding: "console=ttyS0", disks: 1) == "console=ttyS0")
    }
}
