// The built-in guests: Embedded Swift kernels under Guests/. An installed Visor finds their
// images under PREFIX/share/visor/guests (`make install`); a Visor run from its checkout's build
// builds the one asked for with `make` on first use.

import Foundation

/// What went wrong finding or building a built-in guest.
public enum GuestCatalogError: Error, CustomStringConvertible {
    /// Visor's own Guests/ sources are not where this build of Visor expects them.
    case sourcesMissing(path: String)
    /// Neither installed images nor a checkout were found; `searched` says where it looked.
    case notFound(searched: [String])
    /// `make` failed; `output` is what it printed.
    case buildFailed(status: Int32, output: String)
    /// No built-in guest has this name.
    case unknownGuest(name: String, known: [String])
    /// A guest whose files come from a download (`Guests/linux/fetch`) that has not been run.
    case notFetched(name: String, missing: String, fetch: String)

    public var description: String {
        switch self {
        case .sourcesMissing(let path):
            return "the built-in guests are not at \(path); set VISOR_GUESTS_DIR to the Guests/ folder of a Visor checkout or to a folder of built guest images"
        case .notFound(let searched):
            return "no built-in guests found (looked for \(searched.joined(separator: "; "))): install Visor with "
                + "`make install PREFIX=...` from its checkout, or set VISOR_GUESTS_DIR to the Guests/ folder of a Visor "
                + "checkout or to a folder of built guest images"
        case .buildFailed(let status, let output):
            return "building the built-in guests failed (make exited \(status)):\n\(output)"
        case .unknownGuest(let name, let known):
            return "'\(name)' is neither a file nor a built-in guest (built-in guests: \(known.joined(separator: ", ")))"
        case .notFetched(let name, let missing, let fetch):
            return "the '\(name)' guest is not fetched yet (\(missing) is missing): run \(fetch) first"
        }
    }
}

/// Finds, builds and lists the built-in guests.
public struct GuestCatalog: Sendable {
    /// Where the guests come from.
    public enum Origin: Sendable {
        /// A Guests/ folder with its sources and Makefile: guests are built on first use into
        /// `output`.
        case sources(guests: URL, output: URL)
        /// A folder of built images (`NAME.elf`, and `linux/` when fetched), as installed.
        case images(URL)
        /// Nothing was found; the places looked at, for the error.
        case missing(searched: [String])
    }

    public let origin: Origin
    /// Told, one line per guest, when a guest has to be built (a first build takes seconds).
    public let announce: @Sendable (String) -> Void

    /// The Guests/ folder with the sources and Makefile, when this catalog builds from sources.
    public var sourceDirectory: URL? {
        if case .sources(let guests, _) = origin { return guests }
        return nil
    }

    /// Where the guests' images are (built or installed).
    public var outputDirectory: URL? {
        switch origin {
        case .sources(_, let output): return output
        case .images(let folder): return folder
        case .missing: return nil
        }
    }

    /// The default guest of `visor run` with no kernel.
    public static let defaultGuest = "demo"

    /// Writes `line` and a newline to standard error.
    public static let toStandardError: @Sendable (String) -> Void = { line in
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    /// This Visor's catalog, the first of:
    /// 1. `VISOR_GUESTS_DIR`: a Guests/ folder with its Makefile (built into `VISOR_GUESTS_OUT`,
    ///    or `.build/guests` beside it), or else a folder of built images;
    /// 2. the installed images, `PREFIX/share/visor/guests` for `PREFIX/bin/visor`;
    /// 3. the Guests/ folder of the checkout whose build holds the executable, built into
    ///    `.build/guests` of that checkout (or `VISOR_GUESTS_OUT`).
    /// Builds are announced on standard error.
    public static func standard(environment: [String: String] = ProcessInfo.processInfo.environment,
                                executable: URL? = Installation.executable) -> GuestCatalog {
        GuestCatalog(origin: locate(environment: environment, executable: executable))
    }

    static func locate(environment: [String: String], executable: URL?) -> Origin {
        func sources(_ guests: URL) -> Origin {
            let output = environment["VISOR_GUESTS_OUT"].map { URL(fileURLWithPath: $0) }
                ?? guests.deletingLastPathComponent().appendingPathComponent(".build/guests")
            return .sources(guests: guests, output: output)
        }
        if let dir = environment["VISOR_GUESTS_DIR"], !dir.isEmpty {
            let folder = URL(fileURLWithPath: dir)
            let isSourceTree = FileManager.default.fileExists(atPath: folder.appendingPathComponent("Makefile").path)
            return isSourceTree ? sources(folder) : .images(folder)
        }
        var searched: [String] = []
        if let executable {
            let installed = Installation.sharePath(besides: executable).appendingPathComponent("guests")
            if Installation.isFolder(installed) { return .images(installed) }
            searched.append("installed images in \(installed.path)")
            if let checkout = Installation.checkout(above: executable) {
                return sources(checkout.appendingPathComponent("Guests"))
            }
            searched.append("a Visor checkout above \(executable.deletingLastPathComponent().path)")
        } else {
            searched.append("the running executable's path (/proc/self/exe is unreadable)")
        }
        return .missing(searched: searched)
    }

    public init(origin: Origin, announce: @escaping @Sendable (String) -> Void = GuestCatalog.toStandardError) {
        self.origin = origin
        self.announce = announce
    }

    /// A catalog that builds from the Guests/ folder `sourceDirectory` into `outputDirectory`.
    public init(sourceDirectory: URL, outputDirectory: URL,
                announce: @escaping @Sendable (String) -> Void = GuestCatalog.toStandardError) {
        self.init(origin: .sources(guests: sourceDirectory, output: outputDirectory), announce: announce)
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

    /// The folder guests' images are in, or `notFound` when this catalog found none.
    private func imageFolder() throws -> URL {
        switch origin {
        case .sources(_, let output): return output
        case .images(let folder): return folder
        case .missing(let searched): throw GuestCatalogError.notFound(searched: searched)
        }
    }

    /// The files of fetched guest `name` (`fetchedGuests`), or nil when no fetched guest has that
    /// name; throws `notFetched` when its download has not been made.
    public func fetchedGuest(named name: String) throws -> FetchedGuest.Files? {
        guard let guest = Self.fetchedGuests.first(where: { $0.name == name }) else { return nil }
        let folder = try imageFolder()
        let kernel = folder.appendingPathComponent(guest.kernel)
        let initrd = folder.appendingPathComponent(guest.initrd)
        for file in [kernel, initrd] where !FileManager.default.fileExists(atPath: file.path) {
            let fetch = sourceDirectory == nil
                ? "\(guest.fetchScript) in a Visor checkout and install again" : guest.fetchScript
            throw GuestCatalogError.notFetched(name: name, missing: file.path, fetch: fetch)
        }
        return FetchedGuest.Files(kernel: kernel, initrd: initrd, commandLine: guest.commandLine)
    }

    /// The names of the built-in guests: as the Makefile lists them, or the images installed.
    public func names() throws -> [String] {
        switch origin {
        case .sources:
            let (status, output) = try make(["list"])
            guard status == 0 else { throw GuestCatalogError.buildFailed(status: status, output: output) }
            return output.split(whereSeparator: \.isNewline).map(String.init).filter { !$0.isEmpty }
        case .images(let folder):
            guard let files = try? FileManager.default.contentsOfDirectory(atPath: folder.path) else {
                throw GuestCatalogError.sourcesMissing(path: folder.path)
            }
            return files.filter { $0.hasSuffix(".elf") }.map { String($0.dropLast(4)) }.sorted()
        case .missing(let searched):
            throw GuestCatalogError.notFound(searched: searched)
        }
    }

    /// Builds (if out of date) and returns the ELF image path of every built-in guest.
    public func buildAll() throws -> [(name: String, path: URL)] {
        try names().map { ($0, try build($0)) }
    }

    /// Builds (if out of date) and returns the ELF image of guest `name`, and nothing else.
    public func image(named name: String) throws -> URL {
        if let current = try currentImage(name) { return current }
        let known = try names()
        guard known.contains(name) else { throw GuestCatalogError.unknownGuest(name: name, known: known) }
        return try build(name)
    }

    /// Where guest `name`'s image is once built (or installed).
    public func imagePath(_ name: String) throws -> URL {
        try imageFolder().appendingPathComponent("\(name).elf")
    }

    /// Guest `name`'s built image when it is certainly current: newer than every file the guests
    /// are built from (all of Guests/, and Sources/VisorABI/, which they compile in; the
    /// Makefile keeps its inputs there). Then `make` is not asked at all: asking (`make list`,
    /// `make -q`) costs two processes, about 15 ms, on every `visor create` of a built-in guest
    /// from a checkout. Anything newer, or no image, and nil: make decides.
    private func currentImage(_ name: String) throws -> URL? {
        guard case .sources(let guests, let output) = origin else { return nil }
        let image = try imagePath(name)
        guard let built = Self.modificationTime(image.path) else { return nil }
        let abi = guests.deletingLastPathComponent().appendingPathComponent("Sources/VisorABI")
        let skipped = output.standardizedFileURL.path
        for root in [guests, abi] {
            guard Self.everything(under: root.standardizedFileURL.path, skipping: skipped, isOlderThan: built) else { return nil }
        }
        return image
    }

    /// Whether `path` and everything under it (but `skipping`) was last modified before `time`;
    /// false when anything cannot be read. POSIX calls, not FileManager's enumerator: this runs
    /// on every create, and Foundation's per-file overhead is most of its cost.
    private static func everything(under path: String, skipping: String, isOlderThan time: timespec, depth: Int = 0) -> Bool {
        guard path != skipping else { return true }
        var info = stat()
        guard depth < 16, lstat(path, &info) == 0, isBefore(info.st_mtim, time) else { return false }
        guard (info.st_mode & S_IFMT) == S_IFDIR else { return true }
        guard let directory = opendir(path) else { return false }
        defer { closedir(directory) }
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name == "." || name == ".." { continue }
            guard everything(under: path + "/" + name, skipping: skipping, isOlderThan: time, depth: depth + 1) else { return false }
        }
        return true
    }

    private static func modificationTime(_ path: String) -> timespec? {
        var info = stat()
        return stat(path, &info) == 0 ? info.st_mtim : nil
    }

    private static func isBefore(_ a: timespec, _ b: timespec) -> Bool {
        a.tv_sec < b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec < b.tv_nsec)
    }

    /// Builds guest `name` (the Makefile's target of that name) if `make -q` says it is out of
    /// date, announcing it first; an installed image is used as it is. The question and the
    /// build happen under the build lock, so of several processes asking at once one builds and
    /// announces, and the others find the image current.
    private func build(_ name: String) throws -> URL {
        let image = try imagePath(name)
        guard case .sources(let guests, let output) = origin else { return image }
        try withBuildLock(in: output) {
            // make -q: 0 up to date, 1 out of date, 2 an error (the build below reports it).
            guard try make(["-q", name], guests: guests, output: output).status != 0 else { return }
            let why = FileManager.default.fileExists(atPath: image.path) ? "sources changed" : "first use"
            announce("visor: building guest '\(name)' (\(why))…")
            let (status, text) = try make([name], guests: guests, output: output)
            guard status == 0 else { throw GuestCatalogError.buildFailed(status: status, output: text) }
        }
        return image
    }

    /// Runs `body` holding the output folder's build lock: one make at a time across visor
    /// processes, parallel tests and `make install` (the top-level Makefile takes the same lock
    /// with flock(1)).
    private func withBuildLock(in output: URL, _ body: () throws -> Void) throws {
        try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
        let lockFD = open(output.appendingPathComponent(".build-lock").path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        if lockFD >= 0 { flock(lockFD, LOCK_EX) }
        defer { if lockFD >= 0 { close(lockFD) } }
        try body()
    }

    private func make(_ arguments: [String]) throws -> (status: Int32, output: String) {
        guard case .sources(let guests, let output) = origin else { return (2, "not a source catalog") }
        return try make(arguments, guests: guests, output: output)
    }

    /// Runs make on the Guests/ folder: its status and everything it printed.
    private func make(_ arguments: [String], guests: URL, output: URL) throws -> (status: Int32, output: String) {
        guard FileManager.default.fileExists(atPath: guests.appendingPathComponent("Makefile").path) else {
            throw GuestCatalogError.sourcesMissing(path: guests.path)
        }
        return try HostProcess.run("/usr/bin/env", ["make", "-s", "-C", guests.path, "OUT=\(output.path)"] + arguments)
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
    /// The exit status (as a shell shows it) and everything the program wrote to standard
    /// output and error, together.
    static func run(_ path: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        // Close-on-exec, so no child another thread starts meanwhile holds the write end (a
        // test's visor child, waiting for the guest build lock this thread holds, deadlocked
        // so); this child gets it through dup2, and every other descriptor is closed in it.
        for fd in ends { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let pid: pid_t
        do {
            pid = try spawnUnmasked(path, arguments) { actions in
                posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
                posix_spawn_file_actions_adddup2(&actions, ends[1], 1)
                posix_spawn_file_actions_adddup2(&actions, ends[1], 2)
            }
        } catch {
            close(ends[0]); close(ends[1])
            throw error
        }
        close(ends[1])
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(ends[0], $0.baseAddress, $0.count) }
            if count > 0 { output += buffer[0..<count]; continue }
            if count < 0 && errno == EINTR { continue }
            break
        }
        close(ends[0])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return (shellStatus(status), String(decoding: output, as: UTF8.self))
    }
}
