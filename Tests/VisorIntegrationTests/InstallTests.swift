// An installed Visor runs from anywhere (issue #11): `make install-built` puts the visor these
// tests were built with, the built-in guests and the documents under a temporary prefix, and the
// installed visor then boots a guest while the checkout is out of its reach (a tmpfs mounted over
// the checkout in a mount namespace of its own), so it cannot be finding anything through the
// paths it was compiled at.

import Foundation
import Testing
import Visor

@Suite("Installation", .timeLimit(.minutes(10)))
struct InstallTests {
    /// True when this process may hide a folder from a child: `unshare -m` and a tmpfs mount
    /// over the checkout work here (root, or a user namespace allowing it).
    static let canHideCheckout: Bool = {
        guard Host.executable("unshare", alias: "unshare") != nil, Host.executable("make", alias: "make") != nil,
              Host.executable("flock", alias: "flock") != nil
        else { return false }
        let probe = try? runProcess("/usr/bin/env", ["unshare", "-m", "sh", "-c",
                                                     "mount -t tmpfs tmpfs \(quoted(Checkout.root.path))"], timeout: 60)
        return probe?.status == 0
    }()
    static let cannotHide = Host.skipReason(
        "unshare", "needs make, flock, and unshare -m with a tmpfs mount (root, or user namespaces that allow it)")

    static func quoted(_ text: String) -> String { "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'" }

    /// Runs `command` (a shell command line) in a mount namespace where the checkout is an empty
    /// tmpfs, with no VISOR_GUESTS_* in the environment.
    static func withCheckoutHidden(_ command: String, timeout: Double = 240) throws -> ProcessResult {
        let hide = "mount -t tmpfs tmpfs \(quoted(Checkout.root.path)) && test ! -e \(quoted(Checkout.root.path))/Package.swift && "
        return try runProcess("/usr/bin/env", ["-u", "VISOR_GUESTS_DIR", "-u", "VISOR_GUESTS_OUT", "unshare", "-m", "sh", "-c",
                                               hide + command], timeout: timeout)
    }

    @Test("make install-built installs visor, the guests and the docs; the installed visor boots demo with the checkout hidden",
          .enabled(if: canHideCheckout, cannotHide))
    func installedVisorRunsWithoutCheckout() throws {
        let prefix = try GuestCatalogTests.temporaryFolder("install")
        defer { try? FileManager.default.removeItem(at: prefix) }
        let install = try runProcess("/usr/bin/env", [
            "make", "-s", "-C", Checkout.root.path, "install-built", "PREFIX=\(prefix.path)",
            "BUILD_DIR=\(Host.productsDirectory.path)",
        ], timeout: 480)
        #expect(install.status == 0, "make install-built: \(install.stderr)")
        let fm = FileManager.default
        for file in ["bin/visor", "share/visor/guests/demo.elf", "share/visor/guests/minios.elf",
                     "share/visor/Benchmarks/kvm-exit-reference.c", "share/doc/visor/README.md"] {
            #expect(fm.fileExists(atPath: prefix.appendingPathComponent(file).path), "\(file) installed")
        }
        #expect(fm.isExecutableFile(atPath: prefix.appendingPathComponent("bin/visor").path))

        let visor = Self.quoted(prefix.appendingPathComponent("bin/visor").path)
        let run = try Self.withCheckoutHidden("exec \(visor) run demo --engine interp --timeout 120s")
        #expect(run.status == 0, "stderr: \(run.stderr)")
        #expect(run.stdout.contains("primes below 10000: 1229 (expected 1229) PASS"), "stdout: \(run.stdout)")
        #expect(run.stderr.isEmpty, "an installed guest is not built: \(run.stderr)")

        let guests = try Self.withCheckoutHidden("exec \(visor) guests")
        #expect(guests.status == 0, "stderr: \(guests.stderr)")
        let demoLine = guests.stdout.split(separator: "\n").first { $0.hasPrefix("demo ") }
        #expect(demoLine?.hasSuffix(prefix.appendingPathComponent("share/visor/guests/demo.elf").path) == true,
                "visor guests: \(guests.stdout)")

        // The same executable alone, with no share/visor beside it: a clear error, status 69.
        let loneFolder = try GuestCatalogTests.temporaryFolder("lone")
        defer { try? fm.removeItem(at: loneFolder) }
        let lone = loneFolder.appendingPathComponent("bin")
        try fm.createDirectory(at: lone, withIntermediateDirectories: true)
        try fm.copyItem(at: prefix.appendingPathComponent("bin/visor"), to: lone.appendingPathComponent("visor"))
        let alone = try Self.withCheckoutHidden("exec \(Self.quoted(lone.appendingPathComponent("visor").path)) run demo --engine interp")
        #expect(alone.status == 69)
        #expect(alone.stderr.contains("no built-in guests found"), "stderr: \(alone.stderr)")
        #expect(alone.stderr.contains("make install"), "the error says how to install: \(alone.stderr)")
    }

    @Test("the catalog's order: VISOR_GUESTS_DIR (sources or images), then PREFIX/share/visor/guests, then the checkout above the executable")
    func catalogOrigin() throws {
        let root = try GuestCatalogTests.temporaryFolder("origin")
        defer { try? FileManager.default.removeItem(at: root) }
        let fm = FileManager.default
        // An installed layout and a checkout layout, side by side.
        let installedVisor = root.appendingPathComponent("prefix/bin/visor")
        try fm.createDirectory(at: root.appendingPathComponent("prefix/share/visor/guests"), withIntermediateDirectories: true)
        try fm.createDirectory(at: installedVisor.deletingLastPathComponent(), withIntermediateDirectories: true)
        let checkout = root.appendingPathComponent("checkout")
        try fm.createDirectory(at: checkout.appendingPathComponent("Guests"), withIntermediateDirectories: true)
        try fm.createDirectory(at: checkout.appendingPathComponent(".build/x86_64-unknown-linux-gnu/debug"),
                               withIntermediateDirectories: true)
        _ = fm.createFile(atPath: checkout.appendingPathComponent("Package.swift").path, contents: Data())
        _ = fm.createFile(atPath: checkout.appendingPathComponent("Guests/Makefile").path, contents: Data())
        let builtVisor = checkout.appendingPathComponent(".build/x86_64-unknown-linux-gnu/debug/visor")

        func origin(_ env: [String: String], _ executable: URL?) -> String {
            switch GuestCatalog.standard(environment: env, executable: executable).origin {
            case .sources(let guests, let output): return "sources \(guests.path) -> \(output.path)"
            case .images(let folder): return "images \(folder.path)"
            case .missing(let searched): return "missing \(searched.count)"
            }
        }
        let r = root.path
        #expect(origin([:], installedVisor) == "images \(r)/prefix/share/visor/guests")
        #expect(origin([:], builtVisor) == "sources \(r)/checkout/Guests -> \(r)/checkout/.build/guests")
        #expect(origin(["VISOR_GUESTS_OUT": "/o"], builtVisor) == "sources \(r)/checkout/Guests -> /o")
        #expect(origin(["VISOR_GUESTS_DIR": "\(r)/checkout/Guests"], installedVisor)
                == "sources \(r)/checkout/Guests -> \(r)/checkout/.build/guests")
        #expect(origin(["VISOR_GUESTS_DIR": "\(r)/prefix/share/visor/guests"], builtVisor)
                == "images \(r)/prefix/share/visor/guests")
        #expect(origin([:], root.appendingPathComponent("elsewhere/visor")) == "missing 2")
        #expect(origin([:], nil) == "missing 1")
        // A missing catalog says where it looked, and how to install.
        let missing = GuestCatalog.standard(environment: [:], executable: root.appendingPathComponent("elsewhere/visor"))
        #expect(throws: GuestCatalogError.self) { try missing.names() }
        do {
            _ = try missing.image(named: "demo")
            Issue.record("a catalog with no guests returned an image")
        } catch {
            #expect("\(error)".contains("\(r)/share/visor/guests") && "\(error)".contains("make install"), "\(error)")
        }
    }
}
