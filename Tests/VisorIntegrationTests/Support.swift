// What the integration tests share: where the visor binary is, whether KVM and QEMU are here,
// and running a process with a time limit.

import Foundation
import Testing
import Visor

enum Host {
    /// True when /dev/kvm can be opened. When it cannot, say so loudly: the tests that need it
    /// are reported as skipped, never as passed.
    static let kvmAvailable: Bool = {
        let fd = open("/dev/kvm", O_RDWR | O_CLOEXEC)
        if fd >= 0 { close(fd); return true }
        FileHandle.standardError.write(Data("""
            *** SKIPPING every test that needs /dev/kvm: it cannot be opened here (errno \(errno)).
            *** Those tests are reported as skipped, not passed.

            """.utf8))
        return false
    }()

    static let qemuPath: String? = {
        for dir in ["/usr/bin", "/usr/local/bin"] {
            let path = dir + "/qemu-system-x86_64"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        FileHandle.standardError.write(Data("*** SKIPPING the QEMU side-by-side tests: qemu-system-x86_64 is not installed (apt-get install qemu-system-x86).\n".utf8))
        return nil
    }()

    /// The folder with the built products: the test runner sits there beside `visor`.
    static let productsDirectory: URL = {
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        if url.lastPathComponent.hasSuffix(".xctest") || url.path.contains(".xctest/") {
            while !url.lastPathComponent.hasSuffix(".xctest") { url.deleteLastPathComponent() }
            url.deleteLastPathComponent()
        }
        return url
    }()

    static var visorPath: String { productsDirectory.appendingPathComponent("visor").path }
}

struct ProcessResult {
    var status: Int32
    var stdout: String
    var stderr: String
    var timedOut: Bool
}

/// Runs a program with no standard input and kills it after `timeout` seconds; optionally sends
/// it `signal` once `after` seconds have passed.
func runProcess(_ path: String, _ arguments: [String], timeout: Double = 60,
                signal: (number: Int32, after: Double)? = nil) throws -> ProcessResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let deadline = Date().addingTimeInterval(timeout)
    // Drain both pipes concurrently so a chatty child never blocks on a full pipe.
    nonisolated(unsafe) var outData = Data(), errData = Data()
    let group = DispatchGroup()
    DispatchQueue.global().async(group: group) { outData = out.fileHandleForReading.readDataToEndOfFile() }
    DispatchQueue.global().async(group: group) { errData = err.fileHandleForReading.readDataToEndOfFile() }
    var timedOut = false
    var signalAt = signal.map { Date().addingTimeInterval($0.after) }
    while process.isRunning {
        if let at = signalAt, Date() > at, let signal {
            kill(process.processIdentifier, signal.number)
            signalAt = nil
        }
        if Date() > deadline { timedOut = true; process.terminate(); kill(process.processIdentifier, SIGKILL); break }
        usleep(10_000)
    }
    process.waitUntilExit()
    group.wait()
    return ProcessResult(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                         stderr: String(decoding: errData, as: UTF8.self), timedOut: timedOut)
}

func runVisor(_ arguments: [String], timeout: Double = 60, signal: (number: Int32, after: Double)? = nil) throws -> ProcessResult {
    try runProcess(Host.visorPath, arguments, timeout: timeout, signal: signal)
}

/// The ELF image of a built-in guest, building it if needed.
func guestImage(_ name: String) throws -> String {
    try GuestCatalog.standard().image(named: name).path
}
