// Where this copy of Visor finds the files it did not compile in: the built-in guests' images
// (or their sources), the benchmark reference sources. Found from the running executable, never
// from the path the code was compiled at, so an installed copy or a checkout that moved works.

import Foundation

#if !os(Linux)
#error("Visor runs on Linux only: it needs /dev/kvm, /proc and epoll")
#endif

public enum Installation {
    /// The running executable, symbolic links resolved (`/proc/self/exe`); nil if unreadable.
    public static let executable: URL? = {
        guard let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") else { return nil }
        return URL(fileURLWithPath: path)
    }()

    /// `share/visor` of the prefix the executable is installed under (`PREFIX/bin/visor` →
    /// `PREFIX/share/visor`), when that folder exists: what `make install` puts there.
    public static let share: URL? = executable.flatMap(share(besides:))

    /// The Visor checkout whose build folder holds the executable (`CHECKOUT/.build/…/visor`, or
    /// a test bundle there): the nearest folder above it with `Package.swift` and
    /// `Guests/Makefile`. nil for an installed or copied executable.
    public static let checkout: URL? = executable.flatMap(checkout(above:))

    /// Where `make install` puts Visor's files for `executable`: `PREFIX/share/visor` for
    /// `PREFIX/bin/visor`, whether or not it exists.
    public static func sharePath(besides executable: URL) -> URL {
        executable.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("share/visor")
    }

    /// `sharePath(besides:)` when it is a folder.
    public static func share(besides executable: URL) -> URL? {
        let share = sharePath(besides: executable)
        return isFolder(share) ? share : nil
    }

    /// The nearest folder above `file` that is a Visor checkout.
    public static func checkout(above file: URL) -> URL? {
        var folder = file.deletingLastPathComponent()
        while folder.path != "/" && !folder.path.isEmpty {
            let manifest = folder.appendingPathComponent("Package.swift").path
            let guests = folder.appendingPathComponent("Guests/Makefile").path
            if FileManager.default.fileExists(atPath: manifest) && FileManager.default.fileExists(atPath: guests) {
                return folder
            }
            folder = folder.deletingLastPathComponent()
        }
        return nil
    }

    /// A file Visor ships beside its code (`Benchmarks/kvm-exit-reference.c`): in the checkout
    /// the executable was built in, else under the installed `share/visor`.
    public static func supportFile(_ relativePath: String) -> URL? {
        for base in [checkout, share].compactMap({ $0 }) {
            let file = base.appendingPathComponent(relativePath)
            if FileManager.default.fileExists(atPath: file.path) { return file }
        }
        return nil
    }

    /// Where Visor may write what it builds for itself (the benchmark reference VMM): the
    /// checkout's `.build`, or a per-user folder under the temporary directory when installed.
    public static var scratch: URL {
        if let checkout { return checkout.appendingPathComponent(".build") }
        return FileManager.default.temporaryDirectory.appendingPathComponent("visor-\(getuid())")
    }

    static func isFolder(_ url: URL) -> Bool {
        var folder: ObjCBool = false
        return FileManager.default.fileExists(atPath: url.path, isDirectory: &folder) && folder.boolValue
    }
}
