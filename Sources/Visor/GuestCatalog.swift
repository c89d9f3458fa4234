// The built-in guests: Embedded Swift kernels under Guests/, built on first use with `make`.

import Foundation

/// What went wrong finding or building a built-in guest.
public enum GuestCatalogError: Error, CustomStringConvertible {
    /// Visor's own Guests/ sources are not where this build of Visor expects them.
    case sourcesMissing(path: String)
    /// `make` failed; `output` is what it printed.
    case buildFailed(status: Int32, output: String)
    /// No built-in guest has this name.
    case unknownGuest(name: String, known: [String])
    /// A guest whose files come from a download (`Guests/linux/fetch`) that has not been run.
    case notFetched(name: String, missing: String, fetch: String)

    public var description: String {
        switch self {
        case .sourcesMissing(let path):
            return "the built-in guests' sources are not at \(path); set VISOR_GUESTS_DIR to the Guests/ folder of a Visor checkout"
        case .buildFailed(let status, let output):
            return "building the built-in guests failed (make exited \(status)):\n\(output)"
        case .unknownGuest(let name, let known):
            return "'\(name)' is neither a file nor a built-in guest (built-in guests: \(known.joined(separator: ", ")))"
        case .notFetched(let name, let missing, let fetch):
            return "the '\(name)' guest is not fetched yet (\(missing) is missing): run \(fetch) first"
        }
    }
}

/// The Visor checkout this binary was built from (where Package.swift is), found from this
/// source file's path at build time. Built-in guests and benchmark sources live there.
public enum SourceTree {
    public static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
}

/// Finds, builds and lists the built-in guests.
public struct GuestCatalog: Sendable {
    /// The Guests/ folder with the sources and Makefile.
    public let sourceDirectory: URL
    /// Where the built ELF images go.
    public let outputDirectory: URL
    /// Told, one line per guest, when a guest has to be built (a first build takes seconds).
    public let announce: @Sendable (String) -> Void

    /// The default guest of `visor run` with no kernel.
    public static let defaultGuest = "demo"

    /// Writes `line` and a newline to standard error.
    public static let toStandardError: @Sendable (String) -> Void = { line in
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    /// The catalog of this checkout: Guests/ beside Package.swift (found from this source file's
    /// path at build time), or `VISOR_GUESTS_DIR`; output in `.build/guests` of the checkout, or
    /// `VISOR_GUESTS_OUT`. Builds are announced on standard error.
    public static func standard() -> GuestCatalog {
        let env = ProcessInfo.processInfo.environment
        let root = SourceTree.root
        let source = env["VISOR_GUESTS_DIR"].map { URL(fileURLWithPath: $0) } ?? root.appendingPathComponent("Guests")
        let output = env["VISOR_GUESTS_OUT"].map { URL(fileURLWithPath: $0) }
            ?? source.deletingLastPathComponent().appendingPathComponent(".build/guests")
        return GuestCatalog(sourceDirectory: source, outputDirectory: output)
    }

    public init(sourceDirectory: URL, outputDirectory: URL,
                announce: @escaping @Sendable (String) -> Void = GuestCatalog.toStandardError) {
        self.sourceDirectory = sourceDirectory
        self.outputDirectory = outputDirectory
        self.announce = announce
    }

    /// The guests Visor does not build but downloads: Debian's Linux kernel with a busybox
    /// initramfs, made by `Guests/linux/fetch` into `linux/` of the output folder.
    public static let fetchedGuests: [FetchedGuest] = [
        FetchedGuest(name: "linux", kernel: "linux/bzImage", initrd: "linux/initramfs.cpio.gz",
                     commandLine: "console=ttyS0", fetchScript: "Guests/linux/fetch",
                     about: "Debian's Linux kernel (bzImage, the 64-bit boot protocol) and a busybox shell"),
        FetchedGuest(name: "linux-pvh", kernel: "linux/vmlinux", initrd: "linux/initramfs.cpio.gz",
                     commandLine: "console=ttyS0", fetchScript: "Guests/linux/fetch",
                     about: "the same kernel uncompressed (vmlinux), entered through its PVH note"),
    ]

    /// The files of fetched guest `name` (`fetchedGuests`), or nil when no fetched guest has that
    /// name; throws `notFetched` when its download has not been made.
    public func fetchedGuest(named name: String) throws -> FetchedGuest.Files? {
        guard let guest = Self.fetchedGuests.first(where: { $0.name == name }) else { return nil }
        let kernel = outputDirectory.appendingPathComponent(guest.kernel)
        let initrd = outputDirectory.appendingPathComponent(guest.initrd)
        for file in [kernel, initrd] where !FileManager.default.fileExists(atPath: file.path) {
            throw GuestCatalogError.notFetched(name: name, missing: file.path, fetch: guest.fetchScript)
        }
        return FetchedGuest.Files(kernel: kernel, initrd: initrd, commandLine: guest.commandLine)
    }

    /// The names of the built-in guests, as the Makefile lists them.
    public func names() throws -> [String] {
        let (status, output) = try make(["list"])
        guard status == 0 else { throw GuestCatalogError.buildFailed(status: status, output: output) }
        return output.split(whereSeparator: \.isNewline).map(String.init).filter { !$0.isEmpty }
    }

    /// Builds (if out of date) and returns the ELF image path of every built-in guest.
    public func buildAll() throws -> [(name: String, path: URL)] {
        try names().map { ($0, try build($0)) }
    }

    /// Builds (if out of date) and returns the ELF image of guest `name`, and nothing else.
    public func image(named name: String) throws -> URL {
        let known = try names()
        guard known.contains(name) else { throw GuestCatalogError.unknownGuest(name: name, known: known) }
        return try build(name)
    }

    /// Where guest `name`'s image is once built.
    public func imagePath(_ name: String) -> URL { outputDirectory.appendingPathComponent("\(name).elf") }

    /// Builds guest `name` (the Makefile's target of that name) if `make -q` says it is out of
    /// date, announcing it first. The question and the build happen under the build lock, so
    /// of several processes asking at once one builds and announces, and the others find the
    /// image current.
    private func build(_ name: String) throws -> URL {
        let image = imagePath(name)
        try withBuildLock {
            // make -q: 0 up to date, 1 out of date, 2 an error (the build below reports it).
            guard try make(["-q", name]).status != 0 else { return }
            let why = FileManager.default.fileExists(atPath: image.path) ? "sources changed" : "first use"
            announce("visor: building guest '\(name)' (\(why))…")
            let (status, output) = try make([name])
            guard status == 0 else { throw GuestCatalogError.buildFailed(status: status, output: output) }
        }
        return image
    }

    /// Runs `body` holding the output folder's build lock: one make at a time across visor
    /// processes and parallel tests.
    private func withBuildLock(_ body: () throws -> Void) throws {
        try FileManager.default.createDirectory(at: outputDirectory, withIntermediateDirectories: true)
        let lockFD = open(outputDirectory.appendingPathComponent(".build-lock").path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        if lockFD >= 0 { flock(lockFD, LOCK_EX) }
        defer { if lockFD >= 0 { close(lockFD) } }
        try body()
    }

    /// Runs make on the Guests/ folder: its status and everything it printed.
    private func make(_ arguments: [String]) throws -> (status: Int32, output: String) {
        guard FileManager.default.fileExists(atPath: sourceDirectory.appendingPathComponent("Makefile").path) else {
            throw GuestCatalogError.sourcesMissing(path: sourceDirectory.path)
        }
        return try HostProcess.run(
            "/usr/bin/env", ["make", "-s", "-C", sourceDirectory.path, "OUT=\(outputDirectory.path)"] + arguments)
    }
}

/// A guest whose kernel and initial RAM disk a script downloads and builds into the output folder.
public struct FetchedGuest: Sendable {
    public var name: String
    /// The kernel and initrd paths, relative to the catalog's output folder.
    public var kernel: String
    public var initrd: String
    /// The command line the guest always gets; `--cmdline` text is appended to it.
    public var commandLine: String
    /// The script that makes the files, relative to the checkout.
    public var fetchScript: String
    /// One line for `visor guests`.
    public var about: String

    /// Where a fetched guest's files are.
    public struct Files: Sendable {
        public var kernel: URL
        public var initrd: URL
        public var commandLine: String
    }
}

/// Runs a host program to completion with no standard input.
enum HostProcess {
    /// The exit status and everything the program wrote to standard output and error, together.
    static func run(_ path: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
